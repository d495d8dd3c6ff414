"""Model losses against a direct NumPy transcription of the formulas; init and readout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow import models
from gflow.config import MODEL_NAMES, from_dict
from gflow.models import class_labels, ufm_ce, ulpm


def numpy_ce(W, H, b, labels):
    Z = H @ W.T + b
    Z = Z - Z.max(1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(1, keepdims=True))
    return -np.mean(logp[np.arange(len(labels)), labels])


@pytest.mark.parametrize("bias", [True, False])
def test_ufm_ce_loss_is_the_formula(bias):
    model = ufm_ce(3, 4, (2, 3, 4), wd_W=0.1, wd_H=0.2, wd_b=0.3, bias=bias, dtype=jnp.float64)
    params = model.init(jax.random.PRNGKey(3))
    W, H = np.asarray(params["W"]), np.asarray(params["H"])
    b = np.asarray(params["b"]) if bias else np.zeros(3)
    labels = class_labels((2, 3, 4))
    expected = numpy_ce(W, H, b, labels) + 0.05 * (W**2).sum() + 0.1 * (H**2).sum()
    expected += 0.15 * (b**2).sum()
    assert float(model.loss(params)) == pytest.approx(expected, rel=1e-13)
    assert set(params) == ({"W", "H", "b"} if bias else {"W", "H"})
    readout = model.readout(params)
    np.testing.assert_array_equal(readout.labels, labels)
    np.testing.assert_array_equal(readout.b, b)


def test_ulpm_is_plain_cross_entropy():
    model = ulpm(4, 3, 2, dtype=jnp.float64)
    params = model.init(jax.random.PRNGKey(0))
    assert set(params) == {"W", "H"}
    W, H = np.asarray(params["W"]), np.asarray(params["H"])
    expected = numpy_ce(W, H, np.zeros(4), class_labels((2,) * 4))
    assert float(model.loss(params)) == pytest.approx(expected, rel=1e-13)


def test_init_scale_seed_and_dtype():
    model = ufm_ce(10, 32, 20, init_scale=0.1, dtype=jnp.float32)
    a, b = model.init(jax.random.PRNGKey(0)), model.init(jax.random.PRNGKey(0))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["H"].shape == (200, 32) and a["W"].shape == (10, 32) and a["b"].shape == (10,)
    assert a["H"].dtype == jnp.float32
    assert np.std(np.asarray(a["H"])) == pytest.approx(0.1, rel=0.05)
    assert model.counts == (20,) * 10 and model.num_classes == 10


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_registry_builds_every_config_name(name):
    spec = models.registry.spec(name)
    # regression has no classes: its class axis holds the target dimensions
    sizes = {"classes": 3, "per_class": 2} if spec.option("classes") else {"targets": 3}
    section = {"name": name, **sizes}
    if spec.option("dim") is not None:  # LE: dim = K logits; wide-net: X
        section["dim"] = 4
    if spec.option("target_spectrum") is not None:
        section["target_spectrum"] = [3.0, 2.0, 1.0]
    cfg = from_dict({"model": section})
    for dtype in (jnp.float32, jnp.float64):
        model = models.from_config(cfg.model, dtype=dtype)
        assert model.name == name and model.num_classes == 3
        params = model.init(jax.random.PRNGKey(0))
        # every parameter, the loss and the readout keep the requested precision (x64 is on)
        assert {x.dtype for x in jax.tree.leaves(params)} == {jnp.dtype(dtype)}
        assert model.loss(params).dtype == dtype
        assert {x.dtype for x in model.readout(params)[:3]} == {jnp.dtype(dtype)}


def test_registry_passes_every_ufm_option():
    cfg = from_dict({"model": {"name": "ufm-mse", "classes": 3, "dim": 4, "per_class": [1, 2, 3],
                               "bias": False, "classifier": "fixed-etf", "classifier_norm": 2.0,
                               "wd_H": 0.25}})  # fmt: skip
    model = models.from_config(cfg.model, dtype=jnp.float64)
    params = model.init(jax.random.PRNGKey(1))
    assert set(params) == {"H"}
    W, H, b, labels = model.readout(params)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 2.0)
    H = np.asarray(H)
    expected = 0.5 * np.sum((H @ np.asarray(W).T - np.eye(3)[labels]) ** 2) / 6
    expected += 0.125 * np.sum(H**2)
    assert float(model.loss(params)) == pytest.approx(expected, rel=1e-13)


def test_cross_entropy_is_exact_at_large_margins():
    """At margin 40 the textbook logsumexp(z) - z_y cancels to 0 in float64; the margin form
    keeps CE = log(1 + 2 e^-40) ~ 2 e^-40 and a gradient that sums to zero over classes."""
    from gflow.models import cross_entropy

    logits = jnp.array([[40.0, 0.0, 0.0], [0.0, 1.0, -2.0]])
    onehot = jnp.eye(3)[jnp.array([0, 2])]
    ce = cross_entropy(logits, onehot)
    second = np.log(np.exp(0.0) + np.exp(1.0) + np.exp(-2.0)) + 2.0
    assert float(ce) == pytest.approx((2 * np.exp(-40.0) + second) / 2, rel=1e-14)
    big = cross_entropy(logits[:1], onehot[:1])
    assert float(big) == pytest.approx(2 * np.exp(-40.0), rel=1e-12)
    grad = jax.grad(lambda z: cross_entropy(z, onehot[:1]))(logits[:1])
    np.testing.assert_allclose(
        np.asarray(grad), [[-2 * np.exp(-40.0), np.exp(-40.0), np.exp(-40.0)]], rtol=1e-12
    )
    # and it agrees with optax where optax is exact
    import optax

    z = jnp.asarray(np.random.default_rng(0).standard_normal((6, 4)))
    y = jnp.eye(4)[jnp.array([0, 1, 2, 3, 0, 1])]
    assert float(cross_entropy(z, y)) == pytest.approx(
        float(optax.softmax_cross_entropy(z, y).mean()), rel=1e-13
    )
