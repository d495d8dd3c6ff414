"""Strict saddles of the regularized model (Zhu et al. 2021; Ji et al. 2022): the Hessian's
smallest eigenvalue by dense and Lanczos solvers, and gradient flow escaping known saddles to
the collapsed minimizer."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from gflow import hessian, results, simulation, theory
from gflow.batch import batched_solver, noise_keys, observer, save_grid
from gflow.config import ConfigError, DynamicsConfig
from gflow.dynamics import gradient_flow
from gflow.models import ufm_ce, ulpm

K, N_PER, D = 3, 2, 3


def zero_point(model):
    return jax.tree.map(jnp.zeros_like, model.init(jax.random.PRNGKey(0)))


@pytest.mark.parametrize("wd_W, wd_H", [(5e-3, 5e-3), (1e-2, 2e-3)])
@pytest.mark.parametrize("method", ["dense", "lanczos"])
def test_eigenvalue_at_zero_has_its_closed_form(method, wd_W, wd_H):
    """At W = H = 0 the Hessian couples W and H through (Y - 11^T/K)/N, whose singular values
    are 1/(K sqrt n): lambda_min = (wd_W + wd_H)/2 - sqrt(((wd_W - wd_H)/2)^2 + 1/(K^2 n))."""
    model = ufm_ce(4, 6, 5, wd_W=wd_W, wd_H=wd_H, wd_b=5e-3, dtype=jnp.float64)
    # jitted: op by op, the Lanczos loop's and the eigensolver's ops would each compile
    low, _ = jax.jit(lambda p: hessian.extreme_eigenvalues(model.loss, p, method, iters=40))(
        zero_point(model)
    )
    expected = (wd_W + wd_H) / 2 - math.sqrt(((wd_W - wd_H) / 2) ** 2 + 1 / (16 * 5))
    assert float(low) == pytest.approx(expected, rel=1e-10)


def test_lanczos_matches_dense_under_vmap():
    model = ufm_ce(K, D, N_PER, dtype=jnp.float64)
    points = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 4))
    size = hessian.num_params(model.init(jax.random.PRNGKey(0)))
    dense = jax.jit(jax.vmap(lambda p: hessian.dense_extreme_eigenvalues(model.loss, p)))(points)
    lanczos = jax.jit(jax.vmap(
        lambda p: hessian.lanczos_extreme_eigenvalues(model.loss, p, iters=size)
    ))(points)  # fmt: skip
    np.testing.assert_allclose(lanczos[0], dense[0], rtol=1e-8)
    np.testing.assert_allclose(lanczos[1], dense[1], rtol=1e-8)


def test_escape_from_zero_at_the_predicted_rate_to_the_minimizer():
    wd = 5e-3
    model = ulpm(K, D, N_PER, wd_W=wd, wd_H=wd, dtype=jnp.float64)  # the regularized ULPM
    rate = abs(wd - 1 / (K * math.sqrt(N_PER)))  # |lambda_min| at the saddle W = H = 0
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params0 = jax.tree.map(lambda x: 1e-7 * x, jax.vmap(model.init)(keys))  # ~1e-8 entries
    observe = observer(model, hessian="dense")
    early = DynamicsConfig(t1=80.0, rtol=1e-10, atol=1e-14, saves=5, save_spacing="linear")
    traj = batched_solver(model, early, observe=observe)(params0, noise_keys(0, 3))
    np.testing.assert_allclose(traj.observed["hessian_min_eig"][:, 0], -rate, rtol=1e-10)
    sq_norm = np.asarray(traj.observed["W_norm_sq"] + traj.observed["H_norm_sq"])
    growth = np.diff(np.log(sq_norm), axis=1)[:, 1:3] / 20  # t in [20, 60]: linear regime
    np.testing.assert_allclose(growth, 2 * rate, rtol=1e-3)  # ||theta||^2 ~ e^{2|lambda| t}
    # ... and the run ends at the collapsed global minimizer, where the Hessian is PSD
    late = DynamicsConfig(t1=12_000.0, rtol=1e-10, atol=1e-12, saves=40)
    traj = batched_solver(model, late, observe=observe)(params0, noise_keys(0, 3))
    rho = theory.ufm_ce_optimum(K, N_PER, wd, wd).rho
    np.testing.assert_allclose(traj.observed["W_norm_sq"][:, -1], rho, rtol=1e-8)
    assert np.all(np.asarray(traj.observed["hessian_min_eig"])[:, -1] > -1e-9)
    sq_norm = np.asarray(traj.observed["W_norm_sq"] + traj.observed["H_norm_sq"])
    ds = xr.Dataset(
        {k: (("init", "time"), np.asarray(v)) for k, v in traj.observed.items()},
        coords={"time": save_grid(late)},
    )
    escape = results.escape_time(ds, factor=1e6).values  # first save past 1e6 x ||theta_0||^2
    predicted = np.log(1e6) / (2 * rate)  # the unstable mode grows like e^{|lambda| t}
    assert np.all(escape < 1.5 * predicted) and np.all(escape > 0.7 * predicted)


def test_saddle_where_two_classes_share_a_direction():
    """Classes 0 and 1 with equal classifier rows and equal features span a subspace the flow
    keeps (swapping the two classes maps it to itself). Its critical point, reached by the flow
    of the reduced loss L(expand(r)), is a critical point of the full loss with a negative
    Hessian eigenvalue; a tiny perturbation escapes to the collapsed minimizer."""
    wd = 5e-3
    model = ulpm(K, D, N_PER, wd_W=wd, wd_H=wd, dtype=jnp.float64)
    labels = np.asarray(model.labels)

    def expand(r):  # r: shared row/features for classes 0 and 1, own ones for class 2
        W = jnp.stack([r["w01"], r["w01"], r["w2"]])
        H = jnp.concatenate([r["h01"], r["h01"], r["h2"]])
        return {"W": W, "H": H}

    key = jax.random.split(jax.random.PRNGKey(3), 4)
    r0 = {
        "w01": 0.1 * jax.random.normal(key[0], (D,)),
        "w2": 0.1 * jax.random.normal(key[1], (D,)),
        "h01": 0.1 * jax.random.normal(key[2], (N_PER, D)),
        "h2": 0.1 * jax.random.normal(key[3], (N_PER, D)),
    }
    reduced = jax.jit(lambda r: gradient_flow(
        lambda r: model.loss(expand(r)), r, np.array([0.0, 5000.0]),
        lambda r: {"loss": model.loss(expand(r))}, rtol=1e-12, atol=1e-14,
    ))(r0)  # fmt: skip
    saddle = expand(reduced.final)
    assert np.all(labels == np.repeat(np.arange(K), N_PER))
    grad = jax.grad(model.loss)(saddle)
    assert max(float(jnp.abs(g).max()) for g in grad.values()) < 1e-9  # a critical point
    low, _ = jax.jit(lambda p: hessian.dense_extreme_eigenvalues(model.loss, p))(saddle)
    assert float(low) < -1e-3  # strict saddle (measured about -0.06)
    rho = theory.ufm_ce_optimum(K, N_PER, wd, wd).rho
    assert float(jnp.sum(saddle["W"] ** 2)) < 0.95 * rho  # not the minimizer
    # escape: perturb by 1e-6 and follow the full flow to the collapsed minimizer
    kick = jax.tree.map(lambda x: x + 1e-6 * jax.random.normal(key[0], x.shape), saddle)
    dyn = DynamicsConfig(t1=20_000.0, rtol=1e-10, atol=1e-12, saves=30)
    traj = batched_solver(model, dyn)(jax.tree.map(lambda x: x[None], kick), noise_keys(0, 1))
    assert int(traj.status[0]) == 0
    np.testing.assert_allclose(float(traj.observed["W_norm_sq"][0, -1]), rho, rtol=1e-6)
    assert float(traj.observed["nc2"][0, -1]) < 1e-6


def test_dense_hessian_refused_on_large_problems():
    cfg = {"model": {"name": "ufm-ce", "classes": 10, "dim": 32, "per_class": 20},
           "run": {"hessian": "dense"}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"^run\.hessian: dense needs <= 4096 parameters"):
        simulation.prepare(simulation.as_config(cfg))
    with pytest.raises(ValueError, match="use method='lanczos'"):
        model = ufm_ce(10, 32, 20)
        hessian.dense_extreme_eigenvalues(model.loss, model.init(jax.random.PRNGKey(0)))
