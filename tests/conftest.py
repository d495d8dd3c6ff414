"""Test set-up: float64 on from the start (before any array exists), shared helpers."""

import os

# The suite's problems are tiny: compiling them is what takes its time. XLA's CPU backend at
# optimization level 0 compiles a flow ~40% faster (UFM-CE K=4: 5.0 -> 2.9 s) and runs it
# slower (0.04 -> 0.07 s); every check compares values computed under the same flags.
# GFLOW_TEST_OPTIMIZED=1 keeps XLA's defaults. (Read when JAX starts its backends, below.)
if not os.environ.get("GFLOW_TEST_OPTIMIZED"):
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
# start JAX's backends now, so that an in-process `gflow run` (which asks for one CPU device
# per core before JAX starts) cannot change the device count under the tests that follow it
jax.devices()
# hermetic runs: the CLI's persistent compilation cache (~/.cache/gflow) is never used. Under
# `make test` compiled solves are shared between tests, their workers and the `gflow` processes
# they start, through a cache that lives as long as the run (a cached executable is the one
# XLA would build: the numbers do not change); otherwise the cache is off unless a test turns
# it on
os.environ["GFLOW_CACHE_DIR"] = os.environ.get("GFLOW_TEST_JAX_CACHE") or "off"
if os.environ.get("GFLOW_TEST_JAX_CACHE"):
    jax.config.update("jax_compilation_cache_dir", os.environ["GFLOW_TEST_JAX_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


def tree_allclose(a, b, rtol=1e-12, atol=1e-12) -> bool:
    """True when two pytrees have the same structure and allclose leaves."""
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.allclose(x, y, rtol=rtol, atol=atol) for x, y in zip(la, lb, strict=True)
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def f64():
    return jnp.float64
