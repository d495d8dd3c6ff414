"""gflow: gradient flow and gradient descent on neural-collapse models, vmapped over inits.

Pipeline: config -> model (params pytree + pure loss) -> dynamics (flow / gd / sde) -> batch
(vmap) -> metrics along the trajectory -> results (xarray, netCDF) -> plots.

The public names below are imported on first use (PEP 562), so that ``import gflow.cli`` stays
light and the command line can configure JAX and equinox before they load.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = ("config", "dynamics", "hessian", "metrics", "models", "plots", "results", "theory")
_EXPORTS = {
    "init_batch": "gflow.batch",
    "observer": "gflow.batch",
    "run_batch": "gflow.batch",
    "save_grid": "gflow.batch",
    "Config": "gflow.config",
    "ConfigError": "gflow.config",
    "STATUS": "gflow.dynamics",
    "Trajectory": "gflow.dynamics",
    "gradient_descent": "gflow.dynamics",
    "gradient_flow": "gflow.dynamics",
    "Model": "gflow.models",
    "Readout": "gflow.models",
    "ufm_ce": "gflow.models",
    "ufm_mse": "gflow.models",
    "ulpm": "gflow.models",
    "enable_compilation_cache": "gflow.simulation",
    "run": "gflow.simulation",
    "set_precision": "gflow.simulation",
    "simulate": "gflow.simulation",
}

__all__ = sorted([*_SUBMODULES, *_EXPORTS])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"gflow.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gflow' has no attribute {name!r}")


def __dir__():
    return __all__
