"""Trajectories as an xarray Dataset with named dimensions, written to netCDF atomically.

The contract: dims ``init``, ``time``, ``class``, ``feature``, ``sample``; along the
trajectory (init, time): ``loss``, ``nc1``..``nc4`` and the other metrics; final state ``W``
(init, class, feature), ``H`` (init, sample, feature), ``b`` (init, class); ``labels`` (sample);
``status`` (init): "ok" or why that init failed; the model's own data arrays
(``Model.saved_data``, e.g. the regression ``targets`` (sample, target)); attributes ``config``
(TOML text),
``gflow_version``, ``git_revision``, the versions of jax, jaxlib, diffrax, optax, equinox,
numpy, xarray and Python, ``device``, ``seed``, ``compile_seconds``, ``run_seconds``.
"""

from __future__ import annotations

import datetime
import functools
import os
import sys
import time
from importlib import metadata
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from gflow import config as config_mod
from gflow.atomic import save_netcdf, write_text
from gflow.config import Config, ConfigError
from gflow.dynamics.trajectory import STATUS, Trajectory
from gflow.models import registry
from gflow.models.base import Model, named_leaves
from gflow.results_file import load, target_metrics  # re-exported here
from gflow.variables import attributes

TRAJECTORY_VARS = ("loss", "nc1", "nc2", "nc3", "nc4")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def _provenance() -> dict[str, str]:
    """The versions behind a results file and the git revision of gflow's source ("" when not
    a checkout); computed once per process."""
    import gflow

    versions = {f"{p}_version": _version(p) for p in ("jaxlib", "diffrax", "optax", "equinox")}
    return {
        "gflow_version": gflow.__version__,
        "git_revision": gflow.version_info().git_revision or "",
        "jax_version": jax.__version__,
        **versions,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": sys.version.split()[0],
    }


def device_description() -> str:
    """The default JAX device and how many devices there are.

    Returns:
        A string such as ``cpu (cpu), 1 device``.
    """
    devices = jax.devices()
    d = devices[0]
    return f"{d.platform} ({d.device_kind}), {len(devices)} device{'s' * (len(devices) > 1)}"


def theory_attrs(model: Model, cfg: Config) -> dict[str, float | int | str]:
    """The closed-form attributes of a results file, from the model's declaration.

    Args:
        model: the configured model (its per-class counts are read).
        cfg: the config (its ``[model]`` section is read).

    Returns:
        The ``theory_*`` reference values where the papers give them, the target geometry in
        words (``theory_geometry``) and the metrics that vanish there (``theory_metrics``,
        space-separated).
    """
    spec = registry.spec(cfg.model.name)
    options = spec.values(cfg.model)
    attrs = spec.closed_form(options, model.counts) if spec.closed_form is not None else {}
    if spec.geometry is not None:
        attrs = {**attrs, "theory_geometry": spec.geometry(options)}
    return {**attrs, "theory_metrics": " ".join(spec.targets(options))}


