"""Figures from a results Dataset: trajectories across inits and the final geometry.

Each ``plot_*`` returns a matplotlib Figure; :func:`save_figures` writes them (PNG and PDF).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from gflow import theory

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    # titles at a fixed height: matplotlib would otherwise move each above any top-axis tick
    # labels (gflow draws none), measuring every axes of its row at every draw (~10% of a save)
    "axes.titley": 1.0,
    "grid.alpha": 0.3,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # TrueType in PDF and PS, not Type 3 (which many venues reject)
    "ps.fonttype": 42,
}
_MEDIAN = "#1f4e79"
_THEORY = "#c0392b"


def _margin_label(ds) -> str:
    """The max normalized margin's closed form: balanced, or SELI's for imbalanced classes."""
    if "theory_seli_nuclear_norm" in ds.attrs:
        return r"$1/\|\hat Z\|_*$ (SELI)"
    return r"$1/(\sqrt{n}(K-1))$"


def band(ax, time, values, label=None, logy=True, logx=True, color=_MEDIAN):
    """Draw the median across inits of ``values`` against ``time``, with its 10-90% quantile band.

    Log axes where asked: time 0 and non-positive values are then dropped.

    Args:
        ax: the matplotlib Axes to draw on.
        time: the saved times, (T,).
        values: (init, T).
        label: the median's legend label (default "median", with the band labelled too).
        logy: a log y axis.
        logx: a log x axis.
        color: the colour of the median and of the band.
    """
    values = np.asarray(values, float)
    keep = time > 0 if logx else np.ones_like(time, bool)
    t, v = time[keep], values[:, keep]
    if logy:
        v = np.where(v > 0, v, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (e.g. NC4 = 0)
        lo, med, hi = np.nanquantile(v, [0.1, 0.5, 0.9], axis=0)
    band_label = "10-90% of inits" if label is None else None
    ax.fill_between(t, lo, hi, color=color, alpha=0.2, lw=0, label=band_label)
    ax.plot(t, med, color=color, lw=1.6, label=label or "median")
    if logx:
        ax.set_xscale("log")
    if logy and np.any(np.isfinite(med)):
        ax.set_yscale("log")


def _class_axes(ax, num_classes: int, label: str = "class") -> None:
    """Both axes of a K x K image labelled ``label``, with a tick per class (at most 10)."""
    ticks = np.unique(np.linspace(0, num_classes - 1, min(num_classes, 10)).round().astype(int))
    ax.set(xlabel=label, ylabel=label, xticks=ticks, yticks=ticks)
    ax.grid(False)


def plot_trajectories(ds: xr.Dataset) -> plt.Figure:
    """Loss (minus the optimum when known), the target metrics and ||W||_F^2 vs time, across inits.

    The panels are the metrics that vanish at the model's own target (``theory_metrics``); each
    shows the median and the 10-90% band over the inits.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).

    Returns:
        The figure.
    """
    time = ds.time.values.astype(float)
    xlabel = ds.time.attrs.get("long_name", "time")
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(2, 3, figsize=(10, 5.6), layout="constrained")
        ax = axes[0, 0]
        if "theory_loss" in ds.attrs:
            band(ax, time, ds.loss - ds.attrs["theory_loss"])
            ax.set_ylabel(r"$L - L^\star$")
            ax.set_title("loss gap to the closed-form optimum")
        else:
            band(ax, time, ds.loss)
            ax.set_ylabel("$L$")
            ax.set_title("loss")
        panels = _metric_panels(ds)
        for ax, name in zip(axes.flat[1:5], panels, strict=False):
            title, logy = _METRIC_TITLES.get(name, (name.replace("_", " "), True))
            band(ax, time, ds[name], logy=logy)
            ax.set_title(title)
            ax.set_ylabel(_metric_label(name))
            if f"theory_{name}" in ds.attrs:  # a closed-form value (0 for a target: log axis)
                ax.axhline(ds.attrs[f"theory_{name}"], color=_THEORY, ls="--", lw=1.2,
                           label="closed form")  # fmt: skip
                ax.legend(frameon=False, fontsize=8)
        for ax in axes.flat[1 + len(panels) : 5]:
            ax.set_visible(False)
        ax = axes[1, 2]
        if "theory_normalized_margin" in ds.attrs:  # ULPM: the margin is what converges
            band(ax, time, ds.normalized_margin, logy=False)
            reference, ref_label = ds.attrs["theory_normalized_margin"], _margin_label(ds)
            ax.set_title("normalized margin")
            ax.set_ylabel(r"$\gamma$")
        else:
            band(ax, time, ds.W_norm_sq, logy=False)
            reference, ref_label = ds.attrs.get("theory_W_norm_sq"), r"closed form $\rho$"
            if _is_regression(ds):
                ref_label = r"closed form $\mathrm{tr}\,W^\star W^{\star\top}$"
            ax.set_title(r"$\|W\|_F^2$")
            ax.set_ylabel(r"$\|W\|_F^2$")
        if reference is not None:
            ax.axhline(reference, color=_THEORY, ls="--", lw=1.2, label=ref_label)
        ax.legend(frameon=False, fontsize=8)
        for ax in axes[1]:
            ax.set_xlabel(xlabel)
        fig.suptitle(f"{ds.attrs.get('title', 'gflow')}{describe(ds)}: {ds.sizes['init']} "
                     "initializations")  # fmt: skip
    return fig


_METRIC_TITLES = {
    "nc1": (r"NC1 $= \mathrm{Tr}(\Sigma_W\Sigma_B^\dagger)/K$", True),
    "nc2": ("NC2: classifier vs simplex ETF", True),
    "nc3": ("NC3: classifier vs class means", True),
    "nc4": ("NC4: disagreement with nearest mean", False),
    "orthogonal_classifier": ("classifier vs orthogonal frame", True),
    "nc3_uncentred": ("classifier vs raw class means", True),
    "nc2_features": ("NC2 of the class means", True),
    "seli_distance": ("distance to SELI (direction of $HW^\\top$)", True),
    # the regression UFM (Andriopoulos et al. 2024): each NRC is 0 at the closed form
    "nrc1": ("NRC1: features outside the top-$m$ PCs (→ 0)", True),
    "nrc2": ("NRC2: features outside $W$'s row space (→ 0)", True),
    "nrc3": (r"NRC3: $WW^\top$ vs the closed form's direction (→ 0)", True),
    "train_mse": (r"fit $\frac{1}{2N}\|HW^\top + 1b^\top - Y\|^2$", False),
}
_REGRESSION_FILL = ("train_mse",)  # no classes: the NC metrics mean nothing there


def _metric_label(name: str) -> str:
    """NC1..NC4 and NRC1..NRC3 in capitals, other metrics by name."""
    return name.upper() if name[:-1] in ("nc", "nrc") and name[-1].isdigit() else name


def _is_regression(ds: xr.Dataset) -> bool:
    """Results of the regression UFM (targets for rows of W, no classes)."""
    return _config(ds).get("model", {}).get("name") == "ufm-regression"


def _metric_panels(ds: xr.Dataset) -> list[str]:
    """Up to four metrics to draw: the model's targets (those that vanish at its geometry, see
    :func:`gflow.results.target_metrics`), then NC1-NC4 to fill the panels (the regression
    UFM: NRC1-NRC3, then the fit ``train_mse``)."""
    from gflow.results_file import target_metrics

    names = [n for n in target_metrics(ds) if n in ds and ds[n].dims == ("init", "time")]
    fill = ("seli_distance", "nc1", "nc2", "nc3", "nc4")
    for extra in _REGRESSION_FILL if _is_regression(ds) else fill:
        if extra in ds and extra not in names:
            names.append(extra)
    return names[:4]


def _config(ds: xr.Dataset) -> dict:
    import tomllib

    try:
        return tomllib.loads(ds.attrs.get("config", ""))
    except tomllib.TOMLDecodeError:
        return {}


def describe(ds: xr.Dataset) -> str:
    """The sizes and hyperparameters of the model a results file holds, for figure titles.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).

    Returns:
        A string such as ``", K=4, d=8, n=5, wd_W=0.005, wd_H=0.005"`` (from its config); for
        the regression UFM ``", N=20, m=2, d=4, spectrum=[4, 1], wd_W=0.3, wd_H=0.3"``.
    """
    model = _config(ds).get("model", {})
    if not model:
        return ""
    from gflow.models import registry

    if _is_regression(ds):  # samples N, targets m (the rows of W): no classes
        spectrum = ", ".join(f"{v:g}" for v in model.get("target_spectrum", ()))
        parts = [f"N={ds.sizes.get('sample', '?')}", f"m={ds.sizes.get('class', '?')}",
                 f"d={ds.sizes.get('feature', '?')}", f"spectrum=[{spectrum}]"]  # fmt: skip
        parts += [f"{k}={model[k]:g}" for k in ("wd_W", "wd_H") if k in model]
        return ", " + ", ".join(parts)

    counts = ds.class_count.values if "class_count" in ds else None
    n = (
        ""
        if counts is None
        else str(counts[0])
        if len(set(counts)) == 1
        else ",".join(map(str, counts))
    )
    parts = [f"K={ds.sizes.get('class', '?')}", f"d={ds.sizes.get('feature', '?')}", f"n={n}"]
    spec = registry.SPECS.get(model.get("name"))
    for name in spec.hyperparameters() if spec else ():
        if name in model:
            parts.append(f"{name}={model[name]:g}")
    return ", " + ", ".join(parts)


def target_gram(ds: xr.Dataset) -> tuple[str, np.ndarray] | None:
    """The classifier Gram W W^T (unit mean diagonal) at the model's target, where it is known.

    Known where it does not depend on how the classes are arranged: the model's declaration
    (``ModelSpec.gram``, e.g. SELI), else the simplex ETF (NC2 a target) or the orthogonal frame
    (``orthogonal_classifier`` a target).

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).

    Returns:
        (name, Gram (K, K)), or None where no target Gram is known.
    """
    from gflow.models import registry
    from gflow.results_file import target_metrics

    model = _config(ds).get("model", {})
    spec = registry.SPECS.get(model.get("name"))
    if spec is not None and spec.gram is not None:
        from gflow import config

        options = spec.values(config.loads(ds.attrs["config"]).model)
        known = spec.gram(options, tuple(int(c) for c in ds.class_count.values))
        if known is not None:
            return known
    targets = target_metrics(ds)
    K = ds.sizes["class"]
    if "nc2" in targets:
        return "simplex ETF", theory.etf_gram(K)
    if "orthogonal_classifier" in targets:
        return "orthogonal frame", np.eye(K)
    return None


def plot_gram(ds: xr.Dataset, init: int = 0) -> plt.Figure:
    """Final W W^T of one init (scaled to unit diagonal mean) beside the target's Gram.

    The target is the one the model declares (:func:`target_gram`); a third panel shows their
    difference on its own scale. For the regression UFM both are drawn as they are (rows: the
    m targets): its closed form fixes W W^T's scale too.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).
        init: the index of the init to show.

    Returns:
        The figure.
    """
    W = ds.W.isel(init=init).values
    gram = W @ W.T
    absolute = _is_regression(ds)
    if not absolute and np.any(gram):
        gram = gram / np.mean(np.diag(gram))
    matrices = {rf"$WW^\top$ (init {init})": gram}
    target = target_gram(ds)
    if target is not None:
        name, reference = target
        if absolute:
            matrices[rf"{name} $W^\star W^{{\star\top}}$"] = np.asarray(reference, float)
        else:
            matrices[name] = reference / np.mean(np.diag(reference))
    label = r"$WW^\top$" if absolute else "normalized inner product"
    fig = plot_matrices(matrices, label=label, difference=target is not None,
                        axis_label="target" if absolute else "class")  # fmt: skip
    fig.suptitle(f"{ds.attrs.get('title', 'gflow')}{describe(ds)}", fontsize=9)
    return fig


def plot_matrices(
    matrices: dict[str, np.ndarray],
    label: str = "value",
    difference: bool = False,
    axis_label: str = "class",
) -> plt.Figure:
    """Matrices side by side on one colour scale centred at 0 (rows and columns: classes).

    Small negative entries (an ETF's -1/(K-1)) stand apart from 0; values are written in the
    cells up to K = 8.

    Args:
        matrices: the (K, K) matrices by panel title.
        label: the colour bar's label.
        difference: add a last panel, first minus second, on its own scale.
        axis_label: what the rows and columns are ("class"; "target" for regression).

    Returns:
        The figure.
    """
    from matplotlib.colors import TwoSlopeNorm

    values = np.concatenate([m.ravel() for m in matrices.values()])
    low, high = min(float(values.min()), -1e-12), max(float(values.max()), 1e-12)
    norm = TwoSlopeNorm(vmin=low, vcenter=0.0, vmax=high)
    panels = list(matrices.items())
    if difference:
        first, second = list(matrices.values())[:2]
        panels.append(("difference", first - second))
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(
            1, len(panels), figsize=(3.3 * len(panels) + 0.8, 3.4), layout="constrained"
        )
        axes = np.atleast_1d(axes)
        for k, (ax, (title, mat)) in enumerate(zip(axes, panels, strict=True)):
            is_difference = difference and k == len(panels) - 1
            if is_difference:
                lim = float(np.abs(mat).max()) or 1e-16
                im_diff = ax.imshow(mat, cmap="PuOr_r", vmin=-lim, vmax=lim)
            else:
                im = ax.imshow(mat, cmap="RdBu_r", norm=norm)
            ax.set_title(title)
            _class_axes(ax, len(mat), axis_label)
            if len(mat) <= 8:
                for (i, j), v in np.ndenumerate(mat):
                    ax.text(j, i, f"{v:.2g}" if is_difference else f"{v:.2f}", ha="center",
                            va="center", fontsize=6)  # fmt: skip
        main_axes = axes[:-1] if difference else axes
        fig.colorbar(im, ax=main_axes, shrink=0.85, label=label)
        if difference:
            fig.colorbar(im_diff, ax=axes[-1], shrink=0.85, label="difference")
    return fig


def plot_observables(ds: xr.Dataset) -> plt.Figure | None:
    """The model's own observables along the flow, up to six panels.

    What a model adds beyond the NC metrics: the Hessian's extreme eigenvalues, balancedness,
    per-layer NC, the smallest angle, ...

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).

    Returns:
        The figure, or None when the model adds no observable.
    """
    from gflow.variables import LONG_NAMES

    standard = set(_STANDARD_METRICS) | set(_metric_panels(ds))
    names = [
        str(n) for n, v in ds.data_vars.items()
        if v.dims == ("init", "time") and n not in standard and n != "loss"
    ][:6]  # fmt: skip
    if not names:
        return None
    time = ds.time.values.astype(float)
    with plt.rc_context(_STYLE):
        cols = min(3, len(names))
        rows = -(-len(names) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.8 * rows),
                                 layout="constrained", squeeze=False)  # fmt: skip
        for ax, name in zip(axes.flat, names, strict=False):
            values = ds[name]
            positive = bool(np.all(values.values[np.isfinite(values.values)] > 0))
            band(ax, time, values, logy=positive)
            ax.set_title(name)
            ax.set_ylabel(LONG_NAMES.get(name, name)[:40], fontsize=7)
            ax.set_xlabel(ds.time.attrs.get("long_name", "time"))
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(f"{ds.attrs.get('title', 'gflow')}{describe(ds)}: the model's observables")
    return fig


def plot_classes(ds: xr.Dataset) -> plt.Figure | None:
    """Per class, for imbalanced classes: ||w_k||^2 and ||mu_k||^2 at the end, against theory.

    Medians over the ok inits, with the closed form where the results carry one
    (``theory_W_row_norm_sq``, ``theory_mean_norm_sq``): which classes the minority collapse
    shrinks or kills.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).

    Returns:
        The figure, or None when the classes are balanced.
    """
    counts = ds.class_count.values
    if len(set(counts)) == 1:
        return None
    ok = ds.status.values.astype(str) == "ok"
    pick = ds.isel(init=np.flatnonzero(ok)) if ok.any() else ds
    W, H, labels = pick.W.values, pick.H.values, pick.labels.values
    w_sq = np.median(np.sum(W**2, axis=2), axis=0)
    means = np.stack([H[:, labels == k].mean(axis=1) for k in range(len(counts))], axis=1)
    mu_sq = np.median(np.sum(means**2, axis=2), axis=0)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.0), layout="constrained")
        x = np.arange(len(counts))
        for ax, values, key, title in (
            (axes[0], w_sq, "theory_W_row_norm_sq", r"$\|w_k\|^2$"),
            (axes[1], mu_sq, "theory_mean_norm_sq", r"$\|\mu_k\|^2$"),
        ):
            ax.bar(x, values, color=_MEDIAN, label="simulated (median)")
            if key in ds.attrs:
                ax.plot(x, np.atleast_1d(ds.attrs[key]), "_", color=_THEORY, ms=18, mew=2,
                        label="closed form")  # fmt: skip
            ax.set_xticks(x, [f"{k}\n(n={c})" for k, c in enumerate(counts)])
            ax.set_title(title)
            ax.legend(frameon=False, fontsize=7)
        fig.suptitle(f"{ds.attrs.get('title', 'gflow')}{describe(ds)}: per class")
    return fig


_STANDARD_METRICS = (
    "nc1", "nc2", "nc3", "nc4", "nc1_quotient", "nc2_features", "nc3_duality", "nc3_uncentred",
    "cdnv", "bias_relation", "orthogonal_means", "orthogonal_classifier", "equinorm_means",
    "equinorm_classifier", "equiangular_means", "equiangular_classifier",
    "angle_deviation_means", "angle_deviation_classifier", "margin", "normalized_margin",
    "W_norm_sq", "H_norm_sq", "kkt_residual", "kkt_slackness",
)  # fmt: skip


def class_colors(num_classes: int) -> list:
    """One colour per class, the same in every figure (tab10, tab20, then a viridis ramp).

    Args:
        num_classes: K.

    Returns:
        K matplotlib colours.
    """
    if num_classes <= 10:
        return [plt.get_cmap("tab10")(k) for k in range(num_classes)]
    if num_classes <= 20:
        return [plt.get_cmap("tab20")(k) for k in range(num_classes)]
    return [plt.get_cmap("viridis")(k / (num_classes - 1)) for k in range(num_classes)]


def _geometry(ds: xr.Dataset, init: int) -> tuple[np.ndarray, np.ndarray]:
    if "W_path" not in ds or "means_path" not in ds:
        raise ValueError("results: no W_path/means_path to draw; run with run.save_geometry = true")
    means = ds.means_path.isel(init=init).values  # (time, K, d)
    return means - means.mean(axis=1, keepdims=True), ds.W_path.isel(init=init).values


def principal_projection(ds: xr.Dataset, init: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Centred class means and classifier rows of one init at every saved time, in a fixed plane.

    The plane is spanned by the top two principal directions of their final values stacked: one
    basis for all times, so motion between snapshots is motion of the geometry. Needs
    ``run.save_geometry = true``.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).
        init: the index of the init.

    Returns:
        (means, classifier): two (time, K, 2) arrays.
    """
    means, W = _geometry(ds, init)
    final = np.concatenate([means[-1], W[-1]])
    _, _, vt = np.linalg.svd(final, full_matrices=False)
    basis = vt[:2].T  # (d, 2)
    return means @ basis, W @ basis


