"""Ctrl-C and SIGTERM stop a run within moments (the solve is waited on in Python, so the
signal is seen at once), keep every finished block, say so in one line and exit 130 / 143,
with no traceback; the folder's lock is released and the same command resumes."""

import signal
import subprocess
import sys
import time

import pytest

LONG = """\
[model]
name = "ufm-ce"
classes = 3
dim = 4
per_class = 3

[dynamics]
kind = "gd"
lr = 0.1
steps = 200000
saves = 3

[init]
count = 20

[run]
chunk = 2
out = "out"
"""


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_run_and_keeps_the_finished_blocks(tmp_path, sig, status):
    (tmp_path / "long.toml").write_text(LONG)
    # `python -m gflow run ...` as from a terminal: pytest-xdist's workers ignore SIGINT and a
    # child inherits that (Python then installs no KeyboardInterrupt handler), so the child
    # puts Python's own handler back first
    start = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = ['gflow', 'run', 'long.toml', '--no-plots', '--quiet']; "
        "runpy.run_module('gflow', run_name='__main__')"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", start], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    parts = tmp_path / "out" / "parts"
    deadline = time.monotonic() + 300
    while not list(parts.glob("part-*.nc")) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.2)
    kept = sorted(p.name for p in parts.glob("part-*.nc"))
    assert kept, "no block finished in time"
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 10  # not after the remaining blocks (9 more)
    assert proc.returncode == status
    assert err.splitlines() == [
        f"gflow: interrupted: {len(kept)} finished block(s) kept in out/parts; the same command "
        "resumes"
    ]
    assert sorted(p.name for p in parts.glob("part-*.nc")) == kept  # nothing lost, nothing half
    assert not (tmp_path / "out" / ".gflow.lock").exists()
    assert not (tmp_path / "out" / "results.nc").exists()
