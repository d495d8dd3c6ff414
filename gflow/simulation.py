"""One call from a config to the results Dataset: the Python face of ``gflow run``.

config -> model -> initial parameters -> compiled batch solve -> Dataset (-> results.nc).
Every config problem, including the shapes of an ``init.from`` file, raises ConfigError before
anything compiles.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from gflow import config as config_mod
from gflow import models, results
from gflow.batch import batched_solver, init_batch, noise_keys, observer, save_grid
from gflow.config import Config, ConfigError
from gflow.hessian import DENSE_LIMIT, num_params
from gflow.models.base import Model


def as_config(cfg: Config | str | Path | Mapping[str, Any]) -> Config:
    """Accept a Config, a TOML path, or nested dicts in the TOML layout."""
    if isinstance(cfg, Config):
        return cfg
    if isinstance(cfg, str | Path):
        return config_mod.load(cfg)
    return config_mod.from_dict(cfg)


def enable_compilation_cache(path: str | Path | None = None) -> Path | None:
    """Keep compiled solves on disk (JAX's persistent compilation cache), so that running the
    same configuration again skips XLA compilation. ``path`` defaults to $GFLOW_CACHE_DIR or
    ~/.cache/gflow/jax; "off" disables. Returns the folder used, or None.

    Solves are only cacheable without host callbacks: equinox's runtime checks insert one
    unless EQX_ON_ERROR=nan is set before equinox is imported (the ``gflow`` command does so;
    solver failures then still surface as the per-init status).
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
    """Enable 64-bit JAX when asked (do it before creating arrays) and return the dtype to use."""
    if precision == "float64":
        jax.config.update("jax_enable_x64", True)
        return jnp.float64
    return jnp.float32


def load_initial_params(path: str | Path, model: Model, count: int, dtype) -> dict:
    """Read W, H (and b) from an .npz, with or without a leading init axis, checking shapes."""
    try:
        arrays = dict(np.load(path))
    except Exception as err:  # noqa: BLE001 -- any unreadable file is a config problem
        raise ConfigError(f"init.from: cannot read {path} as .npz: {err}") from None
    K, d, N = model.num_classes, model.dim, len(model.labels)
    expected = {"W": (K, d), "H": (N, d)}
    if model.bias:
        expected["b"] = (K,)
    params = {}
    for name, shape in expected.items():
        if name not in arrays:
            if name == "b":
                arrays["b"] = np.zeros(shape)
            else:
                raise ConfigError(f"init.from: {path} has no array {name!r} (needs W, H, b)")
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
        params[name] = jnp.asarray(a, dtype)
    return params


def prepare(cfg: Config) -> tuple[Model, Any]:
    """The model and the batch of initial parameters (leading axis: init)."""
    dtype = set_precision(cfg.run.precision)
    model = models.from_config(cfg.model, init_scale=cfg.init.scale, dtype=dtype)
    if cfg.init.from_file is not None:
        params0 = load_initial_params(cfg.init.from_file, model, cfg.init.count, dtype)
    else:
        params0 = init_batch(model, cfg.init.seed, cfg.init.count)
    size = num_params(jax.tree.map(lambda x: x[0], params0))
    if cfg.run.hessian == "dense" and size > DENSE_LIMIT:
        raise ConfigError(
            f"run.hessian: dense needs <= {DENSE_LIMIT} parameters, this model has {size}; "
            "use lanczos"
        )
    return model, params0


def simulate(cfg: Config | str | Path | Mapping[str, Any], progress: bool = False) -> xr.Dataset:
    """Run the configured simulation and return the results Dataset (nothing written).

    Compilation and the run are timed apart (``compile_seconds``, ``run_seconds`` attributes).
    """
    cfg = as_config(cfg)
    model, params0 = prepare(cfg)
    if progress:
        print(
            f"gflow: {cfg.model.name}, K={cfg.model.classes}, d={cfg.model.dim}, "
            f"{cfg.init.count} inits, {cfg.dynamics.kind}, {cfg.run.precision}: compiling",
            file=sys.stderr,
            flush=True,
        )
    keys = noise_keys(cfg.init.seed, cfg.init.count)
    start = time.perf_counter()
    observe = observer(model, cfg.run.hessian, cfg.run.hessian_iters)
    solve = batched_solver(model, cfg.dynamics, progress, observe)
    compiled = solve.lower(params0, keys).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    traj = jax.block_until_ready(compiled(params0, keys))
    run_seconds = time.perf_counter() - start
    times = save_grid(cfg.dynamics)
    return results.to_dataset(traj, times, model, cfg, compile_seconds, run_seconds)


def run(
    cfg: Config | str | Path | Mapping[str, Any],
    out: str | Path | None = None,
    progress: bool = False,
) -> tuple[xr.Dataset, Path]:
    """:func:`simulate`, then write ``OUT/results.nc`` atomically (OUT defaults to run.out)."""
    cfg = as_config(cfg)
    if out is not None:
        cfg = cfg.replace(run={"out": str(out)})
    ds = simulate(cfg, progress=progress)
    path = results.save(ds, Path(cfg.run.out) / "results.nc")
    return ds, path
