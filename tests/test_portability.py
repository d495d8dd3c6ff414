"""Off Linux and for collaborators: core counts without os.sched_getaffinity, and result files
with the mode the umask gives (not mkstemp's 0600)."""

import os
import stat

import numpy as np
import pytest
import xarray as xr

from gflow import bench, distributed, results


def test_cores_without_sched_getaffinity(monkeypatch):
    """macOS and Windows have no os.sched_getaffinity: the core count falls back to
    os.cpu_count(), or 1 where even that is unknown."""
    if hasattr(os, "sched_getaffinity"):
        assert distributed.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert distributed.usable_cores() == (os.cpu_count() or 1)
    assert bench.machine()["cores"] == (os.cpu_count() or 1)
    asked = {}
    monkeypatch.delenv("JAX_NUM_CPU_DEVICES", raising=False)
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.setattr(distributed.jax.config, "update", lambda k, v: asked.update({k: v}))
    distributed.use_cpu_cores()
    assert asked == {"jax_num_cpu_devices": os.cpu_count() or 1}
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert distributed.usable_cores() == 1


@pytest.fixture
def umask():
    """Set the process umask for one test, then restore it."""
    before = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(before)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_get_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    text = results.write_text(tmp_path / "sweep.toml", "x = 1\n")
    nc = results.save(xr.Dataset({"loss": ("time", np.zeros(3))}), tmp_path / "results.nc")
    for path in (text, nc):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.nc", "sweep.toml"]
