"""Results Dataset: the contract, atomic writes, loading, summary against the closed form."""

import numpy as np
import pytest
import xarray as xr

from gflow import results, simulation


@pytest.fixture(scope="module")
def dataset():
    cfg = {
        "model": {"name": "ufm-ce", "classes": 3, "dim": 3, "per_class": 2},
        "dynamics": {"kind": "gd", "lr": 0.5, "steps": 4000, "saves": 6},
        "init": {"count": 3, "seed": 2},
        "run": {"precision": "float64"},
    }
    return simulation.simulate(cfg)


def test_gd_results_use_step_counts(dataset):
    assert dataset.time.attrs["long_name"] == "step"
    # step 0, then rint(geomspace(1, 4000, 5))
    assert list(dataset.time.values) == [0, 1, 8, 63, 503, 4000]
    assert np.all(dataset.num_steps.values == 4000)
    assert list(dataset.class_count.values) == [2, 2, 2]


def test_save_then_load_round_trips(dataset, tmp_path):
    path = results.save(dataset, tmp_path / "sub" / "results.nc")
    back = results.load(path)
    xr.testing.assert_identical(back.drop_attrs(), dataset.drop_attrs())
    assert back.attrs["config"] == dataset.attrs["config"]
    assert back.status.values.tolist() == ["ok", "ok", "ok"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(dataset, tmp_path, monkeypatch):
    path = results.save(dataset, tmp_path / "results.nc")
    before = path.read_bytes()

    def broken(self, target, **kwargs):
        with open(target, "wb") as f:
            f.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(OSError, match="disk full"):
        results.save(dataset, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.nc"]


def test_summary_compares_with_the_closed_form(dataset):
    text = results.summary(dataset)
    rho = dataset.attrs["theory_W_norm_sq"]
    assert "||W||_F^2" in text and f"{rho:.10g}" in text
    assert "collapsed (NC1-3 < 1e-3, NC4 = 0): 100%" in text
    assert bool(results.collapsed(dataset).all())


def test_collapsed_requires_status_ok(dataset):
    broken = dataset.copy()
    broken["status"] = ("init", np.array(["ok", "nan", "ok"], dtype=object))
    assert results.collapsed(broken).values.tolist() == [True, False, True]
