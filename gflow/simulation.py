"""One call from a config to the results Dataset: the Python face of ``gflow run``.

config -> model -> initial parameters -> compiled batch solve -> Dataset (-> results.nc).
Every config problem, including the shapes of an ``init.from`` file, raises ConfigError before
anything compiles.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import NamedSharding, PartitionSpec

from gflow import batch, checkpoint, distributed, exported, models, outdir, results
from gflow import config as config_mod
from gflow.batch import noise_keys, save_grid, state_bytes, vector_width, vectorized
from gflow.config import STEPPED_KINDS, Config, ConfigError
from gflow.hessian import DENSE_LIMIT, num_params
from gflow.models import registry
from gflow.models.base import Model, named_leaves
from gflow.progress import METER


def as_config(cfg: Config | str | Path | Mapping[str, Any]) -> Config:
    """A Config from any of the forms the Python API accepts.

    Args:
        cfg: a Config (returned as is), the path of a TOML file, or nested dicts in the TOML
            layout (``{"model": {...}, "dynamics": {...}, ...}``).

    Returns:
        The checked Config.

    Raises:
        ConfigError: the file or the dicts are not a valid config.
    """
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, str | Path):
        return config_mod.load(cfg)
    return config_mod.from_dict(cfg)


def enable_compilation_cache(path: str | Path | None = None) -> Path | None:
    """Keep compiled solves on disk (JAX's persistent compilation cache), so that running the
    same configuration again skips XLA compilation.

    Solves are only cacheable without host callbacks: equinox's runtime checks insert one
    unless EQX_ON_ERROR=nan is set before equinox is imported (the ``gflow`` command does so;
    solver failures then still surface as the per-init status).

    Args:
        path: the cache folder; None: $GFLOW_CACHE_DIR, else ~/.cache/gflow/jax; "off" (or
            "none", "0", "") disables the cache.

    Returns:
        The folder used, or None when disabled.
    """
    path = os.environ.get("GFLOW_CACHE_DIR") if path is None else path
    if path is None:
        path = Path.home() / ".cache" / "gflow" / "jax"
    if str(path).lower() in ("off", "none", "0", ""):
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return Path(path)


def set_precision(precision: str) -> jnp.dtype:
    """Enable 64-bit JAX when asked (do it before creating arrays) and return the dtype to use.

    Args:
        precision: "float64" (turns on ``jax_enable_x64``) or "float32".

    Returns:
        ``jnp.float64`` or ``jnp.float32``.
    """
    if precision == "float64":
        jax.config.update("jax_enable_x64", True)
        return jnp.float64
    return jnp.float32


def parameter_layout(model: Model) -> dict[str, tuple[int, ...]]:
    """One initialization's parameters by name, as ``init.from`` files name them.

    Args:
        model: the model whose ``init`` gives the parameter pytree (only its shapes are
            computed, with ``jax.eval_shape``).

    Returns:
        ``{name: shape}``: the keys of the parameter pytree joined by "/" (``W``, ``H``, ``b``;
        ``H1``, ``W1``, ``W2``; ``linear/0``, ...), each with its shape for one init.
    """
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return {name: tuple(leaf.shape) for name, leaf in named_leaves(shapes).items()}


def _read_parameters(path: Path, names: str) -> dict[str, np.ndarray]:
    """The arrays of an .npz, or the initial parameters (``initial_*``) of a gflow results
    file, by parameter name."""
    if path.suffix == ".nc":
        try:
            with xr.open_dataset(path, engine="netcdf4") as ds:
                return {
                    v.attrs["parameter"]: v.values
                    for v in ds.data_vars.values()
                    if "parameter" in v.attrs
                }
        except Exception as err:  # noqa: BLE001 -- any unreadable file is a config problem
            raise ConfigError(
                f"init.from: {path} is not a gflow results file ({type(err).__name__})"
            ) from None
    try:
        return dict(np.load(path))  # allow_pickle off: no code runs
    except Exception as err:  # noqa: BLE001 -- any unreadable file is a config problem
        raise ConfigError(
            f"init.from: {path} is not an .npz of arrays {names} (numpy.savez; "
            f"{type(err).__name__})"
        ) from None


def load_initial_params(path: str | Path, model: Model, count: int, dtype):
    """Read the model's parameters (:func:`parameter_layout`) from a file, checking names and
    shapes; a missing bias ``b`` starts at 0.

    Args:
        path: an .npz (``numpy.savez``) with one array per parameter name, each of one init's
            shape (shared by all inits) or with a leading init axis of ``count``; or a gflow
            results.nc (its saved initial parameters: the same start again).
        model: the model the parameters are for.
        count: the number of inits (``init.count``).
        dtype: the dtype of the returned arrays.

    Returns:
        The parameter pytree of ``model``, each leaf with a leading init axis of ``count``.

    Raises:
        ConfigError: the file is unreadable, lacks a name, or holds a wrong shape or
            non-finite values.
    """
    layout = parameter_layout(model)
    names = ", ".join(layout)
    arrays = _read_parameters(Path(path).expanduser(), names)
    leaves = []
    for name, shape in layout.items():
        if name not in arrays:
            if name == "b":
                arrays["b"] = np.zeros(shape)
            else:
                raise ConfigError(f"init.from: {path} has no array {name!r} (needs {names})")
        a = arrays[name]
        if a.shape == shape:
            a = np.broadcast_to(a, (count, *shape))
        elif a.shape != (count, *shape):
            raise ConfigError(
                f"init.from: array {name} has shape {a.shape}; expected {shape} or "
                f"{(count, *shape)} (init.count = {count})"
            )
        if not np.all(np.isfinite(a)):
            raise ConfigError(f"init.from: array {name} holds non-finite values")
        leaves.append(jnp.asarray(a, dtype))
    treedef = jax.tree.structure(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    return jax.tree.unflatten(treedef, leaves)


def build_model(cfg: Config, check: bool = True) -> Model:
    """The configured model, after the checks that need it; nothing is solved or compiled.

    Sets the precision (:func:`set_precision`) as a side effect.

    Args:
        cfg: the config.
        check: run the checks that need the model: ``init.from`` names and shapes, the dense
            Hessian's size limit and the memory estimate (:func:`check_memory`).

    Returns:
        The model (:class:`gflow.models.Model`).

    Raises:
        ConfigError: a check fails.
    """
    dtype = set_precision(cfg.run.precision)
    model = models.from_config(cfg.model, init_scale=cfg.init.scale, dtype=dtype)
    if not check:
        return model
    if cfg.init.from_file is not None:
        load_initial_params(cfg.init.from_file, model, cfg.init.count, dtype)
    size = num_params(jax.eval_shape(model.init, jax.random.PRNGKey(0)))
    if cfg.run.hessian == "dense" and size > DENSE_LIMIT:
        raise ConfigError(
            f"run.hessian: dense needs <= {DENSE_LIMIT} parameters, this model has {size}; "
            "use lanczos"
        )
    check_memory(cfg, model)
    return model


# a solve's working copies of one init's state: an adaptive flow keeps its stages, error
# estimate and saves (Tsit5: 7 stages + about 5), GD the parameters, gradients and the
# optimizer's moments; every save holds about this many scalars per init (loss, the metrics)
_WORKING_COPIES = {"flow": 12, "gd": 4, "sde": 4, "sgd": 4}
_SCALARS_PER_SAVE = 40


def available_memory() -> int | None:
    """Bytes the solve may use: the first device's memory limit on an accelerator, the host's
    physical memory on a CPU.

    Returns:
        The bytes, or None where they are not known.
    """
    device = jax.devices()[0]
    if device.platform != "cpu":
        return (device.memory_stats() or {}).get("bytes_limit")
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def memory_needed(cfg: Config, model: Model) -> dict[str, int]:
    """An estimate of a run's peak memory, by what drives it.

    Args:
        cfg: the config.
        model: its model (:func:`build_model`).

    Returns:
        Bytes by part: ``state`` (the initial, final and returned states of the inits solved at
        once, ``run.chunk`` or all), ``working`` (the solver's copies for the inits vmapped
        together), ``saves`` (the saved observations of every init: dynamics.saves, and
        save_geometry's W and class means).
    """
    one = state_bytes(model)
    itemsize = jnp.dtype(model.dtype).itemsize
    count = cfg.init.count
    at_once = min(cfg.run.chunk or count, count)
    vector = vector_width(cfg.dynamics, cfg.run.vector_width, state_bytes=one)
    together = at_once if vector <= 0 else min(vector, at_once)
    per_save = _SCALARS_PER_SAVE
    if cfg.run.save_geometry:
        W = jax.eval_shape(lambda: model.readout(model.init(jax.random.PRNGKey(0))).W)
        per_save += 2 * W.size  # W and the class means, each (K, d), at every save
    working = one * _WORKING_COPIES[cfg.dynamics.kind] * together
    if batch.observes_after(
        cfg.dynamics, (vector if vector > 0 else count) * cfg.dynamics.saves * one
    ):
        working += together * cfg.dynamics.saves * one  # the states saved for observing after
    if cfg.run.hessian == "dense":  # the P x P Hessian of every init vmapped together
        working += (one // itemsize) ** 2 * itemsize * together
    return {
        "state": 3 * one * at_once,
        "working": working,
        "saves": count * cfg.dynamics.saves * per_save * itemsize,
    }


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"


def check_memory(cfg: Config, model: Model, available: int | None = None) -> None:
    """Refuse, before anything compiles, a run whose estimated peak (:func:`memory_needed`)
    exceeds the memory available.

    Args:
        cfg: the config.
        model: its model.
        available: the bytes available; None: :func:`available_memory` (no check where that
            is unknown).

    Raises:
        ConfigError: the estimate exceeds ``available``; the message names the field that
            drives it (model, dynamics.saves, init.count) and what would fit.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    need = memory_needed(cfg, model)
    total = sum(need.values())
    if total <= available:
        return
    have = f"about {_size(total)}, more than the {_size(available)} here"
    one = state_bytes(model)
    copies = _WORKING_COPIES[cfg.dynamics.kind]
    if one * (3 + copies) > available:
        raise ConfigError(
            f"model: one init's state is {_size(one)} ({model.num_samples} samples, "
            f"{model.num_classes} classes) and its solve needs {have}; make the model smaller"
        )
    count, saves = cfg.init.count, cfg.dynamics.saves
    if need["saves"] >= need["state"] + need["working"]:  # the saved values of every init
        share = available / 2 / max(need["saves"], 1)
        if saves > count:
            raise ConfigError(
                f"dynamics.saves: {saves} saves of {count} inits need {have}; at most about "
                f"{max(2, int(saves * share))} saves fit"
            )
        raise ConfigError(
            f"init.count: {count} inits with {saves} saves each need {have}; at most about "
            f"{max(1, int(count * share))} inits fit (or fewer saves)"
        )
    fit = max(1, int(available / 2 // (one * (3 + copies))))
    raise ConfigError(
        f"init.count: {cfg.init.count} inits of {_size(one)} need {have}; set run.chunk = "
        f"{min(fit, cfg.init.count)} (parts are saved as they go)"
    )


def prepare(cfg: Config) -> tuple[Model, Any]:
    """The model and the batch of initial parameters.

    Args:
        cfg: the config.

    Returns:
        ``(model, params0)``: the model (checked, :func:`build_model`) and its parameter
        pytree with a leading init axis of ``init.count``.
    """
    model = build_model(cfg)
    dtype = set_precision(cfg.run.precision)
    return model, block_initializer(cfg, model, dtype)(0, cfg.init.count)


def block_initializer(cfg: Config, model: Model, dtype) -> Callable[[int, int], Any]:
    """The initial parameters of any block of inits, the same values as in the whole batch.

    Args:
        cfg: the config (``init.seed``, ``init.count``, ``init.from``).
        model: its model.
        dtype: the dtype of parameters read from ``init.from``.

    Returns:
        ``f(lo, hi)``: the parameter pytree of inits [lo, hi), leading axis hi - lo: from one
        key per init, split from the seed for all ``init.count``, or that slice of
        ``init.from`` (read once, here).
    """
    if cfg.init.from_file is not None:
        full = load_initial_params(cfg.init.from_file, model, cfg.init.count, dtype)
        return lambda lo, hi: jax.tree.map(lambda x: x[lo:hi], full)
    keys = jax.random.split(jax.random.PRNGKey(cfg.init.seed), cfg.init.count)
    return lambda lo, hi: batch.draw_inits(model, keys[lo:hi])


# Compiled batch solves of this process, by what changes the program (``program`` in
# solve_batches: structure_key, dtype, devices, vector and call width, in-solve meter); a
# second simulate/run of the same structure with other hyperparameter values reuses one.
_PROGRAMS: dict[tuple, Any] = {}
CACHE_STATS = {"compiles": 0, "hits": 0}


def cache_info() -> dict[str, int]:
    """Counts of this process's compiled-solve cache.

    Returns:
        ``compiles`` (programs built), ``hits`` (solves that reused one), ``traces`` (times
        the per-init solve was traced), ``size`` (programs held).
    """
    return {**CACHE_STATS, "traces": batch.TRACES["solve"], "size": len(_PROGRAMS)}


def clear_cache() -> None:
    """Forget this process's compiled solves (the counters stay)."""
    _PROGRAMS.clear()


def ready(tree):
    """``jax.block_until_ready`` that Ctrl-C can interrupt.

    JAX dispatches a solve asynchronously, so polling its results (every 1 ms at first, then
    up to every 50 ms) keeps the Python main thread free to raise KeyboardInterrupt within a
    moment, not after the solve.

    Args:
        tree: a pytree whose JAX arrays to wait for.

    Returns:
        ``tree``, once every array in it is ready.
    """
    leaves = [x for x in jax.tree.leaves(tree) if isinstance(x, jax.Array)]
    pause = 0.001
    while not all(x.is_ready() for x in leaves):
        time.sleep(pause)
        pause = min(2 * pause, 0.05)
    return tree


def structure_key(cfg: Config) -> str:
    """What of a config makes its compiled solve: configs with equal keys share one compiled
    solve and can be solved in one batch.

    Args:
        cfg: the config.

    Returns:
        The config's fields, one ``section.key=value`` line each, with every value that is an
        input of the compiled solve, not part of its program, set to a neutral value: the
        model's hyperparameters (as its declaration lists them,
        :mod:`gflow.models.registry`; init.scale), the init seed and file, the traced dynamics
        settings (:data:`gflow.batch.TRACED_DYNAMICS`) and the run settings that cannot change
        the numbers.
    """
    hyper = {k: 0.0 for k in registry.spec(cfg.model.name).hyperparameters()}
    neutral = dict(
        out=".", progress=False, shard=True, coordinator="", num_processes=1, process_id=0,
        connect_timeout=60, wait_timeout=86400, chunk=0,
    )  # fmt: skip
    raw = config_mod.to_dict(cfg)
    raw["model"].update(hyper)
    raw["init"].update(seed=0, scale=0.0)
    raw["init"].pop("from", None)
    raw["dynamics"] = {
        k: v
        for k, v in dataclasses.asdict(batch.structural_dynamics(cfg.dynamics)).items()
        if v is not None
    }
    raw["run"].update(neutral)
    return "\n".join(f"{s}.{k}={v!r}" for s, values in raw.items() for k, v in values.items())


Segment = tuple[Config, int, int]  # inits [lo, hi) of one config


def solve_blocks(
    cfg: Config,
    blocks: list[tuple[int, int]],
    progress: bool = False,
    checkpoints: checkpoint.Checkpoints | None = None,
) -> Iterator[xr.Dataset]:
    """Solve the inits of each block in turn; one compilation serves every block (see
    :func:`solve_batches`).

    Args:
        cfg: the config.
        blocks: the blocks (lo, hi), each the inits [lo, hi).
        progress: report compiling, timing and the solve's progress on stderr.
        checkpoints: where a long stepped run keeps (and resumes) each block's segments.

    Yields:
        Each block's results Dataset, its init coordinate lo..hi-1.
    """
    for (ds,) in solve_batches([[(cfg, lo, hi)] for lo, hi in blocks], progress, checkpoints):
        yield ds


def solve_batches(
    batches: list[list[Segment]],
    progress: bool = False,
    checkpoints: checkpoint.Checkpoints | None = None,
) -> Iterator[list]:
    """Solve each batch in turn, all its segments in one compiled solve.

    Every init carries its own hyperparameters and traced settings, so the segments of a batch
    may differ in all of them (a sweep's points). Each batch is padded to the widest, rounded up
    to a multiple of (local devices x vector width); the init axis is sharded over the devices
    (``run.shard``) and each device solves its inits in vectors (``lax.map``). Inits in vectors
    go through the solve in up to 16 equal slices (:func:`call_slices`), one call each, progress
    counted between them, so that the program holds no host callback and JAX's persistent
    cache keeps it; a single vmap (accelerators, root finds) is one call. The compiled
    solve is kept for this process (:func:`cache_info`): another call with the same structure
    neither retraces nor recompiles. An init's numbers do not depend on which batch, vector
    position or device it lands in.

    Args:
        batches: the batches, each a list of segments ``(cfg, lo, hi)``: inits [lo, hi) of
            ``cfg``; every config shares one :func:`structure_key`.
        progress: report compiling, timing and the solve's progress on stderr.
        checkpoints: where a long stepped run (:func:`gflow.checkpoint.plan`) keeps each
            block's state after each of its segments, and resumes from; only batches of one
            block use it. None: nothing is kept (the same segments are run).

    Yields:
        Per batch, the list of its segments' results Datasets (in the segments' order).

    Raises:
        ValueError: two segments' configs differ in :func:`structure_key`.
    """
    first = batches[0][0][0]
    model = build_model(first)  # with the checks (init.from, the Hessian's size) of the first
    inputs = _InputCache()
    key = structure_key(first)
    for segments in batches:
        for cfg, _, _ in segments:
            if structure_key(cfg) != key:
                raise ValueError("solve_batches: every segment must share one structure_key")
    dtype = set_precision(first.run.precision)
    mesh = distributed.local_mesh() if first.run.shard else None
    devices = 1 if mesh is None else mesh.size
    one = state_bytes(model)
    vector = vector_width(first.dynamics, first.run.vector_width, state_bytes=one)
    # a vector's width follows from the config alone, never from the devices, the chunking or
    # the batching: XLA's CPU code for a vmap of 3 rounds differently from one of 2, and the
    # same config must give the same bits however it is split (padding costs a vector a device)
    vector = min(vector, first.init.count)
    unit = devices * max(vector, 1)
    widest = max(sum(hi - lo for _, lo, hi in segments) for segments in batches)
    width = -(-widest // unit) * unit
    place = (lambda t: distributed.shard_inits(t, mesh)) if mesh else (lambda t: t)
    # from the config alone (not the chunking or the devices), like the vector's width
    together = vector if vector else first.init.count
    after = batch.observes_after(first.dynamics, together * first.dynamics.saves * one)
    plan = segment_plan(first, model)
    if plan is not None and plan.timed:
        # a timed plan follows t1 and dt0, traced settings a sweep's points may differ in
        if any(cfg.dynamics != first.dynamics for segments in batches for cfg, _, _ in segments):
            plan = None
    # inits in vectors are solved in a few calls of one program on a slice of the batch each,
    # progress counted between the calls: no host callback inside, so the program is the same
    # with or without progress and JAX's persistent cache keeps it (it refuses callbacks)
    sliced = plan is None and vector > 0
    step = width
    if sliced:
        calls, size = call_slices(width // unit)
        step = size * unit
        width = calls * step
    meter = progress and plan is None and not sliced  # host callbacks inside the solve
    program = (
        key,
        jnp.dtype(dtype).name,
        devices,
        vector,
        step,
        meter,
        first.run.matmul_precision,
        after,
        None if plan is None else plan.lengths.shape,
    )
    compiled = _PROGRAMS.get(program)

    def build(inputs_or_shapes):
        steps_meter = first.dynamics.kind in STEPPED_KINDS
        if progress:
            print(
                f"gflow: {first.model.name}, K={model.num_classes}, d={model.dim}, "
                f"{widest} inits{f' (padded to {width})' if width > widest else ''}, "
                f"{first.dynamics.kind}, {first.run.precision}, "
                f"{devices} device(s): compiling",
                file=sys.stderr,
                flush=True,
            )
        # progress: GD and SGD count each init's save segments, flows each vector of inits
        # (and diffrax's meter where the inits run as one vmap)
        solve = vectorized(
            batch.batch_solve(
                first.dynamics, meter and (steps_meter or not vector),
                first.run.hessian, first.run.hessian_iters, first.run.save_geometry, after,
            ),
            vector, meter and not steps_meter,
        )  # fmt: skip
        # vectors are a sequential map, which needs each device's slice by hand (shard_map);
        # a plain vmap is left to jit on the sharded inputs (diffrax's implicit solvers
        # reject shard_map)
        if mesh and vector:
            solve = distributed.per_device(solve, mesh, replicated=1)
        # the in-solve meter's host callbacks cannot be exported (gflow.exported)
        exportable = program if not meter else None
        return _Compilation(solve, inputs_or_shapes, first.run.matmul_precision, exportable)

    # the solve is traced now, on the shapes the first batch's inputs will have, and compiled
    # by XLA in another thread while this one draws the initial parameters (whose own small
    # programs compile meanwhile): the same program, ready sooner
    pending = None
    if compiled is None and plan is None:
        data0, shapes = inputs.shapes(batches[0][0], step, mesh)
        pending = build((data0, *shapes))
    for number, segments in enumerate(batches, start=1):
        built = inputs.segments(segments)
        data = built[0][0]
        hyper, settings, params, keys = (
            jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]), *parts)
            for parts in zip(*(b[1:5] for b in built), strict=True)
        )
        padded = [distributed.pad_to(t, width) for t in (hyper, settings, params, keys)]
        parts = [
            [place(jax.tree.map(lambda x, a=a: x[a : a + step], t)) for t in padded]
            for a in range(0, width, step)
        ]
        args = parts[0]
        compile_seconds = 0.0
        if plan is not None:
            (_, lo, hi), *more = segments
            store = checkpoints if not more else None
            traj, compile_seconds, run_seconds = _solve_in_segments(
                first, model, plan, data, args, (vector, mesh, place, width, widest),
                progress, store, (lo, hi), program,
            )  # fmt: skip
        elif compiled is None:
            if pending is None or pending.shapes != _shapes(args):
                pending = build((data, *args))  # (no abstract start: lowered on these)
            compiled, compile_seconds = pending.result()
            pending = None
            _PROGRAMS[program] = compiled
            CACHE_STATS["compiles"] += 1
        else:
            CACHE_STATS["hits"] += 1
        if plan is None:
            if progress and sliced:
                METER.start(width, "of the inits solved")
            elif progress and first.dynamics.kind in STEPPED_KINDS:
                METER.start(width * first.dynamics.steps, "of the steps")
            start = time.perf_counter()
            traj = _call_in_slices(compiled, data, parts, progress and sliced)
            run_seconds = time.perf_counter() - start
        if progress and len(batches) > 1:
            (_, lo, hi), *more = segments
            what = f"{len(segments)} points" if more else f"inits {lo}-{hi - 1}"
            print(
                f"gflow: batch {number}/{len(batches)} ({what}) in {run_seconds:.2f} s",
                file=sys.stderr,
                flush=True,
            )
        out, offset = [], 0
        share = run_seconds / len(segments)
        for (cfg, lo, hi), (_, _, _, params0, _, seg_model, times) in zip(
            segments, built, strict=True
        ):
            size = hi - lo
            part = jax.tree.map(lambda x, a=offset, b=offset + size: x[a:b], traj)
            offset += size
            ds = results.to_dataset(
                part, times, seg_model, cfg, compile_seconds, share, inits=np.arange(lo, hi),
                initial=params0,
            )  # fmt: skip
            ds.attrs["batch_points"] = len(segments)
            out.append(ds)
            compile_seconds = 0.0
        yield out


def segment_plan(cfg: Config, model: Model | None = None) -> checkpoint.SegmentPlan | None:
    """How ``cfg``'s run is cut in segments (:func:`gflow.checkpoint.plan`); None: one.

    Args:
        cfg: the config.
        model: its model (built here if None and the run is stepped).

    Returns:
        The plan, or None.
    """
    if cfg.dynamics.kind not in (*STEPPED_KINDS, "sde", "flow"):
        return None
    model = build_model(cfg, check=False) if model is None else model
    return checkpoint.plan(cfg, num_params(jax.eval_shape(model.init, jax.random.PRNGKey(0))))


def _solve_in_segments(first, model, plan, data, args, layout, progress, store, block, program):
    """One batch of a stepped run, segment after segment (:mod:`gflow.checkpoint`).

    Two programs, kept like the plain one in ``_PROGRAMS``: the start (carry and observations
    at step 0) and the advance by one segment, its interval lengths an input. After each
    segment but the last the carry and observations of the block's real inits go to ``store``
    (if any); a checkpoint of this config there is resumed from.

    Returns:
        ``(trajectory as numpy, compile seconds, run seconds)``.
    """
    vector, mesh, place, width, widest = layout
    hyper, settings, params, keys = args
    dtype = jax.tree.leaves(params)[0].dtype
    compile_seconds = 0.0
    programs = _PROGRAMS.get(program)
    if programs is None:
        start = time.perf_counter()
        if progress:
            print(
                f"gflow: {first.model.name}, K={model.num_classes}, d={model.dim}, {widest} "
                f"inits, {first.dynamics.kind}, {plan.count} segments: compiling",
                file=sys.stderr,
                flush=True,
            )
        # no meter inside (host callbacks would keep the programs out of the persistent
        # cache): each segment, a few seconds of work, is counted once done
        begin, advance = batch.segment_solve(
            first.dynamics, False, first.run.hessian, first.run.hessian_iters,
            first.run.save_geometry,
        )  # fmt: skip
        programs = []
        for fn in (begin, advance):
            solve = vectorized(fn, vector)
            if mesh and vector:
                solve = distributed.per_device(solve, mesh, replicated=1)
            programs.append(jax.jit(solve))
        with jax.default_matmul_precision(first.run.matmul_precision):
            programs[0] = programs[0].lower(data, hyper, settings, params, keys).compile()
        compile_seconds += time.perf_counter() - start
    run_start = time.perf_counter()
    carry, obs0 = ready(programs[0](data, hyper, settings, params, keys))
    carry, treedef = jax.tree.flatten(jax.tree.map(np.asarray, carry))
    observed = [{k: np.asarray(v)[:, None] for k, v in obs0.items()}]
    run_seconds = time.perf_counter() - run_start
    if not isinstance(programs, tuple):
        start = time.perf_counter()
        shared = (data, plan.inputs(0, dtype))
        placed = jax.tree.unflatten(treedef, [place(x) for x in carry])
        with jax.default_matmul_precision(first.run.matmul_precision):
            programs[1] = programs[1].lower(shared, hyper, settings, placed, keys).compile()
        compile_seconds += time.perf_counter() - start
        programs = tuple(programs)
        _PROGRAMS[program] = programs
        CACHE_STATS["compiles"] += 1
    else:
        CACHE_STATS["hits"] += 1
    done = 0
    lo, hi = block
    saved = store.load(lo, hi, plan.count) if store is not None else None
    fits = saved is not None and set(saved.observed) == set(obs0)
    if fits and [x.shape for x in saved.carry] == [(widest, *x.shape[1:]) for x in carry]:
        done = saved.done
        carry = [distributed.pad_to(x, width) for x in saved.carry]
        observed = [{k: distributed.pad_to(v, width) for k, v in saved.observed.items()}]
        if progress:
            print(
                f"gflow: resuming: {done} of {plan.count} segments of inits {lo}-{hi - 1} "
                "already done",
                file=sys.stderr,
                flush=True,
            )
    steps = int(plan.lengths.sum())
    if progress:
        unit = "of the inits' segments" if first.dynamics.kind == "flow" else "of the steps"
        METER.start(width * steps, unit)
        # the meter continues from the resumed step, without a line for the steps already done
        METER.done = width * int(plan.lengths[:done].sum())
        METER.shown = 10 * METER.done // max(METER.total, 1)
        if METER.bar is not None:
            METER.bar.update(METER.done)
    run_start = time.perf_counter()
    for k in range(done, plan.count):
        shared = (data, plan.inputs(k, dtype))
        placed = jax.tree.unflatten(treedef, [place(x) for x in carry])
        new, obs = ready(programs[1](shared, hyper, settings, placed, keys))
        carry = [np.asarray(x) for x in jax.tree.leaves(new)]
        if progress:
            METER.add(width * int(plan.lengths[k].sum()))
        observed.append({n: np.asarray(v)[:, plan.saved[k]] for n, v in obs.items()})
        if store is not None and k + 1 < plan.count:
            joined = {n: np.concatenate([o[n] for o in observed], axis=1) for n in obs0}
            store.save(lo, hi, checkpoint.Checkpoint(
                k + 1, plan.count, [x[:widest] for x in carry],
                {n: v[:widest] for n, v in joined.items()},
            ))  # fmt: skip
    run_seconds += time.perf_counter() - run_start
    joined = {n: np.concatenate([o[n] for o in observed], axis=1) for n in obs0}
    if plan.timed:
        traj = batch.finish_timed(joined, jax.tree.unflatten(treedef, carry))
        return traj, compile_seconds, run_seconds
    final = jax.tree.unflatten(treedef, carry)[0]
    traj = batch.finish_segments(joined, final, save_grid(first.dynamics))
    return traj, compile_seconds, run_seconds


def call_slices(units: int, most: int = 16, aim: int = 10) -> tuple[int, int]:
    """How a batch of ``units`` (devices x vector width inits each) is cut into equal slices,
    one call of the compiled solve each: as little padding as can be, then about ``aim``
    slices (progress every tenth), never more than ``most``.

    Args:
        units: the batch's units (at least 1).
        most: the most slices.
        aim: the slice count preferred among those that pad equally little.

    Returns:
        ``(slices, units per slice)``; ``slices x units per slice >= units``.
    """
    if units <= most:
        return units, 1
    _, _, calls, size = min(
        (n * -(-units // n) - units, abs(n - aim), n, -(-units // n)) for n in range(4, most + 1)
    )
    return calls, size


def _call_in_slices(compiled: Callable, data, parts: list, progress: bool):
    """Run ``compiled(data, *part)`` on every slice of a batch, each dispatched before the
    previous one is waited for (the devices never idle between them), and join the slices'
    trajectories as numpy; with ``progress``, :data:`gflow.progress.METER` counts each slice's
    inits as it finishes."""
    done, waiting = [], None

    def collect(out):
        done.append(jax.tree.map(np.asarray, ready(out)))
        if progress:
            METER.add(len(done[-1].status))

    for part in parts:
        out = compiled(data, *part)
        if waiting is not None:
            collect(waiting)
        waiting = out
    collect(waiting)
    if len(done) == 1:
        return done[0]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *done)


def _shapes(tree) -> list:
    """(shape, dtype) of every leaf, to check that arguments match what was compiled."""
    return [(tuple(x.shape), np.dtype(x.dtype)) for x in jax.tree.leaves(tree)]


class _Compilation:
    """A batched solve traced and lowered here (on arrays or on ``jax.ShapeDtypeStruct``s
    with their shardings), or read back traced (:mod:`gflow.exported`), and compiled by XLA in
    a daemon thread (XLA releases the GIL, so this thread goes on); :meth:`result` waits for it.

    Args:
        solve: the batched solve, ``solve(data, hyper, settings, params, keys)``.
        arguments: its arguments, or their shapes.
        precision: ``run.matmul_precision``, in force while tracing.
        program: what makes the program (``solve_batches``' key), naming its exported file;
            None: traced here, not exported (a solve with host callbacks).
    """

    def __init__(self, solve: Callable, arguments: tuple, precision: str, program: tuple | None):
        self.start = time.perf_counter()
        self.shapes = _shapes(arguments[1:])
        # "highest": float32 products in full float32 on GPUs/TPUs too (not TF32/bf16)
        with jax.default_matmul_precision(precision):
            found = None if program is None else exported.lower(solve, arguments, program)
            lowered, treedef = found if found else (jax.jit(solve).lower(*arguments), None)
        self._done = threading.Event()
        self._out: list = []

        def compile_it():
            try:
                out = lowered.compile()
                self._out.append(out if treedef is None else exported.FlatCall(out, treedef))
            except BaseException as err:  # noqa: BLE001 - raised again in result()
                self._out.append(err)
            self._done.set()

        threading.Thread(target=compile_it, name="gflow-compile", daemon=True).start()

    def result(self) -> tuple[Any, float]:
        """The compiled solve and the seconds from tracing to its end."""
        while not self._done.wait(0.05):  # a short wait: Ctrl-C stays responsive
            pass
        (out,) = self._out
        if isinstance(out, BaseException):
            raise out
        return out, time.perf_counter() - self.start


class _InputCache:
    """Per config, its model and initializer, built once however many blocks it is split in
    (an ``init.from`` file is read once)."""

    def __init__(self):
        self._models: dict[Config, Model] = {}
        self._initializers: dict[Config, Callable] = {}
        self._init_keys: dict[Config, jax.Array] = {}

    def model(self, cfg: Config) -> Model:
        if cfg not in self._models:
            self._models[cfg] = build_model(cfg, check=False)
        return self._models[cfg]

    def segment(self, cfg: Config, lo: int, hi: int, draw: bool = True):
        """(data, hyper, settings, params0, keys, model, save times) of inits [lo, hi) of
        ``cfg``: the model's data, and per init its hyperparameters, traced settings, initial
        parameters (None with ``draw`` False) and noise key (the same values whichever batch
        the inits are solved in)."""
        dtype = set_precision(cfg.run.precision)
        model = self.model(cfg)
        count = hi - lo
        data, hyper = batch.broadcast_hyperparameters(model, count)
        settings = batch.broadcast_settings(batch.settings_for(cfg.dynamics, dtype), count)
        params = None
        if draw:
            if cfg not in self._initializers:
                self._initializers[cfg] = block_initializer(cfg, model, dtype)
            params = self._initializers[cfg](lo, hi)
        keys = np.asarray(noise_keys(cfg.init.seed, cfg.init.count)[lo:hi])
        return data, hyper, settings, params, keys, model, save_grid(cfg.dynamics)

    def segments(self, segments: list[Segment]) -> list[tuple]:
        """:meth:`segment` of every segment of a batch, the inits drawn from seeds drawn in one
        vmapped call over all of them (a sweep's points differ in init.scale and seed, which
        are inputs of that call): the same values as each segment's own draw, since the draw
        is elementwise over the inits, at a tenth of a millisecond a point instead of a few."""
        built = [self.segment(cfg, lo, hi, draw=cfg.init.from_file is not None)
                 for cfg, lo, hi in segments]  # fmt: skip
        drawn = [i for i, (cfg, _, _) in enumerate(segments) if cfg.init.from_file is None]
        if not drawn:
            return built
        keys = np.concatenate([np.asarray(self._keys(cfg)[lo:hi])
                               for cfg, lo, hi in (segments[i] for i in drawn)])  # fmt: skip
        hyper = jax.tree.map(lambda *xs: np.concatenate([np.asarray(x) for x in xs]),
                             *(built[i][1] for i in drawn))  # fmt: skip
        data = built[drawn[0]][0]
        params = batch.draw_inits(data, keys, hyper)
        params = jax.tree.map(np.asarray, params)
        offset = 0
        for i in drawn:
            _, lo, hi = segments[i]
            part = jax.tree.map(lambda x, a=offset, b=offset + hi - lo: x[a:b], params)
            built[i] = (*built[i][:3], part, *built[i][4:])
            offset += hi - lo
        return built

    def shapes(self, segment: Segment, width: int, mesh) -> tuple[Any, list]:
        """The model's data and the shapes (``jax.ShapeDtypeStruct``, sharded over ``mesh``'s
        init axis if any) of a batch of ``width`` inits like ``segment``'s, nothing drawn."""
        cfg, lo, _ = segment
        data, hyper, settings, _, keys, model, _ = self.segment(cfg, lo, lo + 1, draw=False)
        params = jax.eval_shape(
            jax.vmap(model.init), jax.ShapeDtypeStruct((1, *keys.shape[1:]), keys.dtype)
        )
        sharding = NamedSharding(mesh, PartitionSpec("init")) if mesh is not None else None

        def as_batch(x):
            return jax.ShapeDtypeStruct((width, *x.shape[1:]), np.dtype(x.dtype), sharding=sharding)

        return data, [jax.tree.map(as_batch, t) for t in (hyper, settings, params, keys)]

    def _keys(self, cfg: Config) -> jax.Array:
        """One init key per init of ``cfg``, split from its seed (:func:`block_initializer`)."""
        if cfg not in self._init_keys:
            self._init_keys[cfg] = jax.random.split(
                jax.random.PRNGKey(cfg.init.seed), cfg.init.count
            )
        return self._init_keys[cfg]


def simulate(cfg: Config | str | Path | Mapping[str, Any], progress: bool = False) -> xr.Dataset:
    """Run the configured simulation in this process and return the results (nothing written).

    All inits, in chunks of ``run.chunk`` if set, sharded over the local devices. Compilation
    and the run are timed apart (``compile_seconds``, ``run_seconds`` attributes).

    Args:
        cfg: a Config, a TOML path, or nested dicts in the TOML layout (:func:`as_config`).
        progress: report compiling, timing and the solve's progress on stderr.

    Returns:
        The results Dataset (:mod:`gflow.results`): observations over (init, time), final
        states and status per init.

    Raises:
        ConfigError: the config is invalid, before anything compiles.
    """
    cfg = as_config(cfg)
    blocks = distributed.chunks(0, cfg.init.count, cfg.run.chunk)
    return results.join(list(solve_blocks(cfg, blocks, progress)))


def run(
    cfg: Config | str | Path | Mapping[str, Any],
    out: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> tuple[xr.Dataset, Path]:
    """:func:`simulate`, then write ``OUT/results.nc`` atomically (OUT defaults to run.out).

    With ``run.chunk`` smaller than ``init.count``, or several processes (``run.coordinator``),
    each block is written to OUT/parts/ as soon as it is solved. An interrupted run started
    again with the same config skips the blocks already there; process 0 joins the parts into
    results.nc and removes them (the other processes return what they solved, or None, and the
    parts folder). Before anything compiles (one-line ConfigErrors): an OUT that cannot be
    created or written, one in use by another live run or sweep (its lock), one holding a
    sweep, results of another config or a parts folder of another config is refused.

    Args:
        cfg: a Config, a TOML path, or nested dicts in the TOML layout (:func:`as_config`).
        out: the output folder; None: ``run.out``.
        progress: report compiling, timing and the solve's progress on stderr.
        overwrite: replace a sweep's or another config's results instead of refusing.

    Returns:
        ``(ds, path)``: the results Dataset and the path of results.nc; on a process other than
        0, what it solved (or None) and the parts folder.

    Raises:
        ConfigError: the config or OUT is refused, before anything compiles.
    """
    cfg = as_config(cfg)
    if out is not None:
        cfg = cfg.replace(run={"out": str(out)})
    out = Path(cfg.run.out).expanduser()
    outdir.probe(out)  # a run must not fail only once its results are ready
    index, total = distributed.initialize(cfg.run)
    with outdir.hold(out, outdir.LOCK if total == 1 else f"{outdir.LOCK}.{index}"):
        if index == 0:
            outdir.refuse_sweep_folder(out, overwrite)
            _refuse_other_results(out / "results.nc", cfg, overwrite)
        return _run_held(cfg, out, index, total, progress)


def _refuse_other_results(path: Path, cfg: Config, overwrite: bool) -> None:
    """``path`` (results.nc) of another config (another seed included) is refused, or removed
    with ``overwrite``; results of the same config are replaced by the new run's."""
    if not path.is_file():
        return
    try:
        with xr.open_dataset(path) as ds:
            theirs = ds.attrs["config"]
        same = fingerprint(config_mod.loads(theirs)) == fingerprint(cfg)
    except Exception:  # noqa: BLE001 -- unreadable, foreign or from an older config format
        same = False
    if same or overwrite:
        return
    raise ConfigError(
        f"run.out: {path.parent} holds results.nc of another config; choose another folder "
        "(--out), or --overwrite to replace it"
    )


def _run_held(cfg: Config, out: Path, index: int, total: int, progress: bool):
    """:func:`run`'s work once OUT is held: solve (in blocks, resumable), write, join."""
    results.remove_stale_temporaries(out)
    lo, hi = distributed.process_block(cfg.init.count, index, total)
    blocks = distributed.chunks(lo, hi, cfg.run.chunk)
    # one block of a run of one segment: nothing to keep; a long stepped run keeps its
    # segments (gflow.checkpoint) in the parts folder, even as one block
    if total == 1 and len(blocks) == 1 and segment_plan(cfg) is None:
        ds = simulate(cfg, progress=progress)
        return ds, results.save(ds, out / "results.nc")
    parts = results.PartStore(out / "parts", fingerprint(cfg))
    kept = checkpoint.Checkpoints(parts.folder, fingerprint(cfg))
    todo = [b for b in blocks if not parts.has(*b)]
    if progress and len(todo) < len(blocks):
        print(
            f"gflow: resuming: {len(blocks) - len(todo)} of {len(blocks)} blocks already done",
            file=sys.stderr,
            flush=True,
        )
    solved = []
    for ds in solve_blocks(cfg, todo, progress, kept) if todo else ():
        parts.save(ds)
        kept.remove(int(ds.init.values[0]), int(ds.init.values[-1]) + 1)
        solved.append(ds)
    if index != 0:  # process 0 joins the parts (and may already be removing them)
        return (results.join(solved) if solved else None), parts.folder
    every = [
        b
        for p in range(total)
        for b in distributed.chunks(
            *distributed.process_block(cfg.init.count, p, total), cfg.run.chunk
        )
    ]
    ds = results.join(parts.wait_for(every, progress=progress, timeout=cfg.run.wait_timeout))
    path = results.save(ds, out / "results.nc")
    parts.remove()
    return ds, path


def fingerprint(cfg: Config) -> str:
    """The config as TOML without the settings that cannot change the numbers (where output
    goes, progress, sharding, process layout): runs with equal fingerprints may share parts.

    Args:
        cfg: the config.

    Returns:
        The TOML text.
    """
    neutral = dict(
        out=".", progress=False, shard=True, coordinator="", num_processes=1, process_id=0,
        connect_timeout=60, wait_timeout=86400,
    )  # fmt: skip
    return config_mod.dumps(cfg.replace(run=neutral))
