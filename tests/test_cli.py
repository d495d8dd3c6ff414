"""The `gflow` command: a real run writes a results.nc that meets the contract; every bad input
exits 2 with a one-line message naming the field, before anything compiles."""

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gflow import cli, results, simulation

SMALL = """\
[model]
name = "ufm-ce"
classes = 3
dim = 4
per_class = 3
wd_W = 5e-3
wd_H = 5e-3
wd_b = 5e-3

[dynamics]
kind = "flow"
solver = "tsit5"
t1 = 6000.0
rtol = 1e-9
atol = 1e-11
saves = 12

[init]
count = 4
seed = 7
scale = 0.1

[run]
precision = "float64"
out = "{out}"
"""


def gflow_exe() -> str:
    exe = Path(sys.executable).parent / "gflow"
    return str(exe) if exe.exists() else shutil.which("gflow")


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    cfg = folder / "small.toml"
    cfg.write_text(SMALL.format(out=folder / "out"))
    proc = subprocess.run(
        [gflow_exe(), "run", str(cfg), "--quiet"], capture_output=True, text=True, timeout=300
    )
    return proc, folder / "out"


def test_run_writes_results_meeting_the_contract(small_run):
    proc, out = small_run
    assert proc.returncode == 0, proc.stderr
    assert "results:" in proc.stdout and "NC1" in proc.stdout
    ds = xr.open_dataset(out / "results.nc")
    assert {"init", "time", "class", "feature", "sample"} <= set(ds.sizes)
    assert ds.sizes["init"] == 4 and ds.sizes["class"] == 3 and ds.sizes["feature"] == 4
    assert ds.sizes["sample"] == 9 and ds.sizes["time"] == 12
    for name in ("loss", "nc1", "nc2", "nc3", "nc4", "margin", "normalized_margin"):
        assert ds[name].dims == ("init", "time"), name
    assert ds.W.dims == ("init", "class", "feature")
    assert ds.H.dims == ("init", "sample", "feature")
    assert ds.b.dims == ("init", "class")
    assert ds.labels.dims == ("sample",) and list(ds.labels.values) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert list(ds.status.values) == ["ok"] * 4
    assert ds.time.values[0] == 0.0 and ds.time.values[-1] == 6000.0
    for attr in (
        "config",
        "gflow_version",
        "jax_version",
        "device",
        "seed",
        "compile_seconds",
        "run_seconds",
    ):
        assert attr in ds.attrs, attr
    assert ds.attrs["seed"] == 7 and 'name = "ufm-ce"' in ds.attrs["config"]
    assert ds.attrs["compile_seconds"] > 0 and ds.attrs["run_seconds"] > 0
    # the stored config reproduces the run's settings, and the physics is the closed form
    assert simulation.as_config(out / "../small.toml").model.classes == 3
    c = math.sqrt(1 / 3)
    rho = 2 / c * math.log((c - 2 * 5e-3) / 5e-3)
    np.testing.assert_allclose(ds.W_norm_sq.isel(time=-1), rho, rtol=1e-6)
    assert ds.attrs["theory_W_norm_sq"] == pytest.approx(rho, rel=1e-14)
    for name in ("trajectories", "gram"):  # PNG only unless --pdf
        assert (out / f"{name}.png").stat().st_size > 0
        assert not (out / f"{name}.pdf").exists()
    assert not list(out.glob(".*tmp"))  # no leftover temporary file


