"""NC metrics: known values on hand-built inputs and the invariances of their definitions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow import metrics, theory


def collapsed_point(K=4, d=6, n=3, scale_W=2.0, scale_H=0.5):
    """W a scaled simplex ETF, every feature exactly its class's classifier row times scale_H."""
    E = jnp.asarray(theory.simplex_etf(K, d))
    labels = jnp.repeat(jnp.arange(K), n)
    return scale_W * E, scale_H * E[labels], jnp.zeros(K), labels


def noisy_point(rng, K=4, d=6, n=5, noise=0.3):
    W, H, b, labels = collapsed_point(K, d, n)
    H = H + noise * jnp.asarray(rng.standard_normal(H.shape))
    W = W + noise * jnp.asarray(rng.standard_normal(W.shape))
    return W, H, jnp.asarray(rng.standard_normal(K)) * noise, labels


def test_perfect_etf_gives_zero():
    W, H, b, labels = collapsed_point()
    K = 4
    assert float(metrics.nc1(H, labels, K)) == pytest.approx(0.0, abs=1e-28)
    assert float(metrics.nc2(W)) == pytest.approx(0.0, abs=1e-14)
    assert float(metrics.nc2_features(H, labels, K)) == pytest.approx(0.0, abs=1e-14)
    assert float(metrics.nc3(W, H, labels, K)) == pytest.approx(0.0, abs=1e-14)
    assert float(metrics.nc3_duality(W, H, labels, K)) == pytest.approx(0.0, abs=1e-14)
    assert float(metrics.nc4(W, b, H, labels, K)) == 0.0
    assert float(metrics.equinorm(W)) == pytest.approx(0.0, abs=1e-14)
    assert float(metrics.equiangularity(W)) == pytest.approx(0.0, abs=1e-14)
    assert float(metrics.max_angle_deviation(W)) == pytest.approx(0.0, abs=1e-14)
    assert float(metrics.bias_relation(W, b, H, labels, K)) == pytest.approx(0.0, abs=1e-14)


def test_nc1_matches_the_trace_definition(rng):
    """NC1 = (1/K) Tr(Sigma_W Sigma_B^+) computed literally with the (d, d) pseudo-inverse."""
    W, H, b, labels = noisy_point(rng, K=5, d=7, n=6)
    H, labels, K, N = np.asarray(H), np.asarray(labels), 5, 30
    means = np.stack([H[labels == k].mean(0) for k in range(K)])
    mu_G = means.mean(0)
    E = H - means[labels]
    sigma_W = E.T @ E / N
    sigma_B = (means - mu_G).T @ (means - mu_G) / K
    expected = np.trace(sigma_W @ np.linalg.pinv(sigma_B)) / K
    assert float(metrics.nc1(jnp.asarray(H), jnp.asarray(labels), K)) == pytest.approx(
        expected, rel=1e-10
    )
    quotient = np.trace(sigma_W) / np.trace(sigma_B)
    assert float(metrics.nc1_quotient(jnp.asarray(H), jnp.asarray(labels), K)) == pytest.approx(
        quotient, rel=1e-12
    )


def test_hand_computed_case():
    """K = 2, d = 1: features -1, -3 (class 0) and 1, 3 (class 1); W = [[-1], [1]], b = 0.

    means -2, 2, mu_G = 0; Sigma_W = 1, Sigma_B = 4 -> NC1 = (1/2) * 1/4 = 1/8.
    W W^T = [[1, -1], [-1, 1]] / 2 = P / sqrt(1): NC2 = 0; W^T/||W|| = M/||M||: NC3 = 0.
    Margins z_y - z_other = 2 |h|: min 2; normalized by (2/2 + 20/2) = 11 -> 2/11.
    CDNV: sigma_k^2 = 1, ||mu_0 - mu_1||^2 = 16 -> (1 + 1)/(2 * 16) = 1/16.
    """
    H = jnp.array([[-1.0], [-3.0], [1.0], [3.0]])
    labels = jnp.array([0, 0, 1, 1])
    W, b = jnp.array([[-1.0], [1.0]]), jnp.zeros(2)
    assert float(metrics.nc1(H, labels, 2)) == pytest.approx(1 / 8, rel=1e-14)
    assert float(metrics.nc1_quotient(H, labels, 2)) == pytest.approx(1 / 4, rel=1e-14)
    assert float(metrics.nc2(W)) == pytest.approx(0.0, abs=1e-15)
    assert float(metrics.nc3(W, H, labels, 2)) == pytest.approx(0.0, abs=1e-15)
    assert float(metrics.margin(W, b, H, labels)) == pytest.approx(2.0, rel=1e-15)
    assert float(metrics.normalized_margin(W, b, H, labels)) == pytest.approx(2 / 11, rel=1e-15)
    assert float(metrics.cdnv(H, labels, 2)) == pytest.approx(1 / 16, rel=1e-15)
    # NC4: a classifier pointing the wrong way disagrees with the nearest mean everywhere
    assert float(metrics.nc4(-W, b, H, labels, 2)) == 1.0
    # NC2 of an orthogonal frame (K = 2): ||I/sqrt2 - P||_F with P = [[.5,-.5],[-.5,.5]]
    expected = math.sqrt(2 * (1 / math.sqrt(2) - 0.5) ** 2 + 2 * 0.5**2)
    assert float(metrics.nc2(jnp.eye(2))) == pytest.approx(expected, rel=1e-14)