def plot_snapshot(ds: xr.Dataset, time_index: int = -1, init: int = 0, ax=None) -> plt.Figure:
    """Class means (dots) and classifier rows (arrows) of one init at one saved time.

    In the final principal plane (:func:`principal_projection`), each scaled by its largest norm
    at that time (so early, small states stay visible); one colour per class.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).
        time_index: the index of the saved time.
        init: the index of the init.
        ax: the Axes to draw on (default: a new figure).

    Returns:
        The figure.
    """
    means, W = principal_projection(ds, init)
    colors = class_colors(means.shape[1])
    with plt.rc_context(_STYLE):
        if ax is None:
            fig, ax = plt.subplots(figsize=(3.4, 3.4), layout="constrained")
        fig = ax.figure
        m, w = means[time_index], W[time_index]
        m = m / (np.linalg.norm(m, axis=1).max() or 1.0)
        w = w / (np.linalg.norm(w, axis=1).max() or 1.0)
        for k, color in enumerate(colors):
            ax.annotate("", xy=w[k], xytext=(0, 0),
                        arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.2})  # fmt: skip
            ax.plot(*m[k], "o", color=color, ms=6, mec="white", mew=0.6, label=f"class {k}")
        ax.set(xlim=(-1.15, 1.15), ylim=(-1.15, 1.15), aspect="equal",
               xlabel="principal direction 1", ylabel="principal direction 2")  # fmt: skip
        t = ds.time.values[time_index]
        ax.set_title(f"{ds.time.attrs.get('long_name', 'time')} {t:.3g}")
    return fig


