"""Atomic writes by helper processes (gflow.atomic.Writers): every file submitted is on disk,
whole and equal to what was sent, when wait() returns; a writer that dies has its files
written by the caller; a file that cannot be written is reported, naming it."""

import os
import signal

import numpy as np
import pytest
import xarray as xr

from gflow import atomic, sweep


def _dataset(n: int) -> xr.Dataset:
    rng = np.random.default_rng(n)
    return xr.Dataset(
        {"loss": (("init", "time"), rng.normal(size=(3, 5))), "status": ("init", ["ok"] * 3)},
        coords={"time": np.arange(5.0)},
        attrs={"point": n},
    )


def _same(path, n):
    with xr.open_dataset(path, engine="netcdf4") as got:
        xr.testing.assert_identical(got.load(), _dataset(n))


def test_files_written_by_two_processes_are_whole_and_equal(tmp_path):
    with atomic.Writers(2) as writers:
        for n in range(12):
            writers.submit(_dataset(n), tmp_path / f"p{n:02d}" / "results.nc")
        writers.wait()
        for n in range(12):
            _same(tmp_path / f"p{n:02d}" / "results.nc", n)
        # nothing but the files: no temporaries left
        assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["results.nc"] * 12


def test_a_dead_writer_leaves_its_files_to_the_caller(tmp_path):
    writers = atomic.Writers(1)
    proc = writers._procs[0].proc
    os.kill(proc.pid, signal.SIGKILL)  # it ignores SIGINT and SIGTERM, not this
    proc.wait()
    for n in range(3):
        writers.submit(_dataset(n), tmp_path / f"{n}.nc")
    writers.wait()
    writers.close()
    for n in range(3):
        _same(tmp_path / f"{n}.nc", n)


def test_a_file_that_cannot_be_written_is_reported_by_name(tmp_path):
    (tmp_path / "a-file").write_text("not a folder\n")
    with pytest.raises(OSError, match="a-file"), atomic.Writers(1) as writers:
        writers.submit(_dataset(0), tmp_path / "a-file" / "results.nc")


def test_writer_processes_only_for_many_points():
    assert sweep.writer_processes(4) == 0
    assert sweep.writer_processes(256) in (0, *range(2, 5))
