"""Imbalanced classes: metrics weight class means by their own counts, and UFM-CE shows minority
collapse (Fang et al. 2021): as n_major/n_minor grows, the minority classifiers' angle shrinks."""

import jax.numpy as jnp
import numpy as np
import pytest

from gflow import metrics
from gflow.batch import init_batch, run_batch
from gflow.config import DynamicsConfig, from_dict
from gflow.models import class_labels, ufm_ce, ufm_mse


def test_metrics_with_unequal_counts(rng):
    counts = (1, 2, 5)
    labels = class_labels(counts)
    H = rng.standard_normal((8, 4))
    means = np.stack([H[labels == k].mean(0) for k in range(3)])
    np.testing.assert_allclose(metrics.class_means(jnp.asarray(H), jnp.asarray(labels), 3), means)
    # documented global mean: the mean of the class means (not of the samples)
    mu_G = means.mean(0)
    E = H - means[labels]
    sigma_W = E.T @ E / 8
    sigma_B = (means - mu_G).T @ (means - mu_G) / 3
    expected = np.trace(sigma_W @ np.linalg.pinv(sigma_B)) / 3
    assert float(metrics.nc1(jnp.asarray(H), jnp.asarray(labels), 3)) == pytest.approx(expected)


def test_imbalanced_counts_reach_the_model():
    cfg = from_dict({"model": {"name": "ufm-mse", "classes": 3, "per_class": [4, 2, 1]}})
    assert cfg.num_samples == 7
    model = ufm_mse(3, 4, (4, 2, 1))
    assert model.counts == (4, 2, 1) and list(model.labels) == [0, 0, 0, 0, 1, 1, 2]


def _cosine(W, k, l):
    return (
        W[..., k, :]
        @ W[..., l, :].T
        / (np.linalg.norm(W[..., k, :]) * np.linalg.norm(W[..., l, :]))
    )


def test_minority_collapse_trend_and_balanced_limit():
    """K = 4: classes 0, 1 have R*2 samples, classes 2, 3 have 2. Measured cosines of the two
    minority classifiers: -1/3 (R=1), -0.1745 (R=4), -0.0648 (R=16)."""
    cos_minor, cos_major = [], []
    for R in (1, 4, 16):
        model = ufm_ce(4, 6, (2 * R, 2 * R, 2, 2), dtype=jnp.float64)
        dyn = DynamicsConfig(t1=20_000.0, rtol=1e-9, atol=1e-11, saves=4, max_steps=50_000)
        traj = run_batch(model, dyn, init_batch(model, seed=0, count=2))
        assert np.all(np.asarray(traj.status) == 0)
        W = np.asarray(traj.final["W"])
        minor = [_cosine(W[i], 2, 3) for i in range(2)]
        np.testing.assert_allclose(minor[0], minor[1], atol=1e-6)  # the same optimum from each init
        cos_minor.append(minor[0])
        cos_major.append(_cosine(W[0], 0, 1))
    assert cos_minor[0] == pytest.approx(-1 / 3, abs=1e-6)  # balanced: the simplex ETF angle
    assert cos_major[0] == pytest.approx(-1 / 3, abs=1e-6)
    assert cos_minor[0] < cos_minor[1] < cos_minor[2]  # minority angle shrinks with the ratio
    assert cos_major[0] > cos_major[1] > cos_major[2]  # majority classifiers spread apart
    assert cos_minor[2] == pytest.approx(-0.0648, abs=2e-3)
