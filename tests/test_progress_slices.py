"""Progress without host callbacks: inits in vectors go through the compiled solve in a few
equal slices, progress counted between the calls, so the program is the same with or without
progress (one compilation serves both, and JAX's persistent cache, which refuses programs with
host callbacks, keeps it) and the numbers are those of a quiet run. Runs cut in segments count
each segment once done, the same way."""

import numpy as np
import pytest

from gflow import simulation
from gflow.simulation import call_slices

CONFIG = {
    "model": {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2},
    "dynamics": {"t1": 100.0, "saves": 4, "rtol": 1e-8, "atol": 1e-10},
    "init": {"count": 7},  # 4 vectors of 2 (the last padded): 4 slices on one device
    "run": {"precision": "float64", "vector_width": 2},
}


@pytest.mark.parametrize("units", [1, 2, 9, 16, 17, 32, 63, 64, 100, 257, 1000])
def test_slices_cover_the_batch_with_little_padding(units):
    calls, size = call_slices(units)
    assert 1 <= calls <= 16 and calls * size >= units
    assert calls * size - units < calls  # under one unit per slice
    if units <= 16:
        assert (calls, size) == (units, 1)


def test_slice_counts_prefer_no_padding_then_about_ten():
    assert call_slices(32) == (8, 4)
    assert call_slices(100) == (10, 10)
    assert call_slices(64) == (8, 8)


def test_a_run_with_progress_is_the_quiet_program_and_its_numbers(capsys):
    loud = simulation.simulate(CONFIG, progress=True)
    lines = capsys.readouterr().err.splitlines()
    counted = [line for line in lines if "of the inits solved" in line]
    assert len(counted) >= 3 and counted[-1].startswith("gflow: 100% of the inits solved")
    before = simulation.cache_info()
    quiet = simulation.simulate(CONFIG)
    after = simulation.cache_info()
    assert after["compiles"] == before["compiles"] and after["hits"] == before["hits"] + 1
    for name, values in quiet.data_vars.items():
        np.testing.assert_array_equal(loud[name].values, values.values, err_msg=name)
    assert int(quiet.sizes["init"]) == 7


# that the sliced program holds no host callback at all (with equinox's checks off, as the gflow
# command runs) is checked in a fresh process by tests/test_exported.py


def test_a_segmented_run_counts_its_segments_and_is_the_quiet_program(capsys, monkeypatch):
    config = {
        "model": {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2},
        "dynamics": {"kind": "gd", "lr": 0.1, "steps": 400, "saves": 5},
        "init": {"count": 3},
        "run": {"precision": "float64"},
    }
    monkeypatch.setenv("GFLOW_SEGMENT_WORK", "12000")  # 400 steps x 3 inits x 39: 4 segments
    assert simulation.segment_plan(simulation.as_config(config)).count == 4
    loud = simulation.simulate(config, progress=True)
    counted = [line for line in capsys.readouterr().err.splitlines() if "of the steps" in line]
    assert len(counted) == 4 and counted[-1].startswith("gflow: 100% of the steps"), counted
    before = simulation.cache_info()
    quiet = simulation.simulate(config)
    assert simulation.cache_info()["compiles"] == before["compiles"]
    for name, values in quiet.data_vars.items():
        np.testing.assert_array_equal(loud[name].values, values.values, err_msg=name)
