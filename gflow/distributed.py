"""Where the initializations run: the local device mesh, chunks, and processes of a multi-host run.

Initializations are independent, so scaling out needs no communication during a solve:

- over local devices, the init axis of a batch is sharded with a ``jax.sharding.Mesh`` over
  ``jax.local_devices()`` (axis name ``init``) and a ``NamedSharding``; ``jit`` then runs each
  device's slice of the vmapped solve (computation follows data);
- over processes (hosts), ``jax.distributed.initialize`` connects them and each process solves
  its contiguous block of inits; each writes its part and process 0 joins them;
- a batch larger than memory runs in chunks of ``run.chunk`` inits, one after the other.

The keys of every init are split from the seed for the whole batch before any of this, so the
same config and seed give the same numbers however the inits are chunked, sharded or spread.
"""

from __future__ import annotations

import os
import socket
import time

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gflow.config import ConfigError, RunConfig


def usable_cores() -> int:
    """CPU cores this process may run on.

    Returns:
        The size of its affinity mask where the OS has one (Linux), else ``os.cpu_count()``,
        else 1.
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def use_cpu_cores() -> None:
    """One XLA CPU device per core available to this process, set before JAX starts its
    backends (``jax_num_cpu_devices``), so that sharding the init axis keeps every core busy:
    a single CPU device leaves the second core of the dev box mostly idle (GD 1.7-2.5x faster
    with 2). Left alone where the user chose (JAX_NUM_CPU_DEVICES, or the XLA_FLAGS
    ``--xla_force_host_platform_device_count``) or JAX is already running in this process."""
    if os.environ.get("JAX_NUM_CPU_DEVICES") or "device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", usable_cores())
    except RuntimeError:  # backends already initialized: keep what this process has
        pass


def local_mesh() -> Mesh:
    """A 1-d mesh over this process's devices.

    Returns:
        The ``Mesh`` of ``jax.local_devices()``, axis ``init``.
    """
    return Mesh(np.array(jax.local_devices()), ("init",))


def pad_to(tree, size: int):
    """Pad the leading (init) axis of every leaf by repeating the last init.

    Args:
        tree: a pytree of arrays with a leading init axis.
        size: the length to pad to (leaves already this long or longer are kept).

    Returns:
        The pytree, each leaf's leading axis at least ``size``.
    """

    def pad(x):
        extra = size - x.shape[0]
        if extra <= 0:
            return x
        return np.concatenate([np.asarray(x), np.repeat(np.asarray(x)[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def shard_inits(tree, mesh: Mesh):
    """Place a batch with its init axis split over the mesh's devices.

    Args:
        tree: a pytree of arrays, the leading axis divisible by the mesh size.
        mesh: the mesh (:func:`local_mesh`).

    Returns:
        The pytree, each leaf a sharded ``jax.Array``.
    """
    sharding = NamedSharding(mesh, PartitionSpec("init"))
    return jax.tree.map(lambda x: jax.device_put(x, sharding), tree)


def per_device(fn, mesh: Mesh, replicated: int = 0):
    """``shard_map`` of a batched function over the mesh: each device runs ``fn`` on its own
    slice of the init axis (no communication: inits are independent).

    Args:
        fn: a function of batched arguments (leading init axis) returning a batched pytree.
        mesh: the mesh (:func:`local_mesh`).
        replicated: the first ``replicated`` arguments (shared data) go whole to every device.

    Returns:
        The sharded function, with ``fn``'s arguments.
    """
    spec = PartitionSpec("init")

    def sharded(*args):
        specs = (PartitionSpec(),) * replicated + (spec,) * (len(args) - replicated)
        # check_vma off: diffrax's loops build carries that the varying-axis check rejects
        return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=spec, check_vma=False)(*args)

    return sharded


def chunks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) in consecutive blocks.

    Args:
        start: the first init.
        stop: one past the last.
        size: the most inits of a block; 0: one block.

    Returns:
        The blocks (lo, hi), in order.
    """
    size = stop - start if size <= 0 else size
    return [(lo, min(lo + size, stop)) for lo in range(start, stop, max(size, 1))]


def process_block(count: int, index: int, total: int) -> tuple[int, int]:
    """The contiguous block of inits a process solves.

    Args:
        count: the inits of the run.
        index: the process's index, 0 .. total - 1.
        total: the number of processes.

    Returns:
        (lo, hi): inits [lo, hi); the first ``count % total`` processes take one more.
    """
    base, extra = divmod(count, total)
    lo = index * base + min(index, extra)
    return lo, lo + base + (index < extra)


def initialize(run: RunConfig) -> tuple[int, int]:
    """Join a multi-process run if the config or environment asks for one.

    Args:
        run: the ``[run]`` section. ``run.coordinator``: "" (single process, unless
            $GFLOW_COORDINATOR is set), "auto" (let JAX read a cluster environment such as
            SLURM's), or "host:port" with ``run.num_processes`` and ``run.process_id`` (or
            $GFLOW_NUM_PROCESSES, $GFLOW_PROCESS_ID); ``run.connect_timeout`` bounds the wait.

    Returns:
        (process index, process count); (0, 1) for a single process.

    Raises:
        ConfigError: the coordinator cannot be reached or joined in time.
    """
    coordinator = run.coordinator or os.environ.get("GFLOW_COORDINATOR", "")
    if not coordinator:
        return 0, 1
    if jax.distributed.is_initialized():
        return jax.process_index(), jax.process_count()
    process_id = int(os.environ.get("GFLOW_PROCESS_ID", run.process_id))
    if coordinator != "auto" and process_id != 0:
        _wait_for_coordinator(coordinator, run.connect_timeout)
    try:
        if coordinator == "auto":
            jax.distributed.initialize(initialization_timeout=run.connect_timeout)
        else:
            jax.distributed.initialize(
                coordinator_address=coordinator,
                num_processes=int(os.environ.get("GFLOW_NUM_PROCESSES", run.num_processes)),
                process_id=process_id,
                initialization_timeout=run.connect_timeout,
            )
    except Exception as err:  # noqa: BLE001 -- any failure to join is reported in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(
            f"run.coordinator: cannot join the run at {coordinator!r} within "
            f"{run.connect_timeout} s ({first[:160]}); check the address and that every "
            "process starts"
        ) from None
    return jax.process_index(), jax.process_count()


def _wait_for_coordinator(address: str, timeout: float) -> None:
    """Try to open a TCP connection to host:port until ``timeout`` seconds pass. JAX aborts the
    whole process (not an exception) when a coordinator cannot be reached, so this is checked
    first, to fail with a one-line ConfigError instead."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"run.coordinator: cannot reach {address} within {timeout} s ({err}); check "
                    "the address and that process 0 is running"
                ) from None
            time.sleep(0.2)
