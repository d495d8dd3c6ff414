"""Figures: written as PNG and PDF, with labelled, log-scaled axes where the dynamics are."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from gflow import plots, simulation  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    cfg = {
        "model": {"name": "ufm-ce", "classes": 4, "dim": 5, "per_class": 2},
        "dynamics": {"t1": 2000.0, "rtol": 1e-6, "atol": 1e-8, "saves": 12},
        "init": {"count": 5},
    }
    return simulation.simulate(cfg)


def test_trajectory_figure_axes(dataset):
    fig = plots.plot_trajectories(dataset)
    axes = fig.axes
    assert len(axes) == 6
    for ax in axes:
        assert ax.get_title() and ax.get_ylabel()
        assert ax.get_xscale() == "log"
    assert axes[1].get_yscale() == "log"  # NC1 spans many decades
    assert axes[3].get_xlabel() == "flow time"
    # the closed-form rho is drawn on the ||W||^2 panel
    assert any(
        abs(line.get_ydata()[0] - dataset.attrs["theory_W_norm_sq"]) < 1e-9
        for line in axes[5].get_lines()
        if len(line.get_ydata()) == 2
    )


def test_save_figures_writes_png_and_pdf(dataset, tmp_path):
    paths = plots.save_figures(dataset, tmp_path)
    assert sorted(p.name for p in paths) == [
        "gram.pdf",
        "gram.png",
        "trajectories.pdf",
        "trajectories.png",
    ]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_ulpm_results_get_the_margin_figure(tmp_path):
    cfg = {
        "model": {"name": "ulpm", "classes": 3, "dim": 3, "per_class": 2},
        "dynamics": {"t1": 1e5, "rtol": 1e-6, "atol": 1e-8, "saves": 8},
        "init": {"count": 3},
    }
    ds = simulation.simulate(cfg)
    assert ds.kkt_residual.dims == ("init", "time")
    fig = plots.plot_margin(ds)
    left, right = fig.axes
    assert right.get_yscale() == "log" and left.get_xscale() == "log"
    assert any(abs(line.get_ydata()[0] - ds.attrs["theory_normalized_margin"]) < 1e-12
               for line in left.get_lines() if len(line.get_ydata()) == 2)  # fmt: skip
    names = sorted(p.name for p in plots.save_figures(ds, tmp_path))
    assert "margin.png" in names and "margin.pdf" in names
