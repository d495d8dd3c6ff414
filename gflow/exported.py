"""Traced solves kept on disk (``jax.export``), so that a later process skips tracing as well as
XLA compilation.

JAX's persistent compilation cache keeps the compiled program, but finding it needs the
program's StableHLO, i.e. tracing and lowering the solve again: ~2 s of a warm ``gflow run`` of
the flow reference problem. Here the first process exports the traced solve (a function of the
flat argument leaves) and writes its serialization next to the compilation cache; a later
process with the same program reads it back and lowers ``Exported.call`` (no tracing of the
solve), whose StableHLO is the same every time, so the persistent cache hits too. Both processes
compile the same module: the numbers are the same whichever process traced it.

A file is named by a digest of everything the traced program depends on: the caller's program
key (structure, dtype, devices, vector and call width, ...), the argument shapes, dtypes and
shardings, the platform and device kind, JAX's tracing flags, and the versions of gflow (with a
digest of its source files), JAX, diffrax, equinox, lineax, optimistix and optax. Host
callbacks cannot be exported: solves are exported only with equinox's runtime checks off
(``EQX_ON_ERROR=nan``, as the ``gflow`` command sets them), and any failure to export or read
back falls back to tracing as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
from jax import export

from gflow.atomic import replace_atomically
from gflow.dynamics.trajectory import Trajectory

export.register_namedtuple_serialization(Trajectory, serialized_name="gflow.Trajectory")

STATS = {"exported": 0, "loaded": 0, "unreadable": 0, "unwritable": 0, "failed": 0}
_PACKAGES = ("gflow", "jax", "jaxlib", "diffrax", "equinox", "lineax", "optimistix", "optax")


def folder() -> Path | None:
    """Where exported solves are kept: ``exported/`` in JAX's persistent compilation cache
    folder (:func:`gflow.simulation.enable_compilation_cache`); None when that cache is off or
    equinox's runtime checks (host callbacks) are on."""
    cache_dir = jax.config.jax_compilation_cache_dir
    if not cache_dir or os.environ.get("EQX_ON_ERROR") != "nan":
        return None
    return Path(cache_dir) / "exported"


@cache
def _environment() -> str:
    """The versions and the gflow source digest a traced program depends on."""
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=?")
    source = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        source.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        source.update(path.read_bytes())
    device = jax.devices()[0]
    flags = (device.platform, device.device_kind, jax.config.jax_enable_x64,
             jax.config.jax_default_prng_impl)  # fmt: skip
    return f"{' '.join(versions)} source={source.hexdigest()} flags={flags}"


def _leaf_signature(x) -> str:
    sharding = getattr(x, "sharding", None)
    spec = getattr(sharding, "spec", None)
    return f"{tuple(x.shape)}:{x.dtype}:{spec}"


def digest(program: tuple, flat: list) -> str:
    """The file name of a program traced on these flat arguments."""
    text = "\n".join([repr(program), _environment(), *map(_leaf_signature, flat)])
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def lower(solve: Callable, arguments: tuple, program: tuple) -> tuple[Any, Any] | None:
    """The solve lowered from its exported form, exported (and written) first if not on disk.

    Args:
        solve: ``solve(*arguments) -> Trajectory``.
        arguments: its arguments (arrays, or ``jax.ShapeDtypeStruct``s with shardings).
        program: what makes the program, beyond the arguments' shapes (a hashable tuple).

    Returns:
        ``(lowered, treedef)``: ``lowered`` takes the flat leaves of the arguments, whose
        treedef is ``treedef``; None where nothing can be exported (no folder, or the export
        failed: then the caller traces as usual). An unreadable file is replaced.
    """
    where = folder()
    if where is None:
        return None
    flat, treedef = jax.tree.flatten(arguments)
    path = where / f"{digest(program, flat)}.jaxexport"
    exported = None
    if path.exists():
        try:
            exported = export.deserialize(bytearray(path.read_bytes()))
            STATS["loaded"] += 1
        except Exception:  # noqa: BLE001 - unreadable (truncated, foreign): exported again
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            STATS["unreadable"] += 1
    try:
        if exported is None:

            def flat_solve(*leaves):
                return solve(*jax.tree.unflatten(treedef, leaves))

            exported = export.export(jax.jit(flat_solve))(*flat)
            data = exported.serialize()
            try:
                where.mkdir(parents=True, exist_ok=True)
                replace_atomically(path, lambda tmp: Path(tmp).write_bytes(data))
                STATS["exported"] += 1
            except OSError:  # a read-only or full cache: this process still uses its export
                STATS["unwritable"] += 1
        return jax.jit(exported.call).lower(*flat), treedef
    except Exception:  # noqa: BLE001 - any failure: trace as usual
        STATS["failed"] += 1
        return None


class FlatCall:
    """A compiled program of flat argument leaves, called with the argument pytrees.

    Args:
        compiled: the compiled program.
        treedef: the treedef of the argument tuple it was lowered for.
    """

    def __init__(self, compiled, treedef):
        self.compiled, self.treedef = compiled, treedef

    def __call__(self, *arguments):
        flat, treedef = jax.tree.flatten(arguments)
        if treedef != self.treedef:
            raise ValueError(f"arguments of structure {treedef}, compiled for {self.treedef}")
        return self.compiled(*flat)

    def as_text(self) -> str:
        """The compiled program's HLO text."""
        return self.compiled.as_text()