def plot_snapshot_grid(ds: xr.Dataset, count: int = 6, init: int = 0) -> plt.Figure:
    """``count`` snapshots (:func:`plot_snapshot`) at saved times spread over the run.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).
        count: the number of snapshots.
        init: the index of the init.

    Returns:
        The figure.
    """
    indices = np.unique(np.linspace(0, ds.sizes["time"] - 1, count).round().astype(int))
    with plt.rc_context(_STYLE):
        cols = min(3, len(indices))
        rows = -(-len(indices) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows), layout="constrained")
        axes = np.atleast_1d(axes).ravel()
        for ax, index in zip(axes, indices, strict=False):
            plot_snapshot(ds, int(index), init, ax=ax)
        for ax in axes[len(indices) :]:
            ax.set_visible(False)
        fig.suptitle(f"class means (dots) and classifier rows (arrows), init {init}")
    return fig


def explorer(ds: xr.Dataset, init: int = 0):
    """An ipywidgets slider over the saved times that redraws :func:`plot_snapshot`.

    For a live notebook kernel; needs ipywidgets (the ``explorer`` extra).

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).
        init: the index of the init.

    Returns:
        The ``ipywidgets.interactive`` widget.
    """
    import ipywidgets
    from IPython.display import display

    def draw(time_index: int) -> None:
        fig = plot_snapshot(ds, time_index, init)
        display(fig)
        plt.close(fig)

    slider = ipywidgets.IntSlider(
        value=ds.sizes["time"] - 1, min=0, max=ds.sizes["time"] - 1, description="saved time"
    )
    return ipywidgets.interactive(draw, time_index=slider)


