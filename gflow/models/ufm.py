"""Unconstrained features model with cross-entropy and weight decay (Zhu et al., NeurIPS 2021).

    L(W, H, b) = (1/N) sum_i CE(W h_i + b, y_i) + lam_W/2 ||W||_F^2 + lam_H/2 ||H||_F^2
                 + lam_b/2 ||b||^2,

W (K, d) the classifier, H (N, d) free features as rows, b (K,) the bias. With balanced classes
and K sqrt(n lam_W lam_H) < 1 every global minimizer is a simplex ETF (see :mod:`gflow.theory`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gflow.models.base import Model, Readout, class_labels, cross_entropy


def ufm_ce(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    wd_W: float = 5e-3,
    wd_H: float = 5e-3,
    wd_b: float = 5e-3,
    bias: bool = True,
    init_scale: float = 0.1,
    dtype=jnp.float32,
    name: str = "ufm-ce",
) -> Model:
    """UFM-CE. ``per_class`` is n (balanced) or a tuple of K counts.

    ``init(key)`` draws W, H (and b) i.i.d. ``init_scale * N(0, 1)``; without a bias, b is not a
    parameter and ``readout`` reports b = 0.
    """
    counts = (per_class,) * classes if isinstance(per_class, int) else tuple(per_class)
    labels = jnp.asarray(class_labels(counts))
    onehot = jax.nn.one_hot(labels, classes, dtype=dtype)
    num_samples = len(labels)

    def init(key):
        kw, kh, kb = jax.random.split(key, 3)
        params = {
            "W": init_scale * jax.random.normal(kw, (classes, dim), dtype),
            "H": init_scale * jax.random.normal(kh, (num_samples, dim), dtype),
        }
        if bias:
            params["b"] = init_scale * jax.random.normal(kb, (classes,), dtype)
        return params

    def loss(params):
        W, H = params["W"], params["H"]
        logits = H @ W.T
        value = 0.5 * wd_W * jnp.sum(W**2) + 0.5 * wd_H * jnp.sum(H**2)
        if bias:
            logits = logits + params["b"]
            value = value + 0.5 * wd_b * jnp.sum(params["b"] ** 2)
        return cross_entropy(logits, onehot) + value

    def readout(params):
        b = params["b"] if bias else jnp.zeros((classes,), params["W"].dtype)
        return Readout(params["W"], params["H"], b, labels)

    return Model(name, init, loss, readout, counts, dim, bias)