def to_dataset(
    traj: Trajectory,
    times: np.ndarray,
    model: Model,
    cfg: Config,
    compile_seconds: float,
    run_seconds: float,
    inits: np.ndarray | None = None,
    initial=None,
) -> xr.Dataset:
    """Build the results Dataset from a batched trajectory.

    Every variable gets its CF attributes from :func:`gflow.variables.attributes`
    (``long_name``, ``units`` and, where registered, ``description`` and ``references``).

    Args:
        traj: the trajectories of a block of inits (leading axis: init).
        times: the saved times, (T,).
        model: the model that was solved; its ``saved_data()`` arrays (e.g. the regression
            ``targets`` (sample, target)) become variables too.
        cfg: the config (written as the ``config`` attribute).
        compile_seconds: time spent compiling.
        run_seconds: time spent solving.
        inits: the init indices the block holds (default 0..count-1).
        initial: the initial parameters (a pytree, leading axis init), saved as
            ``initial_<name>`` so that ``init.from`` can start from them again.

    Returns:
        The Dataset: dims ``init``, ``time``, ``class``, ``feature``, ``sample`` (and those of
        the model's data), the attributes of the module's contract.

    Raises:
        ValueError: a ``saved_data`` array takes a variable's name or changes a dim's size.
    """
    traj = jax.tree.map(np.asarray, traj)
    W, H, b, labels = jax.vmap(model.readout)(traj.final)
    count = np.asarray(W).shape[0]
    data = {
        name: (("init", "time", "class", "feature")[: np.ndim(values)], values)
        for name, values in traj.observed.items()
    }  # scalars per time; with run.save_geometry also W_path and means_path, (K, d) per time
    data.update(
        W=(("init", "class", "feature"), np.asarray(W)),
        H=(("init", "sample", "feature"), np.asarray(H)),
        b=(("init", "class"), np.asarray(b)),
        labels=(("sample",), np.asarray(model.labels)),
        status=(("init",), np.array([STATUS[s] for s in traj.status], dtype=object)),
        num_steps=(("init",), traj.num_steps.astype(np.int64)),
        stop_time=(
            ("init",),
            np.asarray(traj.end_time, float),
            {"long_name": "time of the final state (t1, or where the run stopped)"},
        ),
    )
    if initial is not None:
        data.update(_initial_variables(initial, model))
    data.update(_model_data(model, data))
    gd = cfg.dynamics.kind in config_mod.STEPPED_KINDS  # gd, sgd
    time_name = "step" if gd else "flow time"  # sde: flow time too
    coords = {
        "init": (
            "init",
            np.arange(count) if inits is None else np.asarray(inits),
            {"long_name": "initialization"},
        ),
        "time": ("time", times, {"long_name": time_name, "units": "1"}),
        "class": ("class", np.arange(model.num_classes), {"long_name": "class index"}),
        "feature": ("feature", np.arange(model.dim), {"long_name": "feature coordinate"}),
        "sample": ("sample", np.arange(len(model.labels)), {"long_name": "sample, by class"}),
        "class_count": (("class",), np.asarray(model.counts), attributes("class_count")),
    }
    if gd and cfg.dynamics.optimizer == "sgd":  # plain (S)GD follows the flow at time lr * step
        coords["flow_time"] = (
            "time", cfg.dynamics.lr * np.asarray(times, float),
            {"long_name": "lr x step: the gradient-flow time plain (S)GD approximates",
             "units": "1"},
        )  # fmt: skip
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    attrs = {
        "title": f"gflow {cfg.model.name} {cfg.dynamics.kind}",
        "Conventions": "CF-1.10",
        "source": f"gflow {_provenance()['gflow_version']}"
        + (f" (git {_provenance()['git_revision']})" if _provenance()["git_revision"] else ""),
        "history": f"{created}: {command_line()}",
        "command_line": command_line(),
        "config": config_mod.dumps(cfg),
        **_provenance(),
        "device": device_description(),
        "seed": cfg.init.seed,
        "precision": cfg.run.precision,
        "compile_seconds": float(compile_seconds),
        "run_seconds": float(run_seconds),
        "created": created,
        **_runtime(),
        **theory_attrs(model, cfg),
    }
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    for name, var in ds.data_vars.items():
        var.attrs = {**attributes(str(name)), **var.attrs}
    return ds


def command_line() -> str:
    """This process's command line.

    Returns:
        e.g. ``gflow run c.toml`` (a notebook's kernel shows as the Python it runs).
    """
    return (
        " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
    )


def _runtime() -> dict[str, str]:
    """The JAX/XLA set-up that can change the bits: environment variables and PRNG settings."""
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("XLA_", "JAX_", "EQX_"))}
    return {
        "environment": " ".join(f"{k}={v}" for k, v in env.items()) or "(none set)",
        "prng": f"{jax.config.jax_default_prng_impl}, threefry_partitionable="
        f"{jax.config.jax_threefry_partitionable}",
    }


