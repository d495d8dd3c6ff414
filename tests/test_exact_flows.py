"""Gradient flows with exact solutions, as integrator tests: gflow's ODE (Tsit5, rtol = atol =
1e-12, float64) against the formula at every saved time.

Conventions: the UFM-MSE loss is L = (1/(2N)) ||H W^T + 1 b^T - Y||_F^2 + wd_W/2 ||W||^2 +
wd_H/2 ||H||^2 [+ wd_b/2 ||b||^2], Y (N, K) one-hot, the flow d theta/dt = -grad L, so
dH/dt = -(1/N) R W - wd_H H and dW/dt = -(1/N) R^T H - wd_W W with R = H W^T + 1 b^T - Y.

1. Logistic modes (MSE, no bias, wd_W = wd_H = wd; derived as in Saxe et al.'s deep linear
   solutions): from H(0) = Q diag(sqrt u(0)) R^T, W(0) = diag(sqrt u(0)) R^T with Q = Y D^(-1/2)
   (D = diag(n_k)) and R^T R = I, both stay of that form, Z = H W^T = Q diag(u), and each mode
   obeys du/dt = (2/N) u (u_inf - u), u_inf = sqrt(n_k) - N wd:
   u(t) = u_inf / (1 + (u_inf/u(0) - 1) exp(-2 u_inf t/N)); a mode with u_inf < 0 dies.
2. Balancedness (any loss of Z = H W^T and b): d/dt (W^T W - H^T H) = -2 wd_W W^T W +
   2 wd_H H^T H, both (d, d); with equal decay (W^T W - H^T H)(t) = exp(-2 wd t) (...)(0).
3. Mixon, Parshall & Pi 2020 (arXiv 2011.11619), unregularized MSE with bias, balanced: the
   set S = {h_i = w_(y_i)/sqrt(n), b = 1/K, sum_k w_k = 0} is invariant and on it G = W W^T
   obeys dG/dt = (2/N) G (sqrt(n) - G), so with P = I - 11^T/K and G(0) of rank K - 1,
   G(t)^+ = P/sqrt(n) + exp(-2 sqrt(n) t/N) (G(0)^+ - P/sqrt(n)) -> G = sqrt(n) P. S does not
   attract: a flow kicked off it converges to another zero-loss point, away from S.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow.dynamics import gradient_flow
from gflow.models.ufm import ufm_ce, ufm_mse

TIGHT = dict(rtol=1e-12, atol=1e-12, max_steps=200_000)


@jax.jit
def solve(model, params0, times):
    """The flow of ``model`` from ``params0``, the full state saved at ``times`` (traced: one
    compilation per model structure serves every hyperparameter and start)."""
    observe = lambda p: {"loss": model.loss(p), "state": p}  # noqa: E731
    traj = gradient_flow(model.loss, params0, times, observe, **TIGHT)
    return traj.observed["state"], traj.status


def onehot(counts):
    return np.repeat(np.eye(len(counts)), counts, axis=0)


def orthonormal(rows, cols, seed):
    """A (rows, cols) matrix with orthonormal columns."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((rows, cols)))
    return q


def logistic(u0, u_inf, t, N):
    return u_inf / (1 + (u_inf / u0 - 1) * np.exp(-2 * u_inf * t / N))


@pytest.mark.parametrize(
    "counts, wd, expected_u20",
    [
        # K = 4, n = 5, wd = 5e-3: u_inf = sqrt(5) - 0.1 = 2.1360679775 for every mode
        ((5, 5, 5, 5), 5e-3, (0.0693790698, 0.1344520899, 0.3075022803, 0.5385570937)),
        # imbalanced, N wd = 1.2: the n = 1 mode has u_inf = -0.2 and dies
        ((6, 3, 2, 1), 0.1, None),
    ],
)
def test_mse_spectral_init_follows_logistic_modes(counts, wd, expected_u20):
    K, d, N = len(counts), 6, sum(counts)
    model = ufm_mse(K, d, counts, wd_W=wd, wd_H=wd, bias=False, dtype=jnp.float64)
    u0 = np.array([1.0, 2.0, 5.0, 10.0]) * 1e-3
    Y = onehot(counts)
    Q = Y / np.sqrt(counts)
    R = orthonormal(d, K, seed=0)
    params0 = {"H": (Q * np.sqrt(u0)) @ R.T, "W": np.sqrt(u0)[:, None] * R.T}
    times = np.linspace(0.0, 80.0, 17)
    states, status = solve(model, params0, jnp.asarray(times))
    assert int(status) == 0
    u_inf = np.sqrt(counts) - N * wd
    u = logistic(u0, u_inf, times[:, None], N)  # (T, K)
    Z = np.einsum("tnd,tkd->tnk", states["H"], states["W"])
    assert np.abs(Z - np.einsum("nk,tk->tnk", Q, u)).max() < 1e-10
    if expected_u20 is not None:  # the formula itself, at t = 20
        assert np.allclose(u_inf, 2.1360679775, atol=1e-10)
        assert np.allclose(u[times == 20.0][0], expected_u20, atol=1e-10)
    else:
        assert np.all(np.diff(u[:, 3]) < 0) and u[-1, 3] < 0.1 * u0[3]  # it dies
        assert u[-1, 0] > 0.9 * u_inf[0]  # the largest class's mode grows to u_inf