# jitted (one compile per shape and dtype): op by op, each metric's ops would compile one by one
_evaluate = jax.jit(metrics.evaluate, static_argnums=4)


def _all(W, H, b, labels, K):
    return _evaluate(W, H, b, labels, K)


SCALE_FREE = ("nc1", "nc2", "nc3", "nc4", "nc1_quotient", "nc2_features", "nc3_duality", "cdnv")


def test_rotation_invariance(rng):
    W, H, b, labels = noisy_point(rng)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    Q = jnp.asarray(Q)
    before, after = _all(W, H, b, labels, 4), _all(W @ Q, H @ Q, b, labels, 4)
    for name, value in before.items():
        assert float(after[name]) == pytest.approx(float(value), rel=1e-10, abs=1e-13), name


def test_class_permutation_invariance(rng):
    W, H, b, labels = noisy_point(rng)
    perm = jnp.asarray(rng.permutation(4))
    # relabel class k as perm[k]: classifier rows and biases move with their class
    W2 = jnp.zeros_like(W).at[perm].set(W)
    b2 = jnp.zeros_like(b).at[perm].set(b)
    before, after = _all(W, H, b, labels, 4), _all(W2, H, b2, perm[labels], 4)
    for name, value in before.items():
        assert float(after[name]) == pytest.approx(float(value), rel=1e-10, abs=1e-13), name


def test_sample_order_invariance(rng):
    W, H, b, labels = noisy_point(rng)
    order = jnp.asarray(rng.permutation(H.shape[0]))
    before, after = _all(W, H, b, labels, 4), _all(W, H[order], b, labels[order], 4)
    for name, value in before.items():
        assert float(after[name]) == pytest.approx(float(value), rel=1e-10, abs=1e-13), name


def test_scale_invariance(rng):
    W, H, b, labels = noisy_point(rng)
    before, after = _all(W, H, b, labels, 4), _all(3.0 * W, 0.2 * H, 0.6 * b, labels, 4)
    for name in SCALE_FREE:
        assert float(after[name]) == pytest.approx(float(before[name]), rel=1e-10), name


def test_vmapped_equals_unvmapped(rng):
    points = [noisy_point(rng) for _ in range(5)]
    Ws, Hs, bs = (jnp.stack([p[i] for p in points]) for i in range(3))
    labels = points[0][3]
    batched = jax.jit(jax.vmap(lambda W, H, b: _all(W, H, b, labels, 4)))(Ws, Hs, bs)
    for i, (W, H, b, _) in enumerate(points):
        single = _all(W, H, b, labels, 4)
        for name, value in single.items():
            assert float(batched[name][i]) == pytest.approx(float(value), rel=1e-10, abs=1e-14)


def test_metrics_are_nonnegative(rng):
    W, H, b, labels = noisy_point(rng, noise=1.0)
    values = _all(W, H, b, labels, 4)
    for name in SCALE_FREE + ("equinorm_means", "equiangular_classifier", "bias_relation"):
        assert float(values[name]) >= 0.0, name


def test_float32_agrees_with_float64(rng):
    """In full float32 products (on GPUs JAX's default for float32 is TF32, ~3e-4 here)."""
    W, H, b, labels = noisy_point(rng)
    v64 = _all(W, H, b, labels, 4)
    with jax.default_matmul_precision("highest"):
        v32 = _all(W.astype(jnp.float32), H.astype(jnp.float32), b.astype(jnp.float32), labels, 4)
    for name, value in v64.items():
        assert v32[name].dtype == jnp.float32
        assert float(v32[name]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), name
