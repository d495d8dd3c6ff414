"""Open a results file and read what it declares (``load``, ``target_metrics``), light enough
for ``gflow plot``: xarray, not JAX or the config machinery.

:func:`gflow.results.load` and :func:`gflow.results.target_metrics` are these functions; what
a results file holds is in :mod:`gflow.results` and ``docs/reference/results.md``.
"""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from gflow.errors import ConfigError

__all__ = ["load", "target_metrics"]


def load(path: str | Path) -> xr.Dataset:
    """Open a results file fully into memory (the file is closed on return).

    Args:
        path: a results.nc.

    Returns:
        The Dataset.

    Raises:
        ConfigError: a netCDF file that gflow did not write (no ``time``, ``loss``, ``W``,
            ``H`` or ``config`` attribute, e.g. a sweep's index.nc), in one line saying what
            it lacks.
    """
    with xr.open_dataset(path, engine="netcdf4") as ds:
        names = [name for name in ("time", "loss", "W", "H") if name not in ds.variables]
        lacks = [f"variables {', '.join(names)}"] if names else []
        lacks += [] if "config" in ds.attrs else ["the config attribute"]
        if lacks:
            hint = f"; it is a sweep's index: plot its folder, {Path(path).absolute().parent}"
            raise ConfigError(
                f"results: {path} is not a gflow results file or sweep folder (it lacks "
                f"{' and '.join(lacks)}){hint if 'sweep' in ds.attrs else ''}"
            )
        return ds.load()


def target_metrics(ds: xr.Dataset) -> tuple[str, ...]:
    """The metrics that vanish at the model's target geometry.

    Args:
        ds: a results Dataset.

    Returns:
        The names in its ``theory_metrics`` (NC1-NC4, the simplex ETF's, for files written
        before it was recorded).
    """
    return tuple(ds.attrs.get("theory_metrics", "nc1 nc2 nc3 nc4").split())
