"""Sweeps: list fields make a product grid; the index has the swept fields as dimensions; a sweep
killed (SIGKILL) mid-run resumes without redoing finished points and ends with the same numbers
as an uninterrupted one; bad sweeps and a foreign output folder get one-line errors."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gflow import results, sweep
from gflow.config import ConfigError

SWEEP = """\
[model]
name = "ufm-ce"
classes = [3, 4]
dim = 4
per_class = 2
wd_H = [1e-3, 5e-3]

[dynamics]
kind = "gd"
steps = 300
lr = 0.2
saves = 4

[init]
count = 3

[run]
precision = "float64"
"""


def test_axes_and_grid():
    raw = {"model": {"classes": 3, "per_class": [2, 3, 4], "wd_H": [1e-3, 5e-3]},
           "dynamics": {"solver": ["tsit5", "dopri8"]}, "init": {"count": [1, 2]}}  # fmt: skip
    grid_axes, grid = sweep.points(raw)
    # a plain per_class list is imbalance (3 classes), not an axis
    assert list(grid_axes) == [("model", "wd_H"), ("dynamics", "solver"), ("init", "count")]
    assert len(grid) == 2 * 2 * 2 and grid[-1][0] == (1, 1, 1)
    assert grid[-1][1].dynamics.solver == "dopri8" and grid[-1][1].init.count == 2
    assert grid[0][1].model.per_class == (2, 3, 4) and grid[0][1].model.wd_H == 1e-3
    swept = sweep.axes({"model": {"classes": 3, "per_class": [[1, 2, 3], [3, 2, 1]]}})
    assert swept == {("model", "per_class"): [[1, 2, 3], [3, 2, 1]]}


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"run": {"out": ["a", "b"]}}, r"^run\.out: cannot be swept \(one output folder"),
        ({"model": {"classes": []}}, r"^model\.classes: an empty list sweeps nothing"),
        ({"model": {"classes": [3, 3]}}, r"^model\.classes: a swept list must not repeat"),
        (
            {"model": {"classes": [3, 1]}},
            r"^model\.classes: must be >= 2, got 1 \(at sweep point model\.classes = 1\)",
        ),
    ],
)
def test_bad_sweeps_are_refused_before_running(raw, message):
    with pytest.raises(ConfigError, match=message):
        sweep.points(raw)


def sweep_command(config, out):
    return [sys.executable, "-m", "gflow.cli", "sweep", str(config), "--out", str(out)]


def test_killed_sweep_resumes_to_the_same_results(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP)
    killed, fresh = tmp_path / "killed", tmp_path / "fresh"
    first = killed / "points" / "0000" / "results.nc"
    proc = subprocess.Popen(sweep_command(config, killed), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 180
    while not first.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert first.exists(), "the first point never finished"
    os.kill(proc.pid, signal.SIGKILL)  # mid-sweep: later points are running or not started
    proc.wait()
    stamp = first.stat().st_mtime_ns
    assert not (killed / "points" / "0003" / "results.nc").exists()

    resumed = subprocess.run(sweep_command(config, killed), capture_output=True, text=True,
                             timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming:" in resumed.stderr
    assert first.stat().st_mtime_ns == stamp  # finished work was not redone
    assert re.search(r"gflow sweep: [123] point\(s\) to run", resumed.stderr)
    assert not list(killed.rglob("*.tmp"))

    sweep.run(config, fresh, progress=False)
    a, b = sweep.open_index(killed).load(), sweep.open_index(fresh).load()
    assert a.done.all() and dict(a.sizes) == {"classes": 2, "wd_H": 2}
    np.testing.assert_array_equal(a.classes.values, [3, 4])
    for n in range(4):
        x = results.load(killed / "points" / f"{n:04d}" / "results.nc")
        y = results.load(fresh / "points" / f"{n:04d}" / "results.nc")
        for name in ("loss", "nc1", "W", "H", "b", "status"):
            assert np.array_equal(x[name].values, y[name].values), (n, name)
    for name in ("loss", "nc1", "ok_fraction"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    point = sweep.load_point(fresh, classes=4, wd_H=1e-3)
    assert point.sizes["class"] == 4 and "wd_H = 0.001" in point.attrs["config"]


def test_an_output_folder_of_another_sweep_is_refused(tmp_path):
    (tmp_path / "sweep.toml").write_text("[model]\nclasses = [5, 6]\n")
    config = tmp_path / "mine.toml"
    config.write_text(SWEEP)
    done = subprocess.run(sweep_command(config, tmp_path), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"gflow: error: run.out: {tmp_path} holds a sweep of a different")


def test_summary_counts_points_and_judges_collapse_against_the_closed_form():
    """gflow sweep's report: the grid, points done and wholly ok, the spread of the points'
    final metrics against the closed form, and where collapse agrees with the prediction."""
    import xarray as xr

    values = np.geomspace(1e-4, 0.5, 3)
    dims, shape = ("wd_W", "wd_H"), (3, 3)
    nc = np.where(np.eye(3, dtype=bool), 1e-7, 0.4)  # collapsed on the diagonal only
    done = np.ones(shape, bool)
    done[2, 0] = False
    ok = np.ones(shape)
    ok[0, 1] = 0.5
    data = {v: (dims, nc) for v in ("nc1", "nc2", "nc3")}
    data.update(
        loss=(dims, np.full(shape, 1.5)), theory_loss=(dims, np.full(shape, 1.25)),
        W_norm_sq=(dims, np.full(shape, 3.0)), theory_W_norm_sq=(dims, np.full(shape, 2.0)),
        theory_collapsed=(dims, np.eye(3)), done=(dims, done), ok_fraction=(dims, ok),
        path=(dims, np.full(shape, "p", dtype=object)),
    )  # fmt: skip
    text = sweep.summary(xr.Dataset(data, coords={"wd_W": values, "wd_H": values}))
    lines = text.splitlines()
    assert lines[0] == "sweep: 9 points over wd_W (3) x wd_H (3); 8 done, 7 with every init ok"
    gap = next(line for line in lines if line.startswith("loss - closed form")).split()[-3:]
    assert [float(x) for x in gap] == [0.25, 0.25, 0.25]
    ratio = next(line for line in lines if line.startswith("||W||^2")).split()[-3:]
    assert [float(x) for x in ratio] == [0.5, 0.5, 0.5]
    assert "says so: 8 of 8 points agree" in text
    # at most 16 points: a row per point done (under two header lines), the undone one left out
    table = lines[len(lines) - lines[::-1].index("") :]
    assert len(table) == 2 + 8, table
    assert sweep.summary(xr.Dataset(data), points=4).splitlines()[-1].endswith("agree")
