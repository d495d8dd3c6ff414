"""The sweep phase diagram draws the closed form's collapse boundary where the grid crosses it,
and only there (a synthetic index: no solve)."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from gflow import plots, theory  # noqa: E402


def _index(values):
    K, n = 4, 5
    shape = (len(values), len(values))
    collapsed = np.array([[float(theory.ufm_ce_optimum(K, n, w, h).collapsed) for h in values]
                          for w in values])  # fmt: skip
    data = {v: (("wd_W", "wd_H"), np.full(shape, 1e-6)) for v in ("loss", "nc1", "nc2", "nc3")}
    data.update(
        W_norm_sq=(("wd_W", "wd_H"), np.full(shape, 2.0)),
        theory_loss=(("wd_W", "wd_H"), np.full(shape, 1e-6)),
        theory_W_norm_sq=(("wd_W", "wd_H"), np.full(shape, 2.0)),
        theory_collapsed=(("wd_W", "wd_H"), collapsed),
        path=(("wd_W", "wd_H"), np.full(shape, "p", dtype=object)),
    )
    return xr.Dataset(data, coords={"wd_W": values, "wd_H": values})


def test_boundary_drawn_where_the_grid_crosses_it():
    fig = plots.plot_sweep(_index(np.geomspace(1e-4, 0.5, 6)))
    assert len(fig.axes) == 10  # five panels and their colour bars
    assert any(ax.collections and len(ax.collections) > 1 for ax in fig.axes[:5])
    assert fig.legends and "collapse boundary" in fig.legends[0].texts[0].get_text()


def test_no_boundary_inside_the_collapsed_region():
    fig = plots.plot_sweep(_index(np.geomspace(1e-4, 5e-2, 6)))  # K^2 n lam_W lam_H < 1 everywhere
    assert not fig.legends
