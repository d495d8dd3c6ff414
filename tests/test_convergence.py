"""Gradient flow and gradient descent from random inits reach the closed-form UFM-CE optimum
(Zhu et al. 2021), and the collapsed-to-zero solution above the threshold, in float64."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from gflow import theory
from gflow.batch import init_batch, run_batch
from gflow.config import DynamicsConfig
from gflow.models import ufm_ce

# (K, d, n, wd_W, wd_H, wd_b, bias): the worked example of the paper's numbers, then our own:
# wd_W != wd_H, d = K - 1, and no bias.
SETTINGS = {
    "worked-K4-n5": (4, 8, 5, 5e-3, 5e-3, 5e-3, True),
    "wdW-ne-wdH": (3, 5, 4, 1e-2, 2e-3, 1e-3, True),
    "d-eq-K-1": (5, 4, 3, 4e-3, 8e-3, 5e-3, True),
    "no-bias": (4, 6, 5, 5e-3, 1e-2, 0.0, False),
}
FLOW = DynamicsConfig(kind="flow", solver="tsit5", t1=12_000.0, rtol=1e-10, atol=1e-12, saves=20)
GD = DynamicsConfig(kind="gd", optimizer="sgd", lr=0.5, steps=24_000, saves=20)


def _common_mode_decay(dynamics, wd_b):
    """mean(b) obeys d/dt mean(b) = -wd_b mean(b) exactly (the CE gradient in b sums to 0)."""
    if dynamics.kind == "gd":
        return (1 - dynamics.lr * wd_b) ** dynamics.steps
    return math.exp(-wd_b * dynamics.t1)


def _check_collapsed(traj, model, K, n, wd_W, wd_H, b_mean_expected=None):
    opt = theory.ufm_ce_optimum(K, n, wd_W, wd_H)
    assert opt.collapsed
    assert np.all(np.asarray(traj.status) == 0)
    final = traj.final
    W, H, b = (np.asarray(final[k]) if k in final else None for k in ("W", "H", "b"))
    obs = {k: np.asarray(v)[:, -1] for k, v in traj.observed.items()}
    np.testing.assert_allclose(obs["W_norm_sq"], opt.rho, rtol=1e-6)
    np.testing.assert_allclose(obs["H_norm_sq"], n * opt.c**2 * opt.rho, rtol=1e-6)
    np.testing.assert_allclose(obs["loss"], opt.loss, rtol=1e-10)
    for Wi, Hi in zip(W, H, strict=True):
        np.testing.assert_allclose(Wi @ Wi.T, opt.W_gram, atol=1e-6 * opt.rho)
        np.testing.assert_allclose(Hi, opt.c * Wi[model.labels], atol=1e-6)
    if b is not None:
        np.testing.assert_allclose(b - b.mean(1, keepdims=True), 0.0, atol=1e-8)
        np.testing.assert_allclose(b.mean(1), b_mean_expected, rtol=1e-6, atol=1e-12)
    for name in ("nc1", "nc2", "nc3"):
        assert np.max(obs[name]) < 1e-8, name
    assert np.all(obs["nc4"] == 0.0)
    # the loss only goes down along the flow/descent
    assert np.all(np.diff(np.asarray(traj.observed["loss"]), axis=1) <= 1e-12)


@pytest.mark.parametrize("dynamics", [FLOW, GD], ids=["flow", "gd"])
@pytest.mark.parametrize("setting", list(SETTINGS), ids=list(SETTINGS))
def test_converges_to_closed_form(setting, dynamics):
    K, d, n, wd_W, wd_H, wd_b, bias = SETTINGS[setting]
    model = ufm_ce(K, d, n, wd_W, wd_H, wd_b, bias=bias, init_scale=0.1, dtype=jnp.float64)
    params0 = init_batch(model, seed=1, count=3)
    traj = run_batch(model, dynamics, params0)
    b_mean = np.asarray(params0["b"]).mean(1) * _common_mode_decay(dynamics, wd_b) if bias else None
    _check_collapsed(traj, model, K, n, wd_W, wd_H, b_mean)


def test_above_threshold_flow_goes_to_zero():
    """K sqrt(n wd_W wd_H) = 4 sqrt(5) 0.3 = 2.68 >= 1: W, H -> 0, loss -> log K."""
    K, n, wd = 4, 5, 0.3
    assert theory.collapse_threshold(K, n, wd, wd) >= 1
    model = ufm_ce(K, 6, n, wd, wd, wd, init_scale=1.0, dtype=jnp.float64)
    dyn = DynamicsConfig(t1=500.0, rtol=1e-10, atol=1e-12, saves=10)
    traj = run_batch(model, dyn, init_batch(model, seed=0, count=3))
    assert np.all(np.asarray(traj.status) == 0)
    assert np.max(np.asarray(traj.observed["W_norm_sq"])[:, -1]) < 1e-12
    assert np.max(np.asarray(traj.observed["H_norm_sq"])[:, -1]) < 1e-12
    np.testing.assert_allclose(np.asarray(traj.observed["loss"])[:, -1], math.log(K), rtol=1e-12)


def test_at_threshold_flow_goes_to_zero():
    """Exactly K sqrt(n wd_W wd_H) = 1 (the boundary case of the theorem): the zero solution."""
    K, n = 4, 4
    wd = 1 / (K * math.sqrt(n))  # K sqrt(n) wd = 1
    model = ufm_ce(K, 5, n, wd, wd, wd, init_scale=0.5, dtype=jnp.float64)
    dyn = DynamicsConfig(t1=1e5, rtol=1e-10, atol=1e-12, saves=10)
    traj = run_batch(model, dyn, init_batch(model, seed=0, count=2))
    # at the threshold the decay is sublinear (degenerate Hessian at 0): ||W||^2 ~ 1/t
    assert np.max(np.asarray(traj.observed["W_norm_sq"])[:, -1]) < 1e-2
    w = np.asarray(traj.observed["W_norm_sq"])
    assert np.all(w[:, -1] < w[:, -4])
