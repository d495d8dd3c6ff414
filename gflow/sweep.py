"""Parameter sweeps: a config whose fields hold lists runs the product grid of their values.

``gflow sweep CONFIG.toml``: every field given as a list (``model.classes = [4, 10]``,
``dynamics.solver = ["tsit5", "dopri8"]``; for ``model.per_class``, whose plain list means
imbalanced counts, a list of values or of lists) is a sweep axis. Each grid point is one run,
written to OUT/points/NNNN/results.nc; OUT/index.nc is an xarray Dataset with the swept fields
as dimensions: for each point its folder, whether it is done, the fraction of ok inits and the
median final loss and NC1-NC4. OUT/sweep.toml keeps the sweep's config.

Nothing is lost or redone: every file appears by an atomic rename, so a sweep killed at any
moment and started again skips the finished points (and the finished chunks of a chunked
point), and the index is rewritten after each point. An OUT holding another sweep is refused.
"""

from __future__ import annotations

import itertools
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from gflow import config as config_mod
from gflow import results, simulation
from gflow.config import ConfigError

UNSWEEPABLE = {
    ("run", "out"): "one output folder per sweep",
    ("run", "coordinator"): "one process layout per sweep",
    ("run", "num_processes"): "one process layout per sweep",
    ("run", "process_id"): "one process layout per sweep",
    ("init", "from"): "one initial-parameter file per sweep",
}
SUMMARY_VARS = ("loss", "nc1", "nc2", "nc3", "nc4")


def axes(raw: Mapping[str, Any]) -> dict[tuple[str, str], list]:
    """The sweep axes of a TOML-layout dict: {(section, key): values}, in file order."""
    found = {}
    for section, values in raw.items():
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if not isinstance(value, list):
                continue
            if (section, key) == ("model", "per_class") and not any(
                isinstance(v, list) for v in value
            ):
                continue  # a plain list of counts: imbalanced classes, not an axis
            field = f"{section}.{key}"
            if (section, key) in UNSWEEPABLE:
                why = UNSWEEPABLE[(section, key)]
                raise ConfigError(f"{field}: cannot be swept ({why}); give one value")
            if not value:
                raise ConfigError(f"{field}: an empty list sweeps nothing; give values")
            if len({repr(v) for v in value}) != len(value):
                raise ConfigError(f"{field}: a swept list must not repeat values, got {value}")
            found[(section, key)] = value
    return found


def points(raw: Mapping[str, Any]) -> tuple[dict[tuple[str, str], list], list[tuple]]:
    """Axes and the product grid: a list of (index tuple, validated Config) in C order.
    Every point is validated here, before anything runs."""
    grid_axes = axes(raw)
    out = []
    for index in itertools.product(*(range(len(v)) for v in grid_axes.values())):
        point = {s: dict(v) if isinstance(v, Mapping) else v for s, v in raw.items()}
        for (section, key), i in zip(grid_axes, index, strict=True):
            point[section][key] = grid_axes[(section, key)][i]
        try:
            cfg = config_mod.from_dict(point)
        except ConfigError as err:
            where = ", ".join(
                f"{s}.{k} = {grid_axes[(s, k)][i]!r}"
                for (s, k), i in zip(grid_axes, index, strict=True)
            )
            raise ConfigError(f"{err} (at sweep point {where})") from None
        out.append((index, cfg))
    return grid_axes, out


def dimension_names(grid_axes) -> list[str]:
    """Short dimension names: the key, or section.key where two sections share a key."""
    keys = [k for _, k in grid_axes]
    return [k if keys.count(k) == 1 else f"{s}.{k}" for s, k in grid_axes]


def _coordinate(values: list) -> np.ndarray:
    if all(isinstance(v, list) for v in values):
        return np.array([",".join(map(str, v)) for v in values], dtype=object)
    if all(isinstance(v, bool) for v in values) or all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object if isinstance(values[0], str) else bool)
    return np.array(values)


