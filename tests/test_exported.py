"""Traced solves kept on disk (gflow.exported): a process that finds the solve exported by an
earlier one compiles it without tracing it, and the numbers are the same bits."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np

from gflow import exported

# in a fresh process with equinox's runtime checks off, as the gflow command runs: solves of one
# config with the in-process cache cleared before each; prints what happened as "key=value"
# lines, whether every solve gave the same bits, and the custom calls of the last program (a
# run with progress: its slices hold no host callback, see test_progress_slices.py)
SCRIPT = """
import re, shutil, sys
import numpy as np
from gflow import batch, exported, simulation
from test_progress_slices import CONFIG
simulation.enable_compilation_cache(sys.argv[1])
losses = []
for what in sys.argv[2:]:
    simulation.clear_cache()
    if what == "corrupt":
        for path in exported.folder().glob("*.jaxexport"):
            path.write_bytes(b"not an export")
    if what == "blocked":  # a file where the folder would be: nothing can be written
        shutil.rmtree(exported.folder())
        exported.folder().write_text("in the way")
    traces = batch.TRACES["solve"]
    losses.append(simulation.simulate(CONFIG, progress=True).loss.values)
    print(f"{what}: traced={batch.TRACES['solve'] - traces} {exported.STATS}")
print("same bits:", all(np.array_equal(losses[0], x) for x in losses))
(program,) = simulation._PROGRAMS.values()
print(sorted(set(re.findall(r'custom_call_target="([^"]+)"', program.as_text()))))
"""


def _run(tmp_path: Path, *steps: str) -> list[str]:
    env = dict(os.environ, EQX_ON_ERROR="nan", JAX_ENABLE_X64="1")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "cache"), *steps],
        env=env, cwd=Path(__file__).parent, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [line for line in done.stdout.splitlines() if not line.startswith("gflow: ")]


def test_a_second_process_compiles_the_exported_solve_without_tracing(tmp_path):
    first = _run(tmp_path, "export")
    assert first[0].startswith("export: traced=1 ") and "'exported': 1" in first[0], first
    assert "callback" not in first[2] and first[2].startswith("["), first  # progress: none
    (saved,) = (tmp_path / "cache" / "exported").glob("*.jaxexport")
    stamp = saved.stat().st_mtime_ns
    second = _run(tmp_path, "load", "load", "corrupt")
    assert second[0].startswith("load: traced=0 ") and "'loaded': 1" in second[0], second
    assert "'loaded': 2" in second[1], second
    # an unreadable file is traced and exported again; every solve gave the first one's bits
    assert second[2].startswith("corrupt: traced=1 "), second
    assert "'exported': 1" in second[2] and "'unreadable': 1" in second[2], second
    assert second[3] == "same bits: True", second
    assert saved.stat().st_mtime_ns != stamp
    third = _run(tmp_path, "load", "blocked")  # the new file is read back
    assert third[0].startswith("load: traced=0 ") and "'loaded': 1" in third[0], third
    # an unwritable cache: the process still solves with its own export, traced once
    assert third[1].startswith("blocked: traced=1 ") and "'unwritable': 1" in third[1], third
    assert "'failed': 0" in third[1] and third[2] == "same bits: True", third


def test_the_file_name_follows_the_program_and_the_arguments():
    a = jax.ShapeDtypeStruct((4, 3), np.float64)
    b = jax.ShapeDtypeStruct((4, 3), np.float32)
    base = exported.digest(("ufm-ce", 1), [a])
    assert base == exported.digest(("ufm-ce", 1), [a])
    assert base != exported.digest(("ufm-ce", 2), [a])
    assert base != exported.digest(("ufm-ce", 1), [b])
    assert base != exported.digest(("ufm-ce", 1), [a, a])


def test_exports_need_the_cache_folder_and_equinox_checks_off(monkeypatch, tmp_path):
    before = jax.config.jax_compilation_cache_dir
    try:
        jax.config.update("jax_compilation_cache_dir", str(tmp_path))
        monkeypatch.setenv("EQX_ON_ERROR", "nan")
        assert exported.folder() == tmp_path / "exported"
        monkeypatch.setenv("EQX_ON_ERROR", "raise")  # host callbacks: nothing exported
        assert exported.folder() is None
        monkeypatch.setenv("EQX_ON_ERROR", "nan")
        jax.config.update("jax_compilation_cache_dir", None)
        assert exported.folder() is None
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