def plot_margin(ds: xr.Dataset) -> plt.Figure:
    """ULPM: the normalized margin (with its limit) and the KKT residual vs time.

    The limit is 1/(sqrt(n)(K-1)) (SELI's 1/||Zhat||_* for imbalanced classes); both panels on
    log time, median and 10-90% band across inits.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc)
            with ``kkt_residual``.

    Returns:
        The figure.
    """
    time = ds.time.values.astype(float)
    xlabel = ds.time.attrs.get("long_name", "time")
    with plt.rc_context(_STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.4), layout="constrained")
        band(left, time, ds.normalized_margin, logy=False)
        if "theory_normalized_margin" in ds.attrs:
            left.axhline(ds.attrs["theory_normalized_margin"], color=_THEORY, ls="--", lw=1.2,
                         label=r"$\gamma^\star = $" + _margin_label(ds))  # fmt: skip
        left.set_ylabel(r"normalized margin $\gamma$")
        left.set_title("margin / (||W||²/2 + ||H||²/2)")
        left.legend(frameon=False, fontsize=8)
        band(right, time, ds.kkt_residual)
        right.set_ylabel("relative KKT residual")
        right.set_title("distance from a KKT point (NNLS)")
        for ax in (left, right):
            ax.set_xlabel(xlabel)
    return fig