def _initial_variables(initial, model: Model) -> dict:
    """``initial_<name>`` per parameter (its dims named like the final state's where the shapes
    match: W (class, feature), H (sample, feature), b (class); else ``<name>_axis<j>``)."""
    named = {  # by name, not by shape alone: with one sample per class, N = K
        "W": ((model.num_classes, model.dim), ("class", "feature")),
        "H": ((model.num_samples, model.dim), ("sample", "feature")),
        "b": ((model.num_classes,), ("class",)),
    }
    out = {}
    for name, leaf in named_leaves(initial).items():
        values = np.asarray(leaf)
        var = "initial_" + name.replace("/", "_")
        shape = values.shape[1:]
        expected, dims = named.get(name, (None, None))
        dims = dims if shape == expected else None
        if dims is None:
            dims = tuple(f"{var}_axis{j}" for j in range(len(shape)))
        out[var] = (("init", *dims), values, {"parameter": name})
    return out


def _model_data(model: Model, data: dict) -> dict:
    """The model's ``saved_data()`` as results variables, checked against ``data``: a new name,
    one dim name per axis, and the size of every dim that ``data`` (or the coordinates
    ``class``, ``feature``, ``sample``) already has."""
    sizes = {"class": model.num_classes, "feature": model.dim, "sample": len(model.labels)}
    for dims, values, *_ in data.values():
        sizes.update(zip(dims, np.shape(values), strict=False))
    taken = {*data, *sizes, "class_count", "flow_time"}
    out = {}
    for name, (dims, values) in model.saved_data().items():
        values = np.asarray(values)
        if name in taken:
            raise ValueError(f"{model.name}.saved_data: {name!r} is already a results name")
        if len(dims) != values.ndim:
            raise ValueError(
                f"{model.name}.saved_data: {name} has {values.ndim} axes, {len(dims)} dim names"
            )
        for dim, size in zip(dims, values.shape, strict=True):
            if sizes.setdefault(dim, size) != size:
                raise ValueError(
                    f"{model.name}.saved_data: {name} has {size} along {dim!r}, the results "
                    f"{sizes[dim]}"
                )
        out[name] = (tuple(dims), values)
    return out