def run(path: str | Path, out: str | Path | None = None, progress: bool = True) -> Path:
    """Run (or resume) the sweep in the TOML file ``path``; returns the index path."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config: {path} is not valid TOML: {err}") from None
    if out is not None:
        raw.setdefault("run", {})["out"] = str(out)
    grid_axes, grid = points(raw)
    folder = Path(raw.get("run", {}).get("out", config_mod.RunConfig.out))
    _claim(folder, raw)
    done = [(folder / "points" / f"{n:04d}" / "results.nc").is_file() for n in range(len(grid))]
    if progress and any(done):
        print(f"gflow sweep: resuming: {sum(done)} of {len(grid)} points done", file=sys.stderr)
    for n, (index, cfg) in enumerate(grid):
        if done[n]:
            continue
        label = ", ".join(
            f"{name} = {grid_axes[a][i]}"
            for name, a, i in zip(dimension_names(grid_axes), grid_axes, index, strict=True)
        )
        if progress:
            print(f"gflow sweep: point {n + 1}/{len(grid)} ({label})", file=sys.stderr, flush=True)
        simulation.run(cfg.replace(run={"out": str(folder / "points" / f"{n:04d}")}))
        write_index(folder, grid_axes, grid)
    return write_index(folder, grid_axes, grid)


def _claim(folder: Path, raw: Mapping[str, Any]) -> None:
    """Record the sweep's config in OUT/sweep.toml, or refuse an OUT holding another sweep."""
    stamp = folder / "sweep.toml"
    mine = _canonical(raw)
    if stamp.is_file():
        theirs = _canonical(tomllib.loads(stamp.read_text()))
        if theirs != mine:
            raise ConfigError(
                f"run.out: {folder} holds a sweep of a different config; run that config again "
                "to resume it, or choose another folder (--out)"
            )
        results.remove_stale_temporaries(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    results.remove_stale_temporaries(folder)
    results.write_text(stamp, mine)


def _canonical(raw: Mapping[str, Any]) -> str:
    """TOML text of a sweep config with the output folder left out (so a moved OUT resumes)."""
    lines = []
    for section in sorted(raw):
        values = raw[section]
        if not isinstance(values, Mapping):
            continue
        lines.append(f"[{section}]")
        for key in sorted(values):
            if (section, key) != ("run", "out"):
                lines.append(f"{key} = {config_mod._toml_value(values[key])}")
    return "\n".join(lines) + "\n"


def write_index(folder: Path, grid_axes, grid) -> Path:
    """OUT/index.nc: per grid point its folder, done flag, ok fraction and median final
    metrics (NaN where not done), dims = the swept fields. Written atomically."""
    names = dimension_names(grid_axes)
    shape = tuple(len(v) for v in grid_axes.values())
    table = {v: np.full(shape, np.nan) for v in ("ok_fraction", *SUMMARY_VARS)}
    table["run_seconds"] = np.full(shape, np.nan)
    done = np.zeros(shape, bool)
    where = np.empty(shape, dtype=object)
    for n, (index, _) in enumerate(grid):
        point = folder / "points" / f"{n:04d}"
        where[index] = str(point.relative_to(folder))
        file = point / "results.nc"
        if not file.is_file():
            continue
        ds = results.load(file)
        done[index] = True
        table["ok_fraction"][index] = float((ds.status == "ok").mean())
        table["run_seconds"][index] = ds.attrs["run_seconds"]
        last = ds.isel(time=-1)
        for var in SUMMARY_VARS:
            table[var][index] = float(last[var].median())
    dims = tuple(names)
    data = {name: (dims, values) for name, values in table.items()}
    data.update(done=(dims, done), path=(dims, where))
    coords = {name: _coordinate(v) for name, v in zip(names, grid_axes.values(), strict=True)}
    ds = xr.Dataset(data, coords=coords, attrs={"sweep": (folder / "sweep.toml").read_text()})
    return results.save(ds, folder / "index.nc")


def open_index(folder: str | Path) -> xr.Dataset:
    """The sweep's index (opened lazily by xarray)."""
    return xr.open_dataset(Path(folder) / "index.nc", engine="netcdf4")


def load_point(folder: str | Path, **coords) -> xr.Dataset:
    """The full results of one grid point, chosen by its swept values:
    ``load_point(out, classes=10, solver="tsit5")``."""
    index = open_index(folder)
    relative = index.path.sel(**coords).item()
    return results.load(Path(folder) / relative / "results.nc")
