"""Bad paths given to `gflow`: a netCDF file gflow did not write, and an output folder that
cannot be written. Each exits 2 with one line on stderr, before anything compiles."""

import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from gflow import cli, config, results, simulation

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


def run_here(tmp_path, out, *flags: str) -> int:
    (tmp_path / "c.toml").write_text(CONFIG)
    return cli.main(["run", str(tmp_path / "c.toml"), "--out", str(out), "--quiet", "--no-plots",
                     *flags])  # fmt: skip


def test_a_folder_in_use_by_a_live_process_is_refused_and_a_dead_ones_lock_taken_over(
    tmp_path, capsys
):
    """A real second process holds the lock; once it is gone, its lock is stale."""
    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".gflow.lock").write_text(f"{other.pid}\n{os.uname().nodename}\ngflow run x\n")
        before = simulation.cache_info()["compiles"]
        assert run_here(tmp_path, out) == 2
        assert simulation.cache_info()["compiles"] == before  # refused before compiling
        err = capsys.readouterr().err
        assert err.startswith(f"gflow: error: run.out: {out} is in use by process {other.pid}")
        assert "(gflow run x, since " in err and len(err.splitlines()) == 1
    finally:
        other.kill()
        other.wait()
    assert run_here(tmp_path, out) == 0  # the holder died: its lock is taken over
    assert (out / "results.nc").is_file() and not (out / ".gflow.lock").exists()


def test_results_of_another_config_are_kept_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert run_here(tmp_path, out) == 0
    assert run_here(tmp_path, out) == 0  # the same config again: its results are replaced
    first = (out / "results.nc").read_bytes()
    CONFIG_SEED = CONFIG.replace("count = 2", "count = 2\nseed = 5")
    (tmp_path / "c.toml").write_text(CONFIG_SEED)
    argv = ["run", str(tmp_path / "c.toml"), "--out", str(out), "--quiet", "--no-plots"]
    capsys.readouterr()
    assert cli.main(argv) == 2
    assert capsys.readouterr().err == (
        f"gflow: error: run.out: {out} holds results.nc of another config; choose another "
        "folder (--out), or --overwrite to replace it\n"
    )
    assert (out / "results.nc").read_bytes() == first  # untouched
    assert cli.main([*argv, "--overwrite"]) == 0
    assert "seed = 5" in xr.open_dataset(out / "results.nc").attrs["config"]


def test_runs_and_sweeps_do_not_mix(tmp_path, capsys):
    run_out, sweep_out = tmp_path / "run", tmp_path / "sweep"
    assert run_here(tmp_path, run_out) == 0
    swept = CONFIG.replace("count = 2", "count = 2\nseed = [1, 2]")
    (tmp_path / "s.toml").write_text(swept)
    capsys.readouterr()
    assert cli.main(["sweep", str(tmp_path / "s.toml"), "--out", str(run_out), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"gflow: error: run.out: {run_out} holds a run's results (results.nc); choose another "
        "folder (--out), or --overwrite to replace them\n"
    )
    assert cli.main(["sweep", str(tmp_path / "s.toml"), "--out", str(sweep_out), "--quiet"]) == 0
    capsys.readouterr()
    assert run_here(tmp_path, sweep_out) == 2
    assert capsys.readouterr().err.startswith(
        f"gflow: error: run.out: {sweep_out} holds a sweep (sweep.toml, index.nc, points); "
    )
    assert run_here(tmp_path, sweep_out, "--overwrite") == 0
    assert sorted(p.name for p in sweep_out.iterdir()) == ["results.nc"]


def test_init_from_is_found_from_the_config_folder_with_tilde_expanded(tmp_path, monkeypatch):
    """A config beside its start file works from any folder; ~ is the home folder."""
    folder = tmp_path / "study"
    folder.mkdir()
    W, H = np.ones((3, 4)), np.ones((9, 4))
    np.savez(folder / "start.npz", W=W, H=H)
    text = CONFIG.replace("[init]\ncount = 2\n", '[init]\ncount = 2\nfrom = "start.npz"\n')
    (folder / "c.toml").write_text(text)
    monkeypatch.chdir(tmp_path)  # not the config's folder
    cfg = config.load(folder / "c.toml")
    assert cfg.init.from_file == str(folder / "start.npz")
    model, params0 = simulation.prepare(cfg)
    np.testing.assert_array_equal(params0["W"][1], W)
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = config.load("~/study/c.toml")
    assert cfg.init.from_file == str(folder / "start.npz")
    absolute = text.replace('"start.npz"', '"~/study/start.npz"')
    (folder / "d.toml").write_text(absolute)
    assert config.load(folder / "d.toml").init.from_file == str(folder / "start.npz")


def test_a_folder_or_an_unreadable_file_where_a_file_is_expected(tmp_path, capsys):
    (tmp_path / "c.toml").write_text(CONFIG.replace("count = 2", 'count = 2\nfrom = "."'))
    assert cli.main(["run", str(tmp_path / "c.toml"), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"gflow: error: init.from: {tmp_path} is a folder; give an .npz or results.nc file\n"
    )
    assert cli.main(["run", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"gflow: error: config: {tmp_path} is a folder; give a TOML config file\n"
    )
    if os.geteuid() != 0:  # root reads anything
        secret = tmp_path / "secret.toml"
        secret.write_text(CONFIG)
        secret.chmod(0)
        assert cli.main(["run", str(secret), "--quiet"]) == 2
        assert "cannot be read (permission denied)" in capsys.readouterr().err
