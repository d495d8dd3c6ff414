"""Results describe themselves (CF attributes, provenance, the initial parameters) and can be
started from again; sweep point files say where they sit in the grid."""

import numpy as np
import xarray as xr

from gflow import results, simulation, sweep

GD = {
    "model": {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2},
    "dynamics": {"kind": "gd", "lr": 0.1, "steps": 20, "saves": 3},
    "init": {"count": 2, "seed": 4},
    "run": {"precision": "float64"},
}


def _run(tmp_path, name, **changes):
    cfg = {**GD, **changes, "run": {**GD["run"], "out": str(tmp_path / name)}}
    _, path = simulation.run(cfg)
    return results.load(path), path


def test_every_variable_has_a_long_name_and_units_and_the_file_its_provenance(tmp_path):
    ds, _ = _run(tmp_path, "a")
    for name, var in ds.variables.items():
        assert var.attrs.get("long_name"), name
        if name not in ("status", "labels", "init", "class", "feature", "sample"):
            assert var.attrs.get("units") == "1", name
    assert ds.attrs["Conventions"] == "CF-1.10"
    assert ds.attrs["source"].startswith("gflow ")
    assert ds.attrs["command_line"] in ds.attrs["history"]
    assert "threefry" in ds.attrs["prng"] and ds.attrs["environment"]
    for package in ("jax", "jaxlib", "diffrax", "optax", "equinox", "numpy", "xarray", "python"):
        assert ds.attrs[f"{package}_version"], package


def test_gd_carries_the_flow_time_it_approximates(tmp_path):
    ds, _ = _run(tmp_path, "a")
    np.testing.assert_array_equal(ds.time.values, [0, 1, 20])
    np.testing.assert_allclose(ds.flow_time.values, [0.0, 0.1, 2.0], rtol=1e-15)


def test_a_results_file_is_an_init_from_that_repeats_the_run_bit_for_bit(tmp_path):
    first, path = _run(tmp_path, "a")
    assert first.initial_W.dims == ("init", "class", "feature")
    assert first.initial_H.dims == ("init", "sample", "feature")
    again, _ = _run(tmp_path, "b", init={"count": 2, "seed": 99, "from": str(path)})
    for name in ("initial_W", "initial_H", "initial_b", "W", "H", "b", "loss"):
        np.testing.assert_array_equal(again[name].values, first[name].values, err_msg=name)


def test_sweep_points_carry_their_swept_values(tmp_path):
    config = tmp_path / "s.toml"
    config.write_text(
        '[model]\nname = "ufm-ce"\nclasses = 3\ndim = 4\nper_class = 2\nwd_W = [1e-3, 2e-3]\n'
        '[dynamics]\nkind = "gd"\nlr = 0.1\nsteps = 10\nsaves = 2\n[init]\ncount = 2\n'
        f'[run]\nout = "{tmp_path / "sweep"}"\n'
    )
    sweep.run(config, progress=False)
    files = sorted((tmp_path / "sweep" / "points").glob("*/results.nc"))
    points = [results.load(f) for f in files]
    assert [float(p.wd_W) for p in points] == [1e-3, 2e-3]
    whole = xr.combine_by_coords([p.expand_dims("wd_W") for p in points], combine_attrs="drop")
    assert whole.loss.dims == ("wd_W", "init", "time")


def test_initial_parameters_keep_their_dims_with_one_sample_per_class(tmp_path):
    one = {**GD["model"], "per_class": 1}  # N = K: W and H have the same shape
    ds, _ = _run(tmp_path, "a", model=one)
    assert ds.initial_W.dims == ("init", "class", "feature")
    assert ds.initial_H.dims == ("init", "sample", "feature")
