"""Noisy gradient flow d theta = -grad L dt + sigma dW, one Brownian path per init: exact
Ornstein-Uhlenbeck moments on a quadratic loss, the ODE limit as sigma -> 0, reproducibility."""

import jax
import jax.numpy as jnp
import numpy as np

from gflow import simulation
from gflow.batch import noise_keys
from gflow.dynamics import STATUS, gradient_flow
from gflow.dynamics.stochastic import noisy_gradient_flow

A = 2.0  # L = a/2 ||x||^2: an Ornstein-Uhlenbeck process dx = -a x dt + sigma dW


def quadratic(p):
    return 0.5 * A * jnp.sum(p["x"] ** 2)


def observe(p):
    return {"loss": quadratic(p), "x0": p["x"][0]}


TS = np.array([0.0, 0.25, 0.5, 1.0])


def solve(noise, keys, x0, solver="euler", dt0=1e-3):
    fn = lambda p, k: noisy_gradient_flow(  # noqa: E731
        quadratic, p, TS, observe, k, noise=noise, dt0=dt0, solver=solver
    )
    return jax.jit(jax.vmap(fn))({"x": jnp.tile(x0, (len(keys), 1))}, keys)


def test_ornstein_uhlenbeck_moments():
    """E x_t = x_0 e^{-a t}, Var x_t = sigma^2/(2a) (1 - e^{-2a t}), per coordinate."""
    # Euler-Maruyama at dt = 2e-3 shifts the variance by about a dt = 0.4%
    sigma, x0 = 0.5, jnp.linspace(-1.0, 1.0, 20)
    traj = solve(sigma, noise_keys(0, 200), x0, dt0=2e-3)
    assert set(STATUS[s] for s in np.asarray(traj.status)) == {"ok"}
    x = np.asarray(traj.final["x"])  # (200 inits, 20 coordinates) at t = 1
    deviation = x - np.asarray(x0) * np.exp(-A * 1.0)
    var = sigma**2 / (2 * A) * (1 - np.exp(-2 * A * 1.0))
    # mean: 4000 samples of variance var -> standard error sqrt(var/4000) ~ 0.004
    assert abs(deviation.mean()) < 4 * np.sqrt(var / deviation.size)
    np.testing.assert_allclose(deviation.var(), var, rtol=0.08)  # ~2% standard error
    # independent paths: different inits get different noise
    assert np.std(x[:, 0]) > 0.5 * np.sqrt(var)


def test_zero_noise_limit_is_the_flow():
    x0 = jnp.array([1.0, -0.5])
    keys = noise_keys(3, 2)
    exact = np.exp(-A * TS)
    quiet = solve(0.0, keys, x0, solver="heun", dt0=2.5e-3)  # Heun: error ~ (a dt)^2 t
    np.testing.assert_allclose(np.asarray(quiet.observed["x0"])[0], exact, rtol=1e-4)
    flow = gradient_flow(quadratic, {"x": x0}, TS, observe, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(quiet.observed["x0"][0], flow.observed["x0"], rtol=1e-4)
    # and the sample mean of a noisy run converges to it as sigma shrinks
    errors = []
    for sigma in (0.3, 0.03):
        traj = solve(sigma, noise_keys(1, 200), x0, solver="heun", dt0=1e-2)
        errors.append(np.abs(np.asarray(traj.observed["x0"]).mean(0) - exact).max())
    assert errors[1] < errors[0] / 3


def test_same_key_same_path_and_different_keys_differ():
    x0 = jnp.array([1.0, -0.5])
    keys = noise_keys(5, 2)
    a, b = solve(0.2, keys, x0), solve(0.2, keys, x0)
    np.testing.assert_array_equal(a.final["x"], b.final["x"])
    assert not np.allclose(a.final["x"][0], a.final["x"][1])


def test_sde_through_the_pipeline():
    cfg = {
        "model": {"name": "ufm-ce", "classes": 3, "dim": 3, "per_class": 2},
        "dynamics": {"kind": "sde", "solver": "euler", "t1": 50.0, "dt0": 0.05, "noise": 0.01,
                     "saves": 5},
        "init": {"count": 3},
        "run": {"precision": "float64"},
    }  # fmt: skip
    ds = simulation.simulate(cfg)
    assert list(ds.status.values) == ["ok"] * 3
    assert ds.time.attrs["long_name"] == "flow time"
    assert np.all(ds.loss.isel(time=-1) < ds.loss.isel(time=0))
    again = simulation.simulate(cfg)
    np.testing.assert_array_equal(ds.W.values, again.W.values)  # seeded: bit-identical
