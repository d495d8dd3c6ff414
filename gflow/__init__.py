"""gflow: gradient flow and gradient descent on neural-collapse models, vmapped over inits.

Pipeline: config -> model (params pytree + pure loss) -> dynamics (flow / gd / sde) -> batch
(vmap) -> metrics along the trajectory -> results (xarray, netCDF) -> plots.

The public names below are imported on first use (PEP 562), so that ``import gflow.cli`` stays
light and the command line can configure JAX and equinox before they load.
"""

from __future__ import annotations

import importlib
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

try:  # the one source is pyproject.toml's [project] version, through the installed metadata
    __version__ = metadata.version("gflow")
except metadata.PackageNotFoundError:  # the source tree imported without being installed
    __version__ = "0+unknown"


class VersionInfo(NamedTuple):
    """gflow's version and the git revision of its source tree (``None`` when not known)."""

    version: str
    git_revision: str | None  # short hash, "+dirty" when tracked files have uncommitted changes

    def __str__(self) -> str:
        return self.version + (f" (git {self.git_revision})" if self.git_revision else "")


def _git(*args: str) -> str | None:
    """The stripped output of ``git -C <package folder> ARGS``; None when git is missing, fails
    or takes over 2 s. No optional locks: never takes index.lock from someone else's git."""
    env = {k: v for k, v in os.environ.items() if k not in ("GIT_DIR", "GIT_WORK_TREE")}
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(Path(__file__).parent), *args],
            capture_output=True, text=True, timeout=2, env=env, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def version_info() -> VersionInfo:
    """The version and, when gflow runs from a git checkout (its ``__init__.py`` tracked, so not
    a copy installed inside some other repository), the checkout's short revision, with
    "+dirty" when tracked files differ from it (untracked files do not count, as in ``git
    describe --dirty``). ``str()`` of it reads "0.2.0 (git abc1234)" or "0.2.0"."""
    if _git("ls-files", "--error-unmatch", "--", "__init__.py") is None:
        return VersionInfo(__version__, None)
    revision = _git("rev-parse", "--short", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if revision else None
    if status is None:  # no commit yet, or the tree's state unknown: no revision, not a wrong one
        return VersionInfo(__version__, None)
    return VersionInfo(__version__, revision + ("+dirty" if status else ""))


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
    "stochastic_gradient_descent": "gflow.dynamics",
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

__all__ = sorted([*_SUBMODULES, *_EXPORTS, "VersionInfo", "version_info"])


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"gflow.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'gflow' has no attribute {name!r}")


def __dir__():
    return __all__
