"""gflow.plots.savefig gives any figure gflow's style at the save (200 dpi, tight box, TrueType
fonts in PDF), and the notebooks save every figure through it."""

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from gflow import plots  # noqa: E402

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def test_a_plain_figure_is_saved_in_the_style(tmp_path):
    with matplotlib.rc_context({"savefig.dpi": 72, "pdf.fonttype": 3, "savefig.bbox": None}):
        fig, ax = plt.subplots(figsize=(3, 2))  # drawn outside gflow's style
        ax.plot([0, 1], [0, 1], label="line")
        ax.set_title("a title")
        png = plots.savefig(fig, tmp_path / "f.png")
        pdf = plots.savefig(fig, str(tmp_path / "f.pdf"))
    plt.close(fig)
    assert png == tmp_path / "f.png" and pdf == tmp_path / "f.pdf"
    with Image.open(png) as image:
        assert np.allclose(image.info["dpi"], 200, atol=0.01)
        width, height = image.size
    assert (width, height) != (600, 400)  # the tight box crops the 3 x 2 in canvas
    data = pdf.read_bytes()
    assert b"/FontFile2" in data and b"/Type3" not in data  # TrueType (Type 42), not Type 3


def test_the_notebooks_save_through_gflow():
    for py in sorted(NOTEBOOKS.glob("0*.py")):
        text = py.read_text()
        calls = re.findall(r"([\w.]*)savefig\(", text)
        assert calls, py.name
        assert all(c in ("plots.", "gflow.plots.") for c in calls), (py.name, calls)


def test_several_files_share_one_layout_and_the_figure_keeps_its_engine(tmp_path):
    fig, axes = plt.subplots(1, 2, figsize=(6, 2.5), layout="constrained")
    for ax in axes:
        ax.loglog([1, 10, 100], [1, 1e-3, 1e-6])
        ax.set_ylabel("a long label $10^{-6}$")
    engine = fig.get_layout_engine()
    first = plots.savefig(fig, tmp_path / "a.png", tmp_path / "a.pdf")
    alone = plots.savefig(fig, tmp_path / "b.png")  # saved again on its own: the same box
    assert first == tmp_path / "a.png" and alone == tmp_path / "b.png"
    assert fig.get_layout_engine() is engine and fig.dpi == matplotlib.rcParams["figure.dpi"]
    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert a.size == b.size
        size = np.array(a.size)
    # the PDF's page is the PNG's box: pixels / 200 dpi, in points
    box = re.search(rb"/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]", (tmp_path / "a.pdf").read_bytes())
    assert box is not None
    assert np.allclose(np.array([float(box[1]), float(box[2])]) / 72, size / 200, rtol=0.01)
    plt.close(fig)