def test_plot_command_redraws(small_run, tmp_path):
    _, out = small_run
    assert cli.main(["plot", str(out / "results.nc"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "trajectories.png").exists() and (tmp_path / "gram.pdf").exists()


def test_run_writes_pdf_figures_on_demand(small_run, tmp_path, monkeypatch):
    """``--pdf``: every figure as PDF as well (the small run's results, replayed, not rerun)."""
    _, out = small_run
    ds = results.load(out / "results.nc")
    monkeypatch.setattr(simulation, "run", lambda cfg, **_: (ds, tmp_path / "results.nc"))
    assert cli.main(["run", str(out.parent / "small.toml"), "--quiet", "--pdf"]) == 0
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {f"{n}.{e}" for n in ("trajectories", "gram") for e in ("png", "pdf")}


def write_config(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return str(path)


def bad(text_edit):
    def make(tmp_path):
        return write_config(tmp_path, text_edit(SMALL.format(out=tmp_path / "o")))

    return make


BAD_INPUTS = {
    "unknown model": (bad(lambda t: t.replace('"ufm-ce"', '"mlp"')), "model.name: unknown value"),
    "unknown solver": (bad(lambda t: t.replace('"tsit5"', '"rk45"')), "dynamics.solver: unknown"),
    "unknown optimizer": (
        bad(lambda t: t.replace('kind = "flow"', 'kind = "gd"\noptimizer = "adamm"')),
        "dynamics.optimizer: unknown value 'adamm'; valid:",
    ),
    "classes < 2": (bad(lambda t: t.replace("classes = 3", "classes = 1")), "model.classes"),
    "dim < 1": (bad(lambda t: t.replace("dim = 4", "dim = 0")), "model.dim: must be >= 1"),
    "per_class < 1": (
        bad(lambda t: t.replace("per_class = 3", "per_class = 0")),
        "model.per_class",
    ),
    "negative wd": (bad(lambda t: t.replace("wd_H = 5e-3", "wd_H = -5e-3")), "model.wd_H: must be"),
    "t1 <= 0": (bad(lambda t: t.replace("t1 = 6000.0", "t1 = 0.0")), "dynamics.t1: must be > 0"),
    "count < 1": (bad(lambda t: t.replace("count = 4", "count = 0")), "init.count: must be >= 1"),
    "malformed toml": (bad(lambda t: t.replace("[model]", "[model")), "is not valid TOML"),
    "missing toml": (lambda tmp_path: str(tmp_path / "missing.toml"), "config: file not found"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=list(BAD_INPUTS))
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys, monkeypatch):
    make, message = BAD_INPUTS[case]
    monkeypatch.setattr(simulation.batch, "batch_solve", _must_not_compile)
    assert cli.main(["run", make(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gflow: error: ") and message in err[0], err


def _must_not_compile(*args, **kwargs):
    raise AssertionError("compilation started before the config was validated")


@pytest.mark.parametrize(
    "arrays, message",
    [
        (
            {"W": np.zeros((3, 5)), "H": np.zeros((9, 4))},
            "array W has shape (3, 5); expected (3, 4)",
        ),
        ({"W": np.zeros((2, 3, 4)), "H": np.zeros((9, 4))}, "or (4, 3, 4) (init.count = 4)"),
        ({"H": np.zeros((9, 4))}, "has no array 'W'"),
        ({"W": np.full((3, 4), np.nan), "H": np.zeros((9, 4))}, "array W holds non-finite"),
    ],
)
def test_init_from_with_wrong_arrays(arrays, message, tmp_path, capsys, monkeypatch):
    np.savez(tmp_path / "start.npz", **arrays)
    text = SMALL.format(out=tmp_path / "o").replace(
        "scale = 0.1", f'scale = 0.1\nfrom = "{tmp_path / "start.npz"}"'
    )
    monkeypatch.setattr(simulation.batch, "batch_solve", _must_not_compile)
    assert cli.main(["run", write_config(tmp_path, text), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gflow: error: init.from: ") and message in err and "\n" not in err


def test_init_from_not_an_npz(tmp_path, capsys):
    (tmp_path / "start.npz").write_text("not a zip")
    text = SMALL.format(out=tmp_path / "o").replace(
        "scale = 0.1", f'scale = 0.1\nfrom = "{tmp_path / "start.npz"}"'
    )
    assert cli.main(["run", write_config(tmp_path, text), "--quiet"]) == 2
    assert "is not an .npz of arrays H, W, b" in capsys.readouterr().err


def test_plot_of_a_missing_or_foreign_file(tmp_path, capsys):
    assert cli.main(["plot", str(tmp_path / "none.nc")]) == 2
    (tmp_path / "x.nc").write_text("hello")
    assert cli.main(["plot", str(tmp_path / "x.nc")]) == 2
    err = capsys.readouterr().err
    assert "results: file not found" in err and "is not a netCDF results file of gflow" in err


def test_nan_inits_are_marked_and_the_others_finish(tmp_path):
    """float32 with one init at 1e20 scale: its logits overflow to NaN; the rest collapse."""
    rng = np.random.default_rng(0)
    W, H = 0.1 * rng.standard_normal((4, 3, 4)), 0.1 * rng.standard_normal((4, 9, 4))
    W[2] *= 1e21
    H[2] *= 1e21
    np.savez(tmp_path / "start.npz", W=W, H=H, b=np.zeros((4, 3)))
    text = (
        SMALL.format(out=tmp_path / "o")
        .replace('precision = "float64"', 'precision = "float32"')
        .replace("rtol = 1e-9", "rtol = 1e-5")
        .replace("atol = 1e-11", "atol = 1e-7")
        .replace("scale = 0.1", f'scale = 0.1\nfrom = "{tmp_path / "start.npz"}"')
    )
    ds, _ = simulation.run(write_config(tmp_path, text))
    assert list(ds.status.values) == ["ok", "ok", "nan", "ok"]
    ok = ds.isel(init=[0, 1, 3]).isel(time=-1)
    assert np.all(np.isfinite(ok.loss)) and float(ok.nc1.max()) < 1e-4


def test_compiled_solve_is_cached_across_processes(tmp_path):
    """`gflow run` keeps its compiled solve in GFLOW_CACHE_DIR; a second process reuses it and
    gives bit-identical results."""
    import os

    cache = tmp_path / "cache"
    cfg = tmp_path / "c.toml"
    cfg.write_text(SMALL.format(out=tmp_path / "o"))
    env = {**os.environ, "GFLOW_CACHE_DIR": str(cache)}
    outs = []
    for k in range(2):
        out = tmp_path / f"o{k}"
        proc = subprocess.run(
            [gflow_exe(), "run", str(cfg), "--quiet", "--no-plots", "--out", str(out)],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outs.append(xr.open_dataset(out / "results.nc"))
        if k == 0:
            entries = list(cache.iterdir())
            assert entries and max(p.stat().st_size for p in entries) > 100_000  # the solve
    np.testing.assert_array_equal(outs[0].W.values, outs[1].W.values)
