"""The dynamics know nothing of the models: any loss pytree works; failures are per init."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow.batch import save_grid
from gflow.config import DynamicsConfig
from gflow.dynamics import STATUS, gradient_descent, gradient_flow


def quadratic(params):
    """L = 1/2 a x^2 + 1/2 ||y||^2, plus a term whose gradient is NaN when s < 0."""
    return (
        0.5 * 3.0 * params["x"] ** 2 + 0.5 * jnp.sum(params["y"] ** 2) + 0.0 * jnp.sqrt(params["s"])
    )


def observe(params):
    return {"loss": quadratic(params), "x": params["x"]}


def batch(s_values):
    n = len(s_values)
    return {
        "x": jnp.ones(n),
        "y": jnp.tile(jnp.array([1.0, -2.0]), (n, 1)),
        "s": jnp.asarray(s_values, float),
    }


def test_flow_matches_exact_solution_on_any_pytree():
    ts = np.array([0.0, 0.5, 1.0, 2.0])
    traj = jax.jit(
        jax.vmap(lambda p: gradient_flow(quadratic, p, ts, observe, rtol=1e-12, atol=1e-14))
    )(batch([1.0, 2.0]))
    np.testing.assert_allclose(np.asarray(traj.observed["x"])[0], np.exp(-3.0 * ts), rtol=1e-9)
    np.testing.assert_allclose(traj.final["y"][0], np.array([1.0, -2.0]) * np.exp(-2.0), rtol=1e-9)
    assert [STATUS[s] for s in traj.status] == ["ok", "ok"]


def test_descent_matches_exact_iteration():
    steps = np.array([0, 1, 5, 10])
    traj = jax.vmap(lambda p: gradient_descent(quadratic, p, steps, observe, lr=0.1))(batch([1.0]))
    # x_{k+1} = (1 - 0.1 * 3) x_k
    np.testing.assert_allclose(np.asarray(traj.observed["x"])[0], 0.7**steps, rtol=1e-13)
    assert int(traj.num_steps[0]) == 10


@pytest.mark.parametrize("kind", ["flow", "gd"])
def test_nan_in_one_init_does_not_spoil_the_others(kind):
    params = batch([1.0, -1.0, 4.0])  # the middle init has a NaN gradient
    if kind == "flow":
        ts = np.linspace(0.0, 2.0, 5)
        solve = lambda p: gradient_flow(quadratic, p, ts, observe, max_steps=200)  # noqa: E731
    else:
        solve = lambda p: gradient_descent(quadratic, p, np.arange(6), observe, lr=0.1)  # noqa: E731
    traj = jax.jit(jax.vmap(solve))(params)
    assert [STATUS[s] for s in traj.status] == ["ok", "nan", "ok"]
    healthy = np.asarray(traj.observed["x"])[[0, 2]]
    assert np.all(np.isfinite(healthy))
    np.testing.assert_allclose(healthy[0], healthy[1], rtol=1e-12)  # same x0, same path


def test_max_steps_is_reported_not_raised():
    ts = np.array([0.0, 1.0, 100.0])
    solve = lambda p: gradient_flow(quadratic, p, ts, observe, max_steps=3)  # noqa: E731
    traj = jax.jit(jax.vmap(solve))(batch([1.0, 1.0]))
    assert [STATUS[s] for s in traj.status] == ["max_steps", "max_steps"]
    assert np.all(np.asarray(traj.num_steps) == 3)


def test_gd_divergence_is_reported():
    solve = lambda p: gradient_descent(quadratic, p, np.array([0, 5, 10]), observe, lr=1.0)  # noqa: E731
    traj = jax.vmap(solve)(batch([1.0]))  # |1 - 3| = 2 > 1: x doubles each step
    assert STATUS[int(traj.status[0])] == "diverged"


@pytest.mark.parametrize("solver", ["euler", "heun", "bosh3", "dopri5", "dopri8", "kvaerno5"])
def test_every_solver_family_integrates_the_flow(solver):
    ts = np.array([0.0, 1.0])
    dt0 = 1e-3 if solver == "euler" else None
    traj = jax.vmap(
        lambda p: gradient_flow(quadratic, p, ts, observe, solver=solver, dt0=dt0, rtol=1e-8)
    )(batch([1.0]))
    tol = 5e-3 if solver == "euler" else 1e-5
    np.testing.assert_allclose(float(traj.observed["x"][0, -1]), np.exp(-3.0), rtol=tol)


def test_save_grid_shapes():
    flow = save_grid(DynamicsConfig(t1=100.0, saves=6))
    np.testing.assert_allclose(flow, [0.0, 0.01, 0.1, 1.0, 10.0, 100.0], rtol=1e-14)
    long = save_grid(DynamicsConfig(t1=1e8, saves=10))  # early dynamics kept on long horizons
    np.testing.assert_allclose(long, [0.0, *np.logspace(0, 8, 9)], rtol=1e-12)
    flow = save_grid(DynamicsConfig(t1=100.0, saves=5, save_spacing="linear"))
    np.testing.assert_allclose(flow, [0.0, 25.0, 50.0, 75.0, 100.0])
    gd = save_grid(DynamicsConfig(kind="gd", steps=10, saves=11))
    np.testing.assert_array_equal(gd, np.arange(11))
    gd = save_grid(DynamicsConfig(kind="gd", steps=1000, saves=4))
    np.testing.assert_array_equal(gd, [0, 1, 32, 1000])
    # two saves: the start and the end, whatever the spacing
    for spacing in ("log", "linear"):
        np.testing.assert_array_equal(
            save_grid(DynamicsConfig(t1=1e6, saves=2, save_spacing=spacing)), [0.0, 1e6]
        )
        np.testing.assert_array_equal(
            save_grid(DynamicsConfig(kind="gd", steps=7, saves=2, save_spacing=spacing)), [0, 7]
        )
    lin = save_grid(DynamicsConfig(kind="gd", steps=100, saves=5, save_spacing="linear"))
    np.testing.assert_array_equal(lin, [0, 25, 50, 75, 100])


@pytest.mark.parametrize("kind", ["flow", "gd"])
def test_float32_stays_float32_and_agrees_with_float64(kind):
    """With x64 enabled process-wide, a float32 run must still compute in float32 (times and
    state), and agree with the float64 run to float32 accuracy on the UFM-CE reference problem."""
    from gflow.batch import init_batch, run_batch
    from gflow.models import ufm_ce

    dyn = (
        DynamicsConfig(t1=3000.0, rtol=1e-6, atol=1e-8, saves=8)
        if kind == "flow"
        else DynamicsConfig(kind="gd", lr=0.5, steps=6000, saves=8)
    )
    params0 = init_batch(ufm_ce(4, 8, 5, dtype=jnp.float64), 0, 2)  # one draw, cast below
    out = {}
    for dtype in (jnp.float32, jnp.float64):
        model = ufm_ce(4, 8, 5, dtype=dtype)
        start = jax.tree.map(lambda x, dt=dtype: x.astype(dt), params0)
        with jax.default_matmul_precision("highest"):  # as gflow.simulate runs (GPUs: not TF32)
            out[dtype] = run_batch(model, dyn, start)
    t32, t64 = out[jnp.float32], out[jnp.float64]
    assert t32.final["W"].dtype == jnp.float32 and t32.observed["loss"].dtype == jnp.float32
    np.testing.assert_allclose(t32.observed["loss"], t64.observed["loss"], rtol=2e-4)
    np.testing.assert_allclose(t32.observed["W_norm_sq"], t64.observed["W_norm_sq"], rtol=2e-4)
