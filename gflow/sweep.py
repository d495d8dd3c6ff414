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
import os
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from gflow import atomic, batch, outdir, results, simulation
from gflow import config as config_mod
from gflow.config import ConfigError

UNSWEEPABLE = {
    ("run", "out"): "one output folder per sweep",
    ("run", "coordinator"): "one process layout per sweep",
    ("run", "num_processes"): "one process layout per sweep",
    ("run", "process_id"): "one process layout per sweep",
    ("init", "from"): "one initial-parameter file per sweep",
}
SUMMARY_VARS = ("loss", "nc1", "nc2", "nc3", "nc4")


# fields whose one value is a list: a list of lists sweeps them
LIST_VALUED = {("model", "per_class"), ("model", "target_spectrum")}


def axes(raw: Mapping[str, Any]) -> dict[tuple[str, str], list]:
    """The sweep axes of a config: the fields whose value is a list (a list of lists for the
    list-valued fields per_class and target_spectrum).

    Args:
        raw: the config as nested dicts in the TOML layout.

    Returns:
        ``{(section, key): values}``, in file order.

    Raises:
        ConfigError: a field that cannot be swept holds a list, or a list is empty or repeats
            a value.
    """
    found = {}
    for section, values in raw.items():
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            if not isinstance(value, list):
                continue
            if (section, key) in LIST_VALUED and not any(isinstance(v, list) for v in value):
                continue  # one list value (counts of imbalanced classes, a spectrum): not an axis
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
    """The axes and their product grid; every point is validated here, before anything runs.

    Args:
        raw: the sweep config as nested dicts in the TOML layout.

    Returns:
        ``(axes, grid)``: the axes (:func:`axes`) and the list of (index tuple, validated
        Config) of every point, in C order.

    Raises:
        ConfigError: an axis is invalid, or a point's config is (the message names the point).
    """
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
    """Short dimension names of the sweep axes.

    Args:
        grid_axes: the axes, ``{(section, key): values}``.

    Returns:
        Per axis, the key, or section.key where two sections share a key.
    """
    keys = [k for _, k in grid_axes]
    return [k if keys.count(k) == 1 else f"{s}.{k}" for s, k in grid_axes]


def _coordinate(values: list) -> np.ndarray:
    if all(isinstance(v, list) for v in values):
        return np.array([",".join(map(str, v)) for v in values], dtype=object)
    if all(isinstance(v, bool) for v in values) or all(isinstance(v, str) for v in values):
        return np.array(values, dtype=object if isinstance(values[0], str) else bool)
    return np.array(values)


# A folded batch holds at most this many bytes of initial states (about ten copies live in an
# adaptive solve): 256 MB, e.g. 160,000 inits of a 1.6 kB UFM-CE K=4 state, 9,700 of the K=10
# reference problem in float32.
FOLD_BYTES = 256 * 2**20


def foldable(cfg: config_mod.Config) -> bool:
    """Whether a point can share a batch with others.

    Args:
        cfg: the point's config.

    Returns:
        True for one process and no split in chunks (chunked or multi-process points run
        alone, with their parts, as ``gflow run`` does).
    """
    r = cfg.run
    return r.coordinator == "" and (r.chunk == 0 or r.chunk >= cfg.init.count)


def plan(grid: list[tuple], todo: list[int]) -> list[list[int]]:
    """The points to run, grouped by compiled program.

    Args:
        grid: the grid, (index tuple, Config) per point (:func:`points`).
        todo: the numbers of the points to run.

    Returns:
        The groups of point numbers that share a :func:`gflow.simulation.structure_key` (a
        point that is not :func:`foldable` alone), in order of their first point, points in
        grid order within a group.
    """
    groups: dict[str, list[int]] = {}
    for n in todo:
        cfg = grid[n][1]
        key = simulation.structure_key(cfg) if foldable(cfg) else f"alone {n}"
        groups.setdefault(key, []).append(n)
    return list(groups.values())


