"""Figures: written as PNG and PDF, with labelled, log-scaled axes where the dynamics are."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from gflow import plots, simulation  # noqa: E402


@pytest.fixture(scope="module")
def dataset():
    cfg = {
        "model": {"name": "ufm-ce", "classes": 4, "dim": 5, "per_class": 2},
        "dynamics": {"t1": 2000.0, "rtol": 1e-6, "atol": 1e-8, "saves": 12},
        "init": {"count": 5},
        "run": {"save_geometry": True},
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


def test_save_figures_writes_the_formats_asked(dataset, tmp_path):
    paths = plots.save_figures(dataset, tmp_path / "png", "png")
    assert sorted(p.name for p in paths) == ["gram.png", "trajectories.png"]
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["gram.png", "trajectories.png"]
    for bad in ((), ("png", ".pdf"), (None,)):
        with pytest.raises(ValueError, match="^formats: give suffixes such as"):
            plots.save_figures(dataset, tmp_path / "bad", bad)
    assert not (tmp_path / "bad").exists()  # refused before drawing or creating anything


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


def test_saved_geometry_is_the_state_at_each_saved_time(dataset):
    assert dataset.W_path.dims == ("init", "time", "class", "feature")
    assert dataset.means_path.shape == (5, 12, 4, 5)
    np.testing.assert_array_equal(dataset.W_path.isel(time=-1), dataset.W)  # the final state
    H, labels = dataset.H.values, dataset.labels.values
    means = np.stack([H[:, labels == k].mean(axis=1) for k in range(4)], axis=1)
    np.testing.assert_allclose(dataset.means_path.isel(time=-1), means, rtol=1e-5, atol=1e-7)


def test_principal_projection_keeps_the_top_two_directions(dataset):
    means, W = plots.principal_projection(dataset, init=1)
    assert means.shape == W.shape == (12, 4, 2)
    centred = dataset.means_path.isel(init=1, time=-1).values
    centred = centred - centred.mean(axis=0)
    final = np.concatenate([centred, dataset.W_path.isel(init=1, time=-1).values])
    top = np.linalg.svd(final, compute_uv=False)[:2]  # the plane holds the two largest
    projected = np.concatenate([means[-1], W[-1]])
    np.testing.assert_allclose(np.sum(projected**2), np.sum(top**2), rtol=1e-5)


def test_snapshot_grid_and_class_colours(dataset):
    fig = plots.plot_snapshot_grid(dataset, count=4)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    assert all(ax.get_xlabel() == "principal direction 1" for ax in visible)
    assert visible[0].get_title() == "flow time 0"
    colours = plots.class_colors(4)
    assert len(set(colours)) == 4
    dots = [line for line in visible[-1].get_lines() if line.get_marker() == "o"]
    assert [line.get_color() for line in dots] == colours  # class k drawn in colour k


def test_explorer_slider_redraws_any_saved_time(dataset):
    pytest.importorskip("ipywidgets")
    widget = plots.explorer(dataset)
    (slider,) = [c for c in widget.children if hasattr(c, "max")]
    assert (slider.min, slider.max, slider.value) == (0, 11, 11)
    slider.value = 3  # redraws without error
    assert widget.kwargs == {"time_index": 3}


def test_snapshot_without_saved_geometry_says_how_to_get_it(dataset):
    with pytest.raises(ValueError, match=r"run\.save_geometry = true"):
        plots.plot_snapshot(dataset.drop_vars(["W_path", "means_path"]))


def _gd(model, **run):
    cfg = {
        "model": model,
        "dynamics": {"kind": "gd", "lr": 0.05, "steps": 30, "saves": 4},
        "init": {"count": 2},
        "run": run,
    }
    return simulation.simulate(cfg)


def test_figures_judge_each_model_by_its_own_target(tmp_path):
    from gflow import theory

    # the simplex ETF where NC2 is a target, with a difference panel and K, d, n in the title
    name, gram = plots.target_gram(_gd({"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2}))
    assert name == "simplex ETF"
    np.testing.assert_allclose(gram, theory.etf_gram(3))
    # UFM-MSE without a bias: an orthogonal frame, not an ETF
    mse = _gd({"name": "ufm-mse", "classes": 3, "dim": 4, "per_class": 2, "bias": False})
    name, gram = plots.target_gram(mse)
    assert name == "orthogonal frame"
    np.testing.assert_array_equal(gram, np.eye(3))
    fig = plots.plot_gram(mse)
    assert [ax.get_title() for ax in fig.axes[:3]] == [
        r"$WW^\top$ (init 0)",
        "orthogonal frame",
        "difference",
    ]
    assert "K=3, d=4, n=2" in fig._suptitle.get_text()
    # imbalanced, unregularized ULPM: the SELI Gram (its majority rows longer)
    seli = _gd({"name": "ulpm", "classes": 3, "dim": 4, "per_class": [4, 2, 1]})
    name, gram = plots.target_gram(seli)
    assert name == "SELI"
    np.testing.assert_allclose(gram, theory.seli((4, 2, 1)).W_gram)
    assert gram[0, 0] > gram[1, 1] > gram[2, 2]
    names = {p.name for p in plots.save_figures(seli, tmp_path)}
    assert {"classes.png", "gram.png", "trajectories.png"} <= names


def test_a_model_observables_get_their_own_figure(tmp_path):
    ds = _gd({"name": "deep-linear", "classes": 3, "dim": 4, "per_class": 2, "depth": 2})
    fig = plots.plot_observables(ds)
    titles = {ax.get_title() for ax in fig.axes if ax.get_visible()}
    assert {"balancedness", "condition_number"} <= titles
    assert "observables.png" in {p.name for p in plots.save_figures(ds, tmp_path)}