def plot_elastic(ds: xr.Dataset) -> plt.Figure:
    """LE-ODE/LE-SDE: the class-averaged margin m(t)/m(0) against the law exp((alpha - beta) t/K).

    A second panel: within- vs between-class variance (NC1's numerator and denominator), on
    linear time.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).

    Returns:
        The figure.
    """
    time = ds.time.values.astype(float)
    rate = ds.attrs["theory_margin_rate"]
    with plt.rc_context(_STYLE):
        fig, (left, right) = plt.subplots(1, 2, figsize=(8.6, 3.4), layout="constrained")
        band(left, time, ds.mean_margin / ds.mean_margin.isel(time=0), logy=False, logx=False)
        left.plot(time, np.exp(rate * time), color=_THEORY, ls="--", lw=1.2,
                  label=rf"$e^{{(\alpha-\beta)t/K}}$, rate {rate:.3g}")  # fmt: skip
        left.set_yscale("log")
        left.set_ylabel(r"mean margin $m(t)/m(0)$")
        left.set_title("class-averaged margin")
        left.legend(frameon=False, fontsize=8)
        band(right, time, ds.between_variance, label="between classes (median)", logx=False)
        band(right, time, ds.within_variance, label="within classes (median)", logx=False,
              color=_THEORY)  # fmt: skip
        right.set_ylabel("mean squared deviation (bands: 10-90% of inits)")
        right.set_title("feature variance")
        right.legend(frameon=False, fontsize=8)
        for ax in (left, right):
            ax.set_xlabel(ds.time.attrs.get("long_name", "time"))
    return fig


