"""UFM with MSE (Tirer & Bruna 2022): gradient flow reaches the closed-form minimizer, in float64.

s = 1 - K sqrt(n lam_H lam_W). Without bias: H_bar W^T = s I (an orthogonal frame, not an ETF).
With an unregularized bias: b = 1/K and H_bar W^T = s (I - 11^T/K) (a simplex ETF). s <= 0: zero.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from gflow import metrics, theory
from gflow.batch import init_batch, run_batch
from gflow.config import DynamicsConfig
from gflow.models import ufm_mse

FLOW = DynamicsConfig(t1=20_000.0, rtol=1e-11, atol=1e-13, saves=10, max_steps=50_000)


def test_worked_values_k4_n5():
    """Worked values (Tirer & Bruna 2022): K=4, n=5, lam = 5e-3 -> s = 0.95527864045; with
    bias the diagonal of H_bar W^T is 0.71645898 and the off-diagonal -0.23881966, b = 0.25."""
    opt = theory.ufm_mse_optimum(4, 5, 5e-3, 5e-3, bias=True)
    assert opt.s == pytest.approx(0.95527864045, rel=1e-11)
    np.testing.assert_allclose(np.diag(opt.HW), 0.71645898, atol=5e-9)
    np.testing.assert_allclose(opt.HW[0, 1:], -0.23881966, atol=5e-9)
    np.testing.assert_allclose(opt.b, 0.25)
    assert theory.ufm_mse_optimum(4, 5, 5e-3, 5e-3, bias=False).HW[0, 0] == pytest.approx(opt.s)


@pytest.mark.parametrize(
    "K, d, n, wd_W, wd_H, bias",
    [(4, 6, 5, 5e-3, 5e-3, True), (4, 6, 5, 5e-3, 5e-3, False), (3, 3, 4, 1e-2, 2e-3, True)],
    ids=["worked-bias", "worked-no-bias", "d-eq-K-unequal-wd"],
)
def test_flow_reaches_the_closed_form(K, d, n, wd_W, wd_H, bias):
    model = ufm_mse(K, d, n, wd_W=wd_W, wd_H=wd_H, bias=bias, dtype=jnp.float64)
    traj = run_batch(model, FLOW, init_batch(model, seed=3, count=3))
    opt = theory.ufm_mse_optimum(K, n, wd_W, wd_H, bias)
    assert opt.collapsed and np.all(np.asarray(traj.status) == 0)
    for i in range(3):
        W, H, b, labels = model.readout({k: v[i] for k, v in traj.final.items()})
        means = np.asarray(metrics.class_means(H, labels, K))
        np.testing.assert_allclose(means @ np.asarray(W).T, opt.HW, atol=1e-8)
        np.testing.assert_allclose(np.asarray(W) @ np.asarray(W).T, opt.W_gram, atol=1e-8)
        np.testing.assert_allclose(b, opt.b, atol=1e-8)
        assert float(metrics.nc1(H, labels, K)) < 1e-12
        if not bias:  # orthogonal frame, classifier aligned with the raw class means
            assert float(metrics.orthogonal_frame_distance(W)) < 1e-8
            assert float(metrics.nc3_uncentred(W, H, labels, K)) < 1e-8
    np.testing.assert_allclose(np.asarray(traj.observed["loss"])[:, -1], opt.loss, rtol=1e-10)
    nc2 = np.asarray(traj.observed["nc2"])[:, -1]
    if bias:
        assert np.all(nc2 < 1e-8)  # a simplex ETF
    else:
        # an orthogonal frame: NC2 against the ETF is the distance of I/sqrt(K) from P/sqrt(K-1)
        expected = np.linalg.norm(np.eye(K) / math.sqrt(K) - (np.eye(K) - 1 / K) / math.sqrt(K - 1))
        np.testing.assert_allclose(nc2, expected, rtol=1e-8)


def test_zero_solution_when_s_nonpositive():
    K, n, wd = 4, 5, 0.3  # s = 1 - 4 sqrt(5) 0.3 < 0
    opt = theory.ufm_mse_optimum(K, n, wd, wd, bias=True)
    assert opt.s <= 0 and not opt.collapsed
    model = ufm_mse(K, 5, n, wd_W=wd, wd_H=wd, bias=True, init_scale=1.0, dtype=jnp.float64)
    traj = run_batch(model, DynamicsConfig(t1=2000.0, rtol=1e-10, atol=1e-12, saves=5),
                     init_batch(model, 0, 3))  # fmt: skip
    assert np.max(np.asarray(traj.observed["W_norm_sq"])[:, -1]) < 1e-12
    assert np.max(np.asarray(traj.observed["H_norm_sq"])[:, -1]) < 1e-12
    np.testing.assert_allclose(np.asarray(traj.final["b"]), 1 / K, atol=1e-10)
    np.testing.assert_allclose(np.asarray(traj.observed["loss"])[:, -1], opt.loss, rtol=1e-10)