def save(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` atomically: a temporary file in the same folder, then rename
    (:func:`gflow.atomic.save_netcdf`).

    A reader never sees a half-written file: either the old one or the complete new one. The
    file gets the mode the umask gives, as ``open`` would.

    Args:
        ds: the Dataset.
        path: the netCDF file to write (its folder is created if missing).

    Returns:
        ``path`` as a ``Path``.
    """
    return save_netcdf(ds, path)


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete the temporary files of writes that a killed process left behind.

    Never a results file: those only appear by an atomic rename.

    Args:
        folder: the folder to clean.
    """
    for tmp in Path(folder).glob(".*.*.tmp"):
        tmp.unlink(missing_ok=True)


def join(parts: list[xr.Dataset]) -> xr.Dataset:
    """Concatenate results of disjoint blocks of inits along ``init``, sorted by init index.

    Variables without an ``init`` dim (``labels``, the model's data) and the attributes come
    from the first block; ``run_seconds`` and ``compile_seconds`` are summed.

    Args:
        parts: the blocks' Datasets.

    Returns:
        One Dataset of all their inits.
    """
    parts = sorted(parts, key=lambda ds: int(ds.init.values[0]))
    if len(parts) == 1:
        return parts[0]
    ds = xr.concat(parts, dim="init", data_vars="minimal", coords="minimal", compat="override")
    ds.attrs = dict(parts[0].attrs)
    for key in ("run_seconds", "compile_seconds"):
        ds.attrs[key] = float(sum(p.attrs[key] for p in parts))
    return ds


class PartStore:
    """A folder of result blocks ``part-LO-HI.nc`` (inits LO..HI-1) of one config.

    The blocks are written atomically as they are solved. ``config.toml`` in it holds the
    config's fingerprint; a folder of another config is refused.

    Args:
        folder: the folder (created if missing).
        fingerprint: the config's fingerprint (TOML text).

    Raises:
        ConfigError: the folder holds an unfinished run of another config (one line).
    """

    def __init__(self, folder: str | Path, fingerprint: str):
        self.folder = Path(folder)
        stamp = self.folder / "config.toml"
        if stamp.is_file() and stamp.read_text() != fingerprint:
            raise ConfigError(
                f"run.out: {self.folder.parent} holds an unfinished run of a different config; "
                "run that config again to resume it, or choose another folder (--out)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        if not stamp.is_file():  # several processes may get here at once
            write_text(stamp, fingerprint)

    def path(self, lo: int, hi: int) -> Path:
        """The file of the block of inits [lo, hi)."""
        return self.folder / f"part-{lo:09d}-{hi:09d}.nc"

    def has(self, lo: int, hi: int) -> bool:
        """Whether the block of inits [lo, hi) is written."""
        return self.path(lo, hi).is_file()

    def save(self, ds: xr.Dataset) -> Path:
        """Write a block (its inits are read off ``ds``) atomically; returns its path."""
        lo, hi = int(ds.init.values[0]), int(ds.init.values[-1]) + 1
        return save(ds, self.path(lo, hi))

    def load(self, lo: int, hi: int) -> xr.Dataset:
        """The block of inits [lo, hi), read fully into memory."""
        return load(self.path(lo, hi))

    def wait_for(
        self,
        blocks: list[tuple[int, int]],
        progress: bool = False,
        poll: float = 0.5,
        timeout: float = 86400.0,
    ) -> list[xr.Dataset]:
        """Load every block, waiting for those other processes are still writing.

        Args:
            blocks: the (lo, hi) of every block.
            progress: say on stderr when it waits.
            poll: seconds between looks at the folder.
            timeout: seconds without a new block after which it gives up.

        Returns:
            The blocks' Datasets, in the order of ``blocks``.

        Raises:
            TimeoutError: no new block appeared for ``timeout`` seconds (one line, naming the
                missing inits).
        """
        missing = [b for b in blocks if not self.has(*b)]
        last_news = time.monotonic()
        if progress and missing:
            print("gflow: waiting for the other processes' parts", file=sys.stderr)
        while missing:
            time.sleep(poll)
            still = [b for b in missing if not self.has(*b)]
            if len(still) < len(missing):
                last_news = time.monotonic()
            elif time.monotonic() - last_news > timeout:
                named = ", ".join(f"{lo}-{hi - 1}" for lo, hi in still[:4])
                more = f" and {len(still) - 4} more" if len(still) > 4 else ""
                raise TimeoutError(
                    f"run.wait_timeout: no new part in {timeout:g} s; inits {named}{more} are "
                    f"missing from {self.folder}; run the same config again to resume (finished "
                    "parts are kept)"
                )
            missing = still
        return [self.load(*b) for b in blocks]

    def remove(self) -> None:
        """Delete the folder and its files."""
        for path in self.folder.glob("*"):
            path.unlink(missing_ok=True)
        self.folder.rmdir()


def collapsed(ds: xr.Dataset, tol: float = 1e-3) -> xr.DataArray:
    """Which inits reached the model's target geometry.

    Args:
        ds: a results Dataset.
        tol: the bound on the target metrics.

    Returns:
        Per init (bool): status ok and, at the last saved time, every metric of the target
        geometry (:func:`target_metrics`; NC1-NC3 for a simplex ETF) below ``tol``, NC4 = 0.
    """
    last = ds.isel(time=-1)
    out = ds.status == "ok"
    for name in target_metrics(ds):
        out = out & ((last[name] == 0) if name == "nc4" else (last[name] < tol))
    return out


def escape_time(ds: xr.Dataset, factor: float = 1e4) -> xr.DataArray:
    """How long a run started near a saddle such as W = H = 0 takes to leave it.

    Args:
        ds: a results Dataset.
        factor: the growth of ||W||^2 + ||H||^2 over its initial value that counts as escape.

    Returns:
        Per init, the first saved time at which it has grown by ``factor`` (NaN if never),
        named ``escape_time``.
    """
    sq = ds.W_norm_sq + ds.H_norm_sq
    grown = sq >= factor * sq.isel(time=0)
    first = ds.time.where(grown).min("time")
    return first.rename("escape_time")


def failures(ds: xr.Dataset) -> str:
    """The failed inits by status, most first.

    Args:
        ds: a results Dataset.

    Returns:
        e.g. ``"nan 2, max_steps 1"`` ("" if none failed).
    """
    names, counts = np.unique(ds.status.values.astype(str), return_counts=True)
    found = [(c, n) for n, c in zip(names, counts, strict=True) if n != "ok"]
    order = {name: i for i, name in enumerate(STATUS)}
    found.sort(key=lambda item: (-item[0], order.get(item[1], len(STATUS)), item[1]))
    return ", ".join(f"{n} {c}" for c, n in found)


def _label(metric: str) -> str:
    """NC1..NC4 and NRC1..NRC3 in capitals, other metrics by name."""
    return metric.upper() if metric[:-1] in ("nc", "nrc") and metric[-1].isdigit() else metric


def summary(ds: xr.Dataset) -> str:
    """A text table of the final state across the ok inits, against the closed form.

    Args:
        ds: a results Dataset.

    Returns:
        The table (quantity, closed form where there is one, median, worst), the statuses,
        the fraction collapsed and the timings; a line above says how many inits failed and
        why (and the table is left out if none is ok).
    """
    total = ds.sizes["init"]
    ok = ds.status.values.astype(str) == "ok"
    status, counts = np.unique(ds.status.values.astype(str), return_counts=True)
    statuses = f"inits: {total}  status: " + ", ".join(
        f"{s} {c}" for s, c in zip(status, counts, strict=True)
    )
    timing = (
        f"compile {ds.attrs['compile_seconds']:.2f} s, run {ds.attrs['run_seconds']:.2f} s "
        f"on {ds.attrs['device']}, {ds.attrs['precision']}"
    )
    if not ok.any():
        every = f"all {total} inits" if total > 1 else "the only init"
        return "\n".join(
            [f"{every} failed ({failures(ds)}); no ok init to summarize", statuses, timing]
        )
    head = []
    if not ok.all():
        good = int(ok.sum())
        head = [
            f"{total - good} of {total} inits failed ({failures(ds)}); the figures below are "
            f"over the {good} ok init{'s' * (good > 1)}"
        ]
    ds = ds.isel(init=np.flatnonzero(ok))
    last = ds.isel(time=-1)
    rows = [("quantity", "closed form", "median", "worst")]

    def add(name, values, reference=None):
        values = np.asarray(values, float)
        worst = values[np.argmax(np.abs(values - (reference or 0.0)))]
        ref = "" if reference is None else f"{reference:.10g}"
        rows.append((name, ref, f"{np.median(values):.10g}", f"{worst:.10g}"))

    add("loss", last.loss, ds.attrs.get("theory_loss"))
    if "theory_W_norm_sq" in ds.attrs:
        add("||W||_F^2", last.W_norm_sq, ds.attrs["theory_W_norm_sq"])
        add("||H||_F^2", last.H_norm_sq, ds.attrs["theory_H_norm_sq"])
    if "theory_train_mse" in ds.attrs:  # regression: the fit part of the loss
        add("train_mse", last.train_mse, ds.attrs["theory_train_mse"])
    if "theory_normalized_margin" in ds.attrs:
        add("normalized margin", last.normalized_margin, ds.attrs["theory_normalized_margin"])
    if "theory_margin_rate" in ds.attrs:  # LE-ODE/SDE: m(t) = m(0) exp(rate t); logits, no W
        law = ds.mean_margin.isel(time=0) * np.exp(ds.attrs["theory_margin_rate"] * last.time)
        add("mean margin / m(0)e^(rate t)", last.mean_margin / law, 1.0)
        add("NC1", last.nc1)
        add("NC2 (class means)", last.nc2_features)
        names = ()
    else:
        names = target_metrics(ds)
    for name in names:
        add(_label(name), last[name], 0.0 if "theory_W_norm_sq" in ds.attrs else None)
    width = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, width, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in width))
    lines = [*head, *lines, "", statuses]
    if "theory_margin_rate" not in ds.attrs:
        targets = target_metrics(ds)
        judged = [n for n in targets if n != "nc4"]
        rule = (
            ", ".join(map(_label, judged)) + " < 1e-3" + (", NC4 = 0" if "nc4" in targets else "")
        )
        if targets == ("nc1", "nc2", "nc3", "nc4"):
            rule = "NC1-3 < 1e-3, NC4 = 0"
        lines.append(f"collapsed ({rule}): {float(collapsed(ds).mean()):.0%}")
    lines.append(timing)
    return "\n".join(lines)