def savefig(fig: plt.Figure, path: str | Path, *also: str | Path) -> Path:
    """Write a figure in gflow's figure style, whoever drew it, to one file or several.

    200 dpi, a tight bounding box and TrueType fonts in PDF and PS (not Type 3): the style holds
    at the save, where matplotlib reads those settings, not only while the figure is drawn, so a
    figure made with plain ``plt.subplots`` gets it too. The format follows each suffix. The
    layout (constrained layout, then the tight box) is worked out once, at 200 dpi, and every
    file gets it: the same layout in each, and one draw per file where matplotlib's own tight
    save draws twice and lays out each time. The figure keeps its layout engine.

    Args:
        fig: the figure.
        path: the file to write (``.png``, ``.pdf``, ...); its folder must exist.
        *also: more files of the same figure (other formats).

    Returns:
        ``path`` as a ``Path``.
    """
    paths = [Path(p) for p in (path, *also)]
    dpi = _STYLE["savefig.dpi"]
    with plt.rc_context(_STYLE):
        engine, dpi_before = fig.get_layout_engine(), fig.dpi
        fig.set_dpi(dpi)
        try:
            fig.draw_without_rendering()  # the layout engine runs here, once
            box = fig.get_tightbbox().padded(plt.rcParams["savefig.pad_inches"])
            fig.set_layout_engine("none")
            for file in paths:
                fig.savefig(file, dpi=dpi, bbox_inches=box)
        finally:
            fig.set_layout_engine(engine)
            fig.set_dpi(dpi_before)
    return paths[0]


