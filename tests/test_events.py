"""Stopping by events: an init ends where its gradient norm falls below a tolerance (a diffrax
Event with root finding); the stop time is recorded per init and saves after it hold the final
state's values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow import simulation, theory
from gflow.dynamics import STATUS, gradient_flow
from gflow.dynamics.longtime import log_time_flow

A = 2.0


def quadratic(p):
    return 0.5 * A * jnp.sum(p["x"] ** 2)


def observe(p):
    return {"loss": quadratic(p), "x0": p["x"][0]}


@pytest.mark.parametrize("flow", [gradient_flow, log_time_flow], ids=["plain", "log"])
def test_stop_time_is_exact_per_init(flow):
    """||grad L|| = a ||x0|| e^{-a t} crosses tol at t* = log(a ||x0|| / tol) / a."""
    tol = 1e-3
    x0 = jnp.array([[1.0, 0.0], [10.0, 0.0], [1e-4, 0.0]])  # the last never needs to move
    ts = np.linspace(0.0, 10.0, 11)
    solve = lambda p: flow(quadratic, p, ts, observe, rtol=1e-10, atol=1e-12, stop_grad_tol=tol)  # noqa: E731
    traj = jax.jit(jax.vmap(solve))({"x": x0})
    assert [STATUS[s] for s in traj.status] == ["ok", "ok", "ok"]
    expected = [math.log(A * 1.0 / tol) / A, math.log(A * 10.0 / tol) / A]
    np.testing.assert_allclose(traj.end_time[:2], expected, rtol=1e-6)
    # ||grad L|| = 2e-4 < tol already at t = 0: it stops at once
    assert float(traj.end_time[2]) == pytest.approx(0.0, abs=1e-9)
    # saves after the stop hold the final state's values; before it, the true path
    x = np.asarray(traj.observed["x0"])
    after = ts > expected[0]
    np.testing.assert_allclose(x[0, after], float(traj.final["x"][0, 0]), rtol=1e-12)
    np.testing.assert_allclose(x[0, ~after], np.exp(-A * ts[~after]), rtol=1e-7)
    np.testing.assert_allclose(float(traj.final["x"][0, 0]), tol / A, rtol=1e-6)


def test_stop_time_through_the_pipeline():
    cfg = {
        "model": {"name": "ufm-ce", "classes": 3, "dim": 3, "per_class": 2},
        "dynamics": {"t1": 1e5, "rtol": 1e-10, "atol": 1e-12, "saves": 12, "stop_grad_tol": 1e-7},
        "init": {"count": 3},
        "run": {"precision": "float64"},
    }
    ds = simulation.simulate(cfg)
    assert list(ds.status.values) == ["ok"] * 3
    assert np.all(ds.stop_time.values < 1e5) and np.all(ds.stop_time.values > 100)
    assert len(set(np.round(ds.stop_time.values, 6))) == 3  # each init stops on its own
    rho = theory.ufm_ce_optimum(3, 2, 5e-3, 5e-3).rho
    np.testing.assert_allclose(ds.W_norm_sq.isel(time=-1), rho, rtol=1e-4)
