"""Scaling out: chunked, sharded and multi-process runs give bit-identical results to one batch;
chunked runs write their parts as they go and resume without redoing them; a foreign parts
folder and an unreachable coordinator get one-line errors."""

import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from gflow import distributed, results, simulation
from gflow.config import ConfigError

CFG = {
    "model": {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2},
    "dynamics": {"kind": "flow", "t1": 300.0, "saves": 4},
    "init": {"count": 5, "seed": 2},
    "run": {"precision": "float64"},
}
FIELDS = ("loss", "nc1", "nc3", "W", "H", "b", "num_steps", "status")


def same_numbers(a: xr.Dataset, b: xr.Dataset) -> None:
    for name in FIELDS:
        assert np.array_equal(a[name].values, b[name].values), name
    assert np.array_equal(a.init.values, b.init.values)


@pytest.fixture(scope="module")
def whole():
    return simulation.simulate(CFG)


def test_blocks_cover_the_inits_once():
    assert distributed.chunks(0, 5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert distributed.chunks(3, 7, 0) == [(3, 7)]
    blocks = [distributed.process_block(10, p, 3) for p in range(3)]
    assert blocks == [(0, 4), (4, 7), (7, 10)]


def test_chunked_run_is_bit_identical_and_resumes(whole, tmp_path):
    cfg = simulation.as_config(CFG).replace(run={"chunk": 2})
    chunked = simulation.simulate(cfg)
    same_numbers(chunked, whole)
    # an interrupted run: the first block is already on disk (marked so we can tell it is kept)
    parts = results.PartStore(tmp_path / "parts", simulation.fingerprint(cfg))
    first = whole.isel(init=slice(0, 2)).copy(deep=True)
    first["loss"][:] = -1.0
    parts.save(first)
    ds, path = simulation.run(cfg, tmp_path)
    assert path == tmp_path / "results.nc" and not (tmp_path / "parts").exists()
    assert np.all(ds.loss.isel(init=[0, 1]).values == -1.0)  # not recomputed
    same_numbers(ds.isel(init=slice(2, None)), whole.isel(init=slice(2, None)))
    assert ds.sizes["init"] == 5


def test_waiting_for_parts_that_never_come_times_out(whole, tmp_path):
    parts = results.PartStore(tmp_path / "parts", "fingerprint")
    parts.save(whole.isel(init=slice(0, 2)))
    start = time.monotonic()
    with pytest.raises(
        TimeoutError, match=r"^run\.wait_timeout: no new part in 0\.3 s; inits 2-4 "
    ):
        parts.wait_for([(0, 2), (2, 5)], poll=0.05, timeout=0.3)
    assert time.monotonic() - start < 5
    (loaded,) = parts.wait_for([(0, 2)], timeout=0.3)  # present blocks load at once
    same_numbers(loaded, whole.isel(init=slice(0, 2)))


def test_parts_of_another_config_are_refused(tmp_path):
    cfg = simulation.as_config(CFG).replace(run={"chunk": 2})
    results.PartStore(tmp_path / "parts", simulation.fingerprint(cfg.replace(init={"seed": 9})))
    with pytest.raises(ConfigError, match=r"^run\.out: .* holds an unfinished run of a different"):
        simulation.run(cfg, tmp_path)


def run_script(code: str, env: dict | None = None, timeout: float = 240) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("devices", [3, 4])
def test_sharded_over_several_devices_is_bit_identical(whole, tmp_path, devices):
    """Vectors of inits keep their width on any device count (a vmap of 3 rounds differently
    from one of 2 on XLA's CPU), so the bits do not depend on how the inits are spread."""
    out = tmp_path / "sharded.nc"
    stdout = run_script(
        f"""
        import jax
        from gflow import results, simulation
        ds = simulation.simulate({CFG!r})
        results.save(ds, {str(out)!r})
        print(jax.local_device_count())
        """,
        # the device count added to this process's flags (the suite's optimization level)
        env={
            "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
            f"--xla_force_host_platform_device_count={devices}".strip()
        },
    )
    assert stdout.split()[-1] == str(devices)
    same_numbers(results.load(out), whole)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_join_into_one_result(whole, tmp_path):
    config = tmp_path / "two.toml"
    config.write_text(
        simulation.config_mod.dumps(
            simulation.as_config(CFG).replace(
                run={
                    "coordinator": f"127.0.0.1:{free_port()}",
                    "num_processes": 2,
                    "connect_timeout": 60,
                    "out": str(tmp_path / "out"),
                }  # fmt: skip
            )
        )
    )
    command = [sys.executable, "-m", "gflow.cli", "run", str(config), "--no-plots", "--quiet"]
    # the same compiled program as this process's: the CLI would otherwise pick EQX_ON_ERROR=nan
    env = {**os.environ, "EQX_ON_ERROR": os.environ.get("EQX_ON_ERROR", "raise")}
    procs = [
        subprocess.Popen(
            command,
            env={**env, "GFLOW_PROCESS_ID": str(p)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for p in (0, 1)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err[-2000:]
    ds = results.load(tmp_path / "out" / "results.nc")
    # under the distributed CPU runtime XLA compiles the same solve slightly differently: the
    # numbers agree to rounding (bit-identity holds for chunked and sharded runs above)
    for name in ("loss", "nc1", "nc2", "nc3", "W", "H", "b"):
        np.testing.assert_allclose(ds[name].values, whole[name].values, rtol=1e-12, atol=1e-14)
    assert np.array_equal(ds.status.values, whole.status.values)
    assert not (tmp_path / "out" / "parts").exists()


def test_unreachable_coordinator_is_a_one_line_error(tmp_path):
    config = tmp_path / "lost.toml"
    config.write_text(
        '[run]\ncoordinator = "127.0.0.1:1"\nnum_processes = 2\nprocess_id = 1\n'
        "connect_timeout = 1\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "gflow.cli", "run", str(config), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("gflow: error: run.coordinator: cannot reach 127.0.0.1:1")
    assert len(done.stderr.strip().splitlines()) == 1
