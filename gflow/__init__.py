"""gflow: gradient flow and gradient descent on neural-collapse models, vmapped over inits.

Pipeline: config -> model (params pytree + pure loss) -> dynamics (flow / gd) -> batch (vmap)
-> metrics along the trajectory -> results (xarray, netCDF) -> plots.
"""

from gflow import config, dynamics, metrics, models, plots, results, theory
from gflow.batch import init_batch, observer, run_batch, save_grid
from gflow.config import Config, ConfigError
from gflow.dynamics import STATUS, Trajectory, gradient_descent, gradient_flow
from gflow.models import Model, Readout, ufm_ce, ulpm
from gflow.simulation import run, set_precision, simulate

__version__ = "0.1.0"

__all__ = [
    "STATUS",
    "Config",
    "ConfigError",
    "Model",
    "Readout",
    "Trajectory",
    "config",
    "dynamics",
    "gradient_descent",
    "gradient_flow",
    "init_batch",
    "metrics",
    "models",
    "observer",
    "plots",
    "results",
    "run",
    "run_batch",
    "save_grid",
    "set_precision",
    "simulate",
    "theory",
    "ufm_ce",
    "ulpm",
]
