"""Saved figures: PNGs at 200 dpi cropped to a tight bounding box (nothing clipped), PDFs with
TrueType (Type 42) fonts, not Type 3, for save_figures and save_sweep_figures alike."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402
from PIL import Image  # noqa: E402

from gflow import plots, simulation  # noqa: E402

DPI = 200


@pytest.fixture(scope="module")
def dataset():  # the configuration of test_plots.py's: one compiled solve serves both
    cfg = {
        "model": {"name": "ufm-ce", "classes": 4, "dim": 5, "per_class": 2},
        "dynamics": {"t1": 2000.0, "rtol": 1e-6, "atol": 1e-8, "saves": 12},
        "init": {"count": 5},
        "run": {"save_geometry": True},
    }
    return simulation.simulate(cfg)


def _sweep_index():
    values = np.geomspace(1e-4, 0.5, 3)
    dims, shape = ("wd_W", "wd_H"), (3, 3)
    data = {v: (dims, np.full(shape, 1e-6)) for v in ("loss", "nc1", "nc2", "nc3")}
    data.update(
        W_norm_sq=(dims, np.full(shape, 2.0)),
        theory_loss=(dims, np.full(shape, 1e-6)),
        theory_W_norm_sq=(dims, np.full(shape, 2.0)),
        theory_collapsed=(dims, np.eye(3, dtype=float)),
        path=(dims, np.full(shape, "p", dtype=object)),
    )
    return xr.Dataset(data, coords={"wd_W": values, "wd_H": values})


def _expected_pixels(fig) -> np.ndarray:
    """Width and height in pixels of ``fig`` saved at 200 dpi with bbox_inches="tight": its
    drawn contents' bounding box (constrained layout runs at the draw) plus the padding."""
    fig.set_dpi(DPI)
    fig.canvas.draw()
    box = fig.get_tightbbox()
    pad = 2 * matplotlib.rcParams["savefig.pad_inches"]
    return np.array([box.width + pad, box.height + pad]) * DPI


def _check_png(path, fig):
    with Image.open(path) as image:
        size, dpi = np.array(image.size), image.info.get("dpi")
    assert dpi is not None and np.allclose(dpi, DPI, atol=0.01), (path.name, dpi)
    # at the default 100 dpi without the tight box the size would be the figure's size x 100
    assert np.allclose(size, _expected_pixels(fig), rtol=0.03), (path.name, size)
    assert not np.allclose(size, fig.get_size_inches() * 100, rtol=0.1)


def _check_pdf(path):
    data = path.read_bytes()
    assert b"/Type3" not in data, f"{path.name} embeds Type 3 fonts"
    assert b"/FontFile2" in data, f"{path.name} embeds no TrueType font"  # Type 42


def test_saved_figures_are_200_dpi_tight_with_truetype_fonts(dataset, tmp_path):
    paths = {p.name: p for p in plots.save_figures(dataset, tmp_path)}
    assert set(paths) == {"trajectories.png", "trajectories.pdf", "gram.png", "gram.pdf"}
    for name, make in (("trajectories", plots.plot_trajectories), ("gram", plots.plot_gram)):
        _check_png(paths[f"{name}.png"], make(dataset))
        _check_pdf(paths[f"{name}.pdf"])
    matplotlib.pyplot.close("all")


def test_sweep_figures_are_200_dpi_tight_with_truetype_fonts(tmp_path):
    index = _sweep_index()
    paths = {p.name: p for p in plots.save_sweep_figures(index, tmp_path)}
    assert set(paths) == {"phase.png", "phase.pdf"}
    _check_png(paths["phase.png"], plots.plot_sweep(index))
    _check_pdf(paths["phase.pdf"])
    matplotlib.pyplot.close("all")


def test_saving_leaves_the_global_style_alone(tmp_path):
    before = {k: matplotlib.rcParams[k] for k in ("savefig.dpi", "pdf.fonttype", "ps.fonttype")}
    plots.save_sweep_figures(_sweep_index(), tmp_path)
    assert {k: matplotlib.rcParams[k] for k in before} == before
