"""Bad paths given to `gflow`: a netCDF file gflow did not write, and an output folder that
cannot be written. Each exits 2 with one line on stderr, before anything compiles."""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from gflow import cli, results, simulation

CONFIG = """\
[model]
name = "ufm-ce"
classes = 3
dim = 4
per_class = 3

[dynamics]
kind = "gd"
steps = 10
saves = 2

[init]
count = 2
"""


def gflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gflow.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_plot_of_a_netcdf_file_gflow_did_not_write(tmp_path):
    """A Dataset of one random variable, and a sweep's index.nc given as a file: exit 2, one
    line saying what the file lacks (the index: plot its folder instead)."""
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("a", np.random.default_rng(0).random(5))}).to_netcdf(foreign)
    index = results.save(
        xr.Dataset({"ok_fraction": ("classes", [1.0, 0.5])}, coords={"classes": [3, 4]},
                   attrs={"sweep": "[model]\n"}),
        tmp_path / "sweep" / "index.nc",
    )  # fmt: skip
    proc = gflow("plot", str(foreign))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (
        f"gflow: error: results: {foreign} is not a gflow results file or sweep folder (it "
        "lacks variables time, loss, W, H and the config attribute)\n"
    )
    proc = gflow("plot", str(index))
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"gflow: error: results: {index} is not a gflow results file")
    assert proc.stderr.endswith(f"it is a sweep's index: plot its folder, {index.parent}\n")


def test_run_into_a_path_under_a_file_fails_before_compiling(tmp_path, capsys):
    (tmp_path / "c.toml").write_text(CONFIG)
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "out"
    line = (
        f"gflow: error: run.out: cannot create or write the folder {out} (Not a directory); "
        "choose another (--out)\n"
    )
    before = simulation.cache_info()["compiles"]
    assert cli.main(["run", str(tmp_path / "c.toml"), "--out", str(out), "--quiet"]) == 2
    assert simulation.cache_info()["compiles"] == before
    assert capsys.readouterr().err == line
    proc = gflow("run", str(tmp_path / "c.toml"), "--out", str(out), "--quiet")
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
@pytest.mark.parametrize("sub", ["", "out"])
def test_run_into_a_read_only_folder_fails_before_compiling(tmp_path, sub):
    """The folder itself read-only, or the folder to create under a read-only one."""
    (tmp_path / "c.toml").write_text(CONFIG)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    out = locked / sub if sub else locked
    try:
        proc = gflow("run", str(tmp_path / "c.toml"), "--out", str(out), "--quiet")
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert proc.stderr == (
        f"gflow: error: run.out: cannot create or write the folder {out} (Permission denied); "
        "choose another (--out)\n"
    )
    assert list(locked.iterdir()) == []