def save_figures(
    ds: xr.Dataset, out: str | Path, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Write the figures of a results Dataset into ``out``, in each format (:func:`savefig`).

    trajectories and gram always; observables when the model saves its own observables, classes
    for imbalanced classes, margin when the results carry a KKT residual and elastic for
    LE-ODE/SDE runs.

    Args:
        ds: a results Dataset (``gflow.simulate``, or ``xarray.open_dataset`` of a results.nc).
        out: the folder (created if missing).
        formats: the file formats, by suffix (``gflow run`` writes PNG only unless ``--pdf``).

    Returns:
        The paths written.
    """
    formats = (formats,) if isinstance(formats, str) else tuple(formats)
    if not formats or any(not isinstance(f, str) or not f.isalnum() for f in formats):
        raise ValueError(f"formats: give suffixes such as ('png', 'pdf'), got {formats!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    figures = [("trajectories", plot_trajectories(ds)), ("gram", plot_gram(ds))]
    for name, make in (("observables", plot_observables), ("classes", plot_classes)):
        if (fig := make(ds)) is not None:
            figures.append((name, fig))
    if "kkt_residual" in ds:
        figures.append(("margin", plot_margin(ds)))
    if "theory_margin_rate" in ds.attrs:
        figures.append(("elastic", plot_elastic(ds)))
    for name, fig in figures:
        files = [out / f"{name}.{ext}" for ext in formats]
        savefig(fig, *files)  # one layout for all
        paths += files
        plt.close(fig)
    return paths


PHASE_PANELS = (
    ("nc1", "NC1 (final, median)", True),
    ("nc2", "NC2 (final, median)", True),
    ("nc3", "NC3 (final, median)", True),
    ("loss_gap", "loss - closed form", True),
    ("W_gap", "| ||W||^2 / closed form - 1 |", True),
)


def _sweep_panels(index: xr.Dataset) -> list[tuple[str, str, bool]]:
    """The index's phase-diagram quantities (adds loss_gap and W_gap where the closed form is
    known)."""
    if np.any(np.isfinite(index.theory_loss.values)):
        index["loss_gap"] = np.abs(index.loss - index.theory_loss)
        index["W_gap"] = np.abs(index.W_norm_sq / index.theory_W_norm_sq - 1)
    return [p for p in PHASE_PANELS if p[0] in index and np.any(np.isfinite(index[p[0]].values))]


def _numeric_axes(index: xr.Dataset) -> list[str]:
    return [
        d
        for d in index.path.dims
        if np.issubdtype(index[d].dtype, np.number) and index.sizes[d] > 1
    ]


def _is_geometric(values: np.ndarray) -> bool:
    values = np.asarray(values, float)
    return bool(np.all(values > 0) and values.max() / values.min() > 20)


def plot_sweep(index: xr.Dataset) -> plt.Figure:
    """A sweep's final state against its closed form, from its index (``gflow.sweep.open_index``).

    Two numeric swept axes: heatmaps (a phase diagram) of the median final NC1-NC3, the loss gap
    |L - L*| and the relative error of ||W||^2 against the closed form, with the closed form's
    collapse boundary drawn where the model has one (the 0.5 contour of ``theory_collapsed``:
    K sqrt(n lam_W lam_H) = 1 for UFM-CE and for UFM-MSE). One axis: the same quantities as
    curves. Other swept axes are reduced to their first value.

    Args:
        index: the sweep's index Dataset.

    Returns:
        The figure.
    """
    index = index.load().copy()
    axes_ = _numeric_axes(index)
    if not axes_:
        raise ValueError("plot_sweep: the sweep has no numeric swept axis to draw")
    extra = [d for d in index.path.dims if d not in axes_[:2]]
    index = index.isel({d: 0 for d in extra})
    panels = _sweep_panels(index)
    title = ", ".join(f"{d} = {index[d].item()}" for d in extra)
    with plt.rc_context(_STYLE):
        fig, axs = plt.subplots(1, len(panels), figsize=(2.9 * len(panels), 2.7),
                                layout="constrained", squeeze=False)  # fmt: skip
        axs = axs[0]
        if len(axes_) == 1:
            x = index[axes_[0]].values
            for ax, (var, label, logy) in zip(axs, panels, strict=True):
                ax.plot(x, index[var].values, "o-", color=_MEDIAN, ms=3)
                ax.set(xlabel=axes_[0], title=label)
                if _is_geometric(x):
                    ax.set_xscale("log")
                if logy and np.nanmin(index[var].values) > 0:
                    ax.set_yscale("log")
        else:
            ydim, xdim = axes_[:2]
            x, y = index[xdim].values.astype(float), index[ydim].values.astype(float)
            collapsed = index.theory_collapsed.transpose(ydim, xdim).values
            finite = collapsed[np.isfinite(collapsed)]
            boundary = finite.size > 0 and finite.min() < 0.5 < finite.max()
            for ax, (var, label, logc) in zip(axs, panels, strict=True):
                z = index[var].transpose(ydim, xdim).values.astype(float)
                positive = z[np.isfinite(z) & (z > 0)]
                norm = None
                if logc and positive.size:
                    from matplotlib.colors import LogNorm

                    floor = max(positive.min(), positive.max() * 1e-12)
                    norm = LogNorm(vmin=floor, vmax=positive.max())
                    z = np.where(np.isfinite(z), np.maximum(z, floor), np.nan)  # exact 0: floor
                mesh = ax.pcolormesh(x, y, z, shading="nearest", norm=norm, cmap="viridis")
                fig.colorbar(mesh, ax=ax, shrink=0.85)
                if boundary:
                    ax.contour(x, y, collapsed, levels=[0.5], colors=_THEORY, linewidths=1.4)
                ax.set(xlabel=xdim, ylabel=ydim, title=label)
                ax.grid(False)
                if _is_geometric(x):
                    ax.set_xscale("log")
                if _is_geometric(y):
                    ax.set_yscale("log")
            if boundary:
                axs[0].plot([], [], color=_THEORY, label="closed-form collapse boundary")
                fig.legend(loc="outside lower center", frameon=False, fontsize=8)
        if title:
            fig.suptitle(title, fontsize=9)
    return fig


def save_sweep_figures(index: xr.Dataset, out: str | Path) -> list[Path]:
    """Write phase.{png,pdf} (:func:`plot_sweep`) into ``out``.

    Args:
        index: the sweep's index Dataset.
        out: the folder (created if missing).

    Returns:
        The paths written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fig = plot_sweep(index)
    paths = [out / f"phase.{ext}" for ext in ("png", "pdf")]
    savefig(fig, *paths)
    plt.close(fig)
    return paths