def batches_of(grid: list[tuple], group: list[int]) -> list[list[int]]:
    """A group's points in batches of whole points.

    Args:
        grid: the grid, (index tuple, Config) per point.
        group: point numbers that share a compiled program (:func:`plan`).

    Returns:
        The batches of point numbers, each of at most run.chunk inits (if set) or
        :data:`FOLD_BYTES` of initial states (a bigger point alone).
    """
    cfg = grid[group[0]][1]
    model = simulation.build_model(cfg, check=False)
    cap = cfg.run.chunk or max(1, FOLD_BYTES // max(1, batch.state_bytes(model)))
    out: list[list[int]] = [[]]
    for n in group:
        count = grid[n][1].init.count
        if out[-1] and sum(grid[m][1].init.count for m in out[-1]) + count > cap:
            out.append([])
        out[-1].append(n)
    return out


def run(
    path: str | Path,
    out: str | Path | None = None,
    progress: bool = True,
    overwrite: bool = False,
    overrides: tuple[str, ...] = (),
) -> Path:
    """Run (or resume) the sweep in the TOML file ``path``.

    Points that differ only in values the compiled solve takes as inputs (hyperparameters,
    traced dynamics settings, seeds) are solved together: all their (point, init) pairs in one
    batch of one compiled program, sharded and vectorized like one run's inits. Only structural
    axes (model, classes, dim, solver, kind, ...) add compilations. Each point's results are
    those of running it alone. OUT is checked before anything compiles: it must be writable,
    not in use by another run or sweep, and hold no run's results nor a sweep of another config.

    Args:
        path: the sweep's TOML config.
        out: the output folder; None: the config's ``run.out``.
        progress: report the points and solves on stderr.
        overwrite: replace a run's results or a sweep of another config in OUT.
        overrides: ``section.key=value`` strings applied to the file's config first.

    Returns:
        The path of OUT/index.nc (:func:`write_index`).

    Raises:
        ConfigError: the file, a point's config or OUT is refused, before anything compiles.
    """
    path = Path(path).expanduser()
    config_mod.readable_file("config", path, "a TOML config file")
    text = path.read_text()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config: {path} is not valid TOML: {err}") from None
    raw = config_mod.apply_overrides(raw, overrides)  # section.key=value from the command line
    if out is not None:
        raw.setdefault("run", {})["out"] = str(out)
    grid_axes, grid = points(raw)
    folder = Path(raw.get("run", {}).get("out", config_mod.RunConfig.out)).expanduser()
    outdir.probe(folder)
    with outdir.hold(folder):
        outdir.refuse_run_folder(folder, overwrite)
        if overwrite and (folder / "sweep.toml").is_file():
            if (folder / "sweep.toml").read_text() != _canonical(raw):
                outdir.clear(folder, outdir.SWEEP_FILES)
        _claim(folder, raw)
        return _run_claimed(folder, grid_axes, grid, progress)


def _run_claimed(folder: Path, grid_axes, grid, progress: bool) -> Path:
    """:func:`run`'s work once OUT is held and claimed: the points not done, in batches."""
    done = [(folder / "points" / f"{n:04d}" / "results.nc").is_file() for n in range(len(grid))]
    todo = [n for n in range(len(grid)) if not done[n]]
    groups = plan(grid, todo)
    say = (
        (lambda m: print(f"gflow sweep: {m}", file=sys.stderr, flush=True))
        if progress
        else (lambda m: None)
    )
    if any(done):
        say(f"resuming: {sum(done)} of {len(grid)} points done")
    say(f"{len(todo)} point(s) to run in {len(groups)} compiled solve(s)")
    summaries: dict[int, dict] = {}
    folded = sum(len(g) for g in groups if foldable(grid[g[0]][1]))
    with atomic.Writers(writer_processes(folded)) as writers:
        for number, group in enumerate(groups, start=1):
            first = _label(grid_axes, grid[group[0]][0])
            more = " ..." if len(group) > 1 else ""
            say(f"solve {number}/{len(groups)}: {len(group)} point(s) ({first}{more})")
            if not foldable(grid[group[0]][1]):
                (n,) = group
                _, path = simulation.run(
                    grid[n][1].replace(run={"out": str(folder / "points" / f"{n:04d}")})
                )
                ds = swept_coordinates(results.load(path), grid_axes, grid[n][0])
                results.save(ds, path)
                write_index(folder, grid_axes, grid, summaries)
                continue
            packs = batches_of(grid, group)
            segments = [[(grid[n][1], 0, grid[n][1].init.count) for n in pack] for pack in packs]
            written = 0
            solved = simulation.solve_batches(segments, progress)
            for pack, datasets in zip(packs, solved, strict=True):
                for n, ds in zip(pack, datasets, strict=True):
                    ds = swept_coordinates(ds, grid_axes, grid[n][0])
                    writers.submit(ds, folder / "points" / f"{n:04d}" / "results.nc")
                    summaries[n] = _summary(ds)
                writers.wait()  # the index names only points whose file is on disk
                written += len(pack)
                say(f"{written}/{len(group)} point(s) of this solve written")
                write_index(folder, grid_axes, grid, summaries)
    return write_index(folder, grid_axes, grid, summaries)


# points written in the sweep's own process below this many; above, one writer process per
# core (up to 4) writes them while it goes on (a point's file is ~25 ms of HDF5's time)
PARALLEL_WRITES_FROM = 32


def writer_processes(points: int) -> int:
    """The writer processes (:class:`gflow.atomic.Writers`) for a sweep writing ``points``
    files from batched solves: none for a few, else one per core up to 4.

    Args:
        points: the number of point files to write.

    Returns:
        The number of processes (0: write in this process).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 0 if points < PARALLEL_WRITES_FROM or (cores or 1) < 2 else min(cores, 4)


def swept_coordinates(ds: xr.Dataset, grid_axes, index) -> xr.Dataset:
    """A point's results with its swept values as scalar coordinates, so that its file says
    where it sits: ``xr.open_mfdataset(files, combine="nested", concat_dim=...)`` or
    ``preprocess=lambda d: d.expand_dims(names)`` with ``combine="by_coords"`` rebuild the grid.

    Args:
        ds: the point's results Dataset.
        grid_axes: the axes, ``{(section, key): values}``.
        index: the point's index tuple, one position per axis.

    Returns:
        ``ds`` with one scalar coordinate per axis, named as :func:`dimension_names`.
    """
    values = {
        name: _coordinate([grid_axes[a][i]])[0]
        for name, a, i in zip(dimension_names(grid_axes), grid_axes, index, strict=True)
    }
    return ds.assign_coords(
        {k: ((), v, {"long_name": f"swept field {k}"}) for k, v in values.items()}
    )


def _label(grid_axes, index) -> str:
    return ", ".join(
        f"{name} = {grid_axes[a][i]}"
        for name, a, i in zip(dimension_names(grid_axes), grid_axes, index, strict=True)
    )


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
        for point in (folder / "points").glob("*"):  # a point killed while being written
            results.remove_stale_temporaries(point)
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


THEORY_VARS = ("theory_loss", "theory_W_norm_sq", "theory_collapsed")


def _summary(ds: xr.Dataset) -> dict[str, float]:
    """A point's row of the index: the ok fraction, run seconds, median final metrics and
    ||W||^2, and the closed form's values where the model has one (NaN otherwise)."""
    last = ds.isel(time=-1)
    row = {var: float(last[var].median()) for var in (*SUMMARY_VARS, "W_norm_sq") if var in last}
    row.update(ok_fraction=float((ds.status == "ok").mean()), run_seconds=ds.attrs["run_seconds"])
    row.update({var: float(ds.attrs.get(var, np.nan)) for var in THEORY_VARS})
    return row


def write_index(folder: Path, grid_axes, grid, summaries: dict[int, dict] | None = None) -> Path:
    """Write OUT/index.nc atomically: the sweep's table, dims the swept fields.

    Args:
        folder: OUT, holding sweep.toml and points/NNNN/results.nc.
        grid_axes: the axes, ``{(section, key): values}``.
        grid: the grid, (index tuple, Config) per point.
        summaries: points' rows by number, a cache (filled here from the files of points not
            in it); None: read every finished point's file.

    Returns:
        The path of index.nc; per grid point it holds its folder, done flag, ok fraction, run
        seconds and median final metrics (NaN where not done).
    """
    summaries = {} if summaries is None else summaries
    names = dimension_names(grid_axes)
    shape = tuple(len(v) for v in grid_axes.values())
    columns = ("ok_fraction", *SUMMARY_VARS, "W_norm_sq", "run_seconds", *THEORY_VARS)
    table = {v: np.full(shape, np.nan) for v in columns}
    done = np.zeros(shape, bool)
    where = np.empty(shape, dtype=object)
    for n, (index, _) in enumerate(grid):
        point = folder / "points" / f"{n:04d}"
        where[index] = str(point.relative_to(folder))
        if n not in summaries:
            file = point / "results.nc"
            if not file.is_file():
                continue
            summaries[n] = _summary(results.load(file))
        done[index] = True
        for var, value in summaries[n].items():
            if var in table:
                table[var][index] = value
    dims = tuple(names)
    data = {name: (dims, values) for name, values in table.items()}
    data.update(done=(dims, done), path=(dims, where))
    coords = {name: _coordinate(v) for name, v in zip(names, grid_axes.values(), strict=True)}
    ds = xr.Dataset(data, coords=coords, attrs={"sweep": (folder / "sweep.toml").read_text()})
    return results.save(ds, folder / "index.nc")


def open_index(folder: str | Path) -> xr.Dataset:
    """The sweep's index (opened lazily by xarray).

    Args:
        folder: the sweep's OUT.

    Returns:
        The Dataset of OUT/index.nc (:func:`write_index`).
    """
    return xr.open_dataset(Path(folder) / "index.nc", engine="netcdf4")


def load_point(folder: str | Path, **coords) -> xr.Dataset:
    """The full results of one grid point, chosen by its swept values:
    ``load_point(out, classes=10, solver="tsit5")``.

    Args:
        folder: the sweep's OUT.
        **coords: one value per swept dimension (:func:`dimension_names`).

    Returns:
        The point's results Dataset.
    """
    index = open_index(folder)
    relative = index.path.sel(**coords).item()
    return results.load(Path(folder) / relative / "results.nc")


# the rows of summary(): (label, index variable, its value against the closed form, or None)
_SUMMARY_ROWS = (
    ("loss - closed form", "loss", lambda v, ix: v - ix.get("theory_loss", np.nan)),
    ("NC1", "nc1", None),
    ("NC2", "nc2", None),
    ("NC3", "nc3", None),
    ("NC4", "nc4", None),
    (
        "||W||^2 / closed form - 1",
        "W_norm_sq",
        lambda v, ix: v / ix.get("theory_W_norm_sq", np.nan) - 1,
    ),
)
# a point counts as collapsed when its median final NC1-NC3 are below this (as in results)
_COLLAPSED_BELOW = 1e-3


def summary(index: xr.Dataset, points: int = 16) -> str:
    """A text report of a sweep's index: its grid, the points done and ok, and across the
    points the min, median and max of each point's median final metrics (against the closed
    form where the model has one); with at most ``points`` points, a row per point too.

    Args:
        index: the sweep's index (:func:`open_index`).
        points: the most points listed one by one.

    Returns:
        The report, lines of text.
    """
    index = index.load()
    dims = list(index.path.dims)
    total, done = index.path.size, int(index.done.sum())
    whole = int(((index.ok_fraction == 1) & index.done).sum())
    grid = " x ".join(f"{d} ({index.sizes[d]})" for d in dims)
    lines = [f"sweep: {total} points over {grid}; {done} done, {whole} with every init ok"]
    values = {}
    for label, var, against in _SUMMARY_ROWS:
        if var in index:
            v = index[var].where(index.done)
            v = v if against is None else against(v, index)
            if np.isfinite(v.values).any():  # NaN where the model has no closed form
                values[label] = v
    if values:
        head = f"{'point medians, final':<27} {'min':>11} {'median':>11} {'max':>11}"
        lines += ["", head, "-" * len(head)]
        for label, v in values.items():
            lo, med, hi = (np.nanquantile(v.values, q) for q in (0, 0.5, 1))
            lines.append(f"{label:<27} {lo:>11.4g} {med:>11.4g} {hi:>11.4g}")
    if "theory_collapsed" in index and np.isfinite(index.theory_collapsed.values).any():
        nc = [index[v] for v in ("nc1", "nc2", "nc3") if v in index]
        collapsed = np.logical_and.reduce([(x < _COLLAPSED_BELOW).values for x in nc])
        predicted = (index.theory_collapsed == 1).values & index.done.values
        agree = int((collapsed == predicted)[index.done.values].sum())
        lines += ["", f"collapsed (median NC1-3 < {_COLLAPSED_BELOW:g}) where the closed form "
                      f"says so: {agree} of {done} points agree"]  # fmt: skip
    if 0 < done <= points:
        cols = [c for c in ("ok_fraction", "loss", "nc1", "nc3", "W_norm_sq") if c in index]
        frame = index[cols].where(index.done).to_dataframe()[cols].dropna(how="all")
        lines += ["", frame.to_string(float_format=lambda x: f"{x:.4g}")]
    return "\n".join(lines)


def open_sweep(folder: str | Path) -> xr.Dataset:
    """The whole sweep as one Dataset: every finished point's results with the swept fields as
    dimensions (before ``init``, ``time``, ...), NaN where a point is not done or where points
    differ in size (an outer join over classes, samples, features). Where the points' save
    times differ (a swept t1 or steps), ``time`` becomes the save index and the times are the
    variable ``save_time``.

    Args:
        folder: the sweep's OUT.

    Returns:
        The Dataset, dims the swept fields then each point's own; attributes: the sweep's
        config (each point's own is in its file).

    Raises:
        ConfigError: no point is finished yet.
    """
    folder = Path(folder)
    index = open_index(folder).load()
    names = list(index.path.dims)
    parts = []
    for flat in np.ndindex(index.path.shape):
        if not bool(index.done.values[flat]):
            continue
        ds = results.load(folder / str(index.path.values[flat]) / "results.nc")
        ds.attrs = {}
        parts.append((flat, ds))
    if not parts:
        raise ConfigError(f"run.out: {folder} holds no finished sweep point yet")
    times = [p.time.values for _, p in parts]
    same_times = all(t.shape == times[0].shape and np.array_equal(t, times[0]) for t in times)
    stacked = []
    for flat, ds in parts:
        if not same_times:
            ds = ds.assign(save_time=("time", ds.time.values)).assign_coords(
                time=np.arange(ds.sizes["time"])
            )
        coords = {name: index[name].values[i] for name, i in zip(names, flat, strict=True)}
        stacked.append(
            ds.expand_dims("point").assign_coords({k: ("point", [v]) for k, v in coords.items()})
        )
    whole = xr.concat(stacked, dim="point", join="outer", data_vars="all", coords="different",
                      compat="broadcast_equals")  # fmt: skip
    whole = whole.set_index(point=names).unstack("point")
    whole = whole.transpose(*names, ...)
    whole.attrs = {"sweep": index.attrs["sweep"]}
    return whole
