"""KKT residual of the minimum-norm separation problem (Ji et al. 2022)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import nnls

from gflow import metrics, theory
from gflow.batch import init_batch, run_batch
from gflow.config import DynamicsConfig
from gflow.models import class_labels, ulpm

K, N_PER = 4, 5
LABELS = jnp.asarray(class_labels((N_PER,) * K))


def balanced_point(c, scale=3.0):
    """W a scaled simplex ETF, h_i = c w_{y_i}/sqrt(n): a KKT point exactly when c = 1."""
    W = scale * jnp.asarray(theory.simplex_etf(K, 6))
    return W, c * W[LABELS] / np.sqrt(N_PER)


def test_zero_at_the_collapsed_kkt_point():
    """Rounding-level at the KKT point on any CPU (~4e-16 measured; the residual vector is
    formed directly, not by its Gram expansion, whose floor was ~1e-8: 2e-8 on AMD), while a
    point just off it (c = 1.001) has the hand-computed residual ~1e-3."""
    W, H = balanced_point(1.0)
    residual, slackness, converged = metrics.kkt_residual(W, H, LABELS, K, return_converged=True)
    near, _ = metrics.kkt_residual(*balanced_point(1.001), LABELS, K)
    assert bool(converged)
    assert float(residual) < 1e-11 and float(slackness) < 1e-12
    assert float(near) == pytest.approx((1.001**2 - 1) / (1 + 1.001**2), rel=1e-6)
    assert float(near) > 1e7 * float(residual)
    # and it is the max-margin point: normalized margin 1/(sqrt(n)(K-1))
    gamma = metrics.normalized_margin(W, jnp.zeros(K), H, LABELS)
    assert float(gamma) == pytest.approx(theory.ulpm_max_margin(K, N_PER), rel=1e-12)


@pytest.mark.parametrize("c", [0.5, 2.0, 3.0])
def test_wrong_balance_has_the_hand_computed_residual(c):
    """h_i = c w_{y_i}/sqrt(n): symmetric multipliers are optimal, and minimizing over their
    common value gives the relative residual |1 - c^2| / (1 + c^2) (0.6 for c = 2)."""
    residual, _ = metrics.kkt_residual(*balanced_point(c), LABELS, K)
    assert float(residual) == pytest.approx(abs(1 - c**2) / (1 + c**2), rel=1e-6)


def test_matches_scipy_nnls_on_a_separating_point(rng):
    W, H = balanced_point(1.0)
    W = W + 0.05 * jnp.asarray(rng.standard_normal(W.shape))
    H = H + 0.05 * jnp.asarray(rng.standard_normal(H.shape))
    residual, _ = metrics.kkt_residual(W, H, LABELS, K, iters=20_000)

    def constraints(theta):
        W_, H_ = theta
        z = H_ @ W_.T
        return (z[jnp.arange(K * N_PER), LABELS][:, None] - z).reshape(-1)

    others = ~np.asarray(jax.nn.one_hot(LABELS, K, dtype=bool)).reshape(-1)
    scale = np.sqrt(np.asarray(constraints((W, H)))[others].min())
    theta = (W / scale, H / scale)
    J = jax.jacobian(constraints)(theta)
    G = np.concatenate([np.asarray(j).reshape(len(others), -1) for j in J], axis=1)
    active = others & (np.asarray(constraints(theta)) <= 1.01)
    flat = np.concatenate([np.asarray(x).ravel() for x in theta])
    _, norm = nnls(G[active].T, flat)
    assert float(residual) == pytest.approx(norm / np.linalg.norm(flat), rel=1e-8)
    assert float(residual) > 0.1  # a separating point that is not a KKT point


def test_stops_on_its_tolerance(rng):
    """The NNLS fit stops once converged (same residual as running it to its fixed point) and
    says whether it converged: not within a cap too small for it."""
    W, H = balanced_point(1.0)
    W = W + 0.05 * jnp.asarray(rng.standard_normal(W.shape))
    H = H + 0.05 * jnp.asarray(rng.standard_normal(H.shape))
    residual, _, converged = metrics.kkt_residual(W, H, LABELS, K, return_converged=True)
    exact, _ = metrics.kkt_residual(W, H, LABELS, K, iters=20_000, tol=0.0)
    assert bool(converged) and float(residual) == pytest.approx(float(exact), rel=1e-10)
    assert not bool(metrics.kkt_residual(W, H, LABELS, K, iters=2, return_converged=True)[2])


def test_nan_where_not_separating_and_rotation_invariant(rng):
    W, H = balanced_point(1.0)
    assert np.isnan(float(metrics.kkt_residual(-W, H, LABELS, K)[0]))
    W2, H2 = balanced_point(2.0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    a = metrics.kkt_residual(W2, H2, LABELS, K)[0]
    b = metrics.kkt_residual(W2 @ Q, H2 @ Q, LABELS, K)[0]
    assert float(a) == pytest.approx(float(b), rel=1e-10)


def test_falls_along_the_ulpm_flow():
    """Measured (K=4, n=5, d=8): ~0.97 at t=1e2, 0.7-0.95 at 1e4, 0.3-0.7 at 1e6, 0.08-0.22 at
    1e8 (measured: 0.02-0.03 at t=1e30, roughly like 1/log t)."""
    model = ulpm(K, 8, N_PER, dtype=jnp.float64)
    dyn = DynamicsConfig(t1=1e8, rtol=1e-8, atol=1e-10, saves=9)  # t = 0, 1, 13.9, ..., 1e8
    traj = run_batch(model, dyn, init_batch(model, seed=0, count=4))
    kkt = np.asarray(traj.observed["kkt_residual"])
    late = kkt[:, 4:]  # from t ~ 2.7e3 on, every init separates
    assert np.all(np.isfinite(late))
    assert np.all(np.diff(late, axis=1) < 0)
    assert np.all(late[:, -1] < 0.3)
    assert np.all(np.asarray(traj.observed["kkt_slackness"])[:, 4:] < 1e-2)