@pytest.mark.parametrize(
    "make",
    [
        lambda: ufm_mse(3, 4, 4, wd_W=5e-3, wd_H=5e-3, wd_b=0.0, dtype=jnp.float64),
        lambda: ufm_ce(3, 4, 4, wd_W=5e-3, wd_H=5e-3, wd_b=5e-3, dtype=jnp.float64),
    ],
    ids=["mse", "ce"],
)
def test_balancedness_decays_like_exp_minus_2_wd_t(make):
    model, wd = make(), 5e-3
    params0 = jax.tree.map(lambda x: 2 * x, model.init(jax.random.PRNGKey(3)))
    times = np.linspace(0.0, 200.0, 11)
    states, status = solve(model, params0, jnp.asarray(times))
    assert int(status) == 0
    W, H = np.asarray(states["W"]), np.asarray(states["H"])
    gap = np.einsum("tkd,tke->tde", W, W) - np.einsum("tnd,tne->tde", H, H)
    assert np.abs(gap[0]).max() > 0.1  # an unbalanced start
    expected = np.exp(-2 * wd * times)[:, None, None] * gap[0]
    assert np.abs(gap - expected).max() < 1e-10
    # the flow moved: the loss of Z changed the factors themselves a lot
    assert np.abs(W[-1] - W[0]).max() > 0.1


def _mixon_start(K, d, n, seed):
    """A point of S: W with rows summing to 0 (rank K - 1), h_i = w_(y_i)/sqrt(n), b = 1/K."""
    W = np.random.default_rng(seed).standard_normal((K, d))
    W -= W.mean(axis=0)
    Y = onehot((n,) * K)
    return {"W": W, "H": Y @ W / np.sqrt(n), "b": np.full(K, 1.0 / K)}


def _distance_to_mixon_set(state, n):
    """The residual of S's equations: sqrt(||H - Y W/sqrt(n)||^2 + ||b - 1/K||^2 +
    ||sum_k w_k||^2), per saved time (0 exactly on S)."""
    W, H, b = (np.asarray(state[k]) for k in ("W", "H", "b"))
    K = W.shape[1]
    Y = onehot((n,) * K)
    parts = (
        np.sum((H - np.einsum("nk,tkd->tnd", Y, W) / np.sqrt(n)) ** 2, axis=(1, 2)),
        np.sum((b - 1.0 / K) ** 2, axis=1),
        np.sum(np.sum(W, axis=1) ** 2, axis=1),
    )
    return np.sqrt(sum(parts))


def test_mixon_invariant_set_and_its_gram_flow():
    K, d, n = 3, 4, 4
    N = K * n
    model = ufm_mse(K, d, n, wd_W=0.0, wd_H=0.0, wd_b=0.0, dtype=jnp.float64)
    params0 = _mixon_start(K, d, n, seed=1)
    times = np.linspace(0.0, 40.0, 11)
    states, status = solve(model, params0, jnp.asarray(times))
    assert int(status) == 0
    assert _distance_to_mixon_set(states, n).max() < 1e-10
    W = np.asarray(states["W"])
    G = np.einsum("tkd,tld->tkl", W, W)
    P = np.eye(K) - 1.0 / K
    decay = np.exp(-2 * np.sqrt(n) * times / N)[:, None, None]
    G_pinv = P / np.sqrt(n) + decay * (np.linalg.pinv(G[0]) - P / np.sqrt(n))
    assert np.abs(np.linalg.pinv(G_pinv) - G).max() < 1e-10
    assert np.abs(G[-1] - np.sqrt(n) * P).max() < 1e-4  # on its way to sqrt(n) P

    # a kick off S: the flow does not bring it back (S does not attract)
    kick = jax.tree.map(
        lambda x, k: x + 1e-2 * jax.random.normal(k, x.shape, jnp.float64),
        params0,
        dict(zip(params0, jax.random.split(jax.random.PRNGKey(7), 3), strict=True)),
    )
    kicked, status = solve(model, kick, jnp.asarray(times))
    assert int(status) == 0
    away = _distance_to_mixon_set(kicked, n)
    assert away[0] > 1e-3
    assert away[-1] > 0.1 * away[0]
