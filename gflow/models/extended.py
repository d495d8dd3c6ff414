"""Extended unconstrained features model (Tirer & Bruna, ICML 2022): one more layer and a ReLU
between the free features and the classifier, MSE loss, weight decay on every layer:

    L = (1/(2N)) || relu(H1 W1^T) W2^T - Y ||_F^2
        + lam_W/2 ||W2||_F^2 + lam_W1/2 ||W1||_F^2 + lam_H/2 ||H1||_F^2

H1 (N, d) free features, W1 (hidden, d), W2 (K, hidden), Y one-hot. The classifier sees the
post-ReLU features H2 = relu(H1 W1^T) (N, hidden): ``readout`` reports (W2, H2). The paper's
global minimizers have NC1 in H1 and in H2 and post-ReLU class means forming an orthogonal frame
(non-negative features cannot form an ETF), with W2 aligned to them. ``observables`` add the NC
metrics of the pre-ReLU features Z = H1 W1^T and of H1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gflow import metrics
from gflow.models.base import Model, Readout, class_labels
from gflow.models.ufm import mean_squared_error


def extended_ufm(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    hidden: int,
    wd_W: float = 5e-3,
    wd_W1: float = 5e-3,
    wd_H: float = 5e-3,
    init_scale: float = 0.3,
    dtype=jnp.float32,
) -> Model:
    """Extended UFM with ``dim`` free-feature dimensions and a ReLU layer of width ``hidden``."""
    counts = (per_class,) * classes if isinstance(per_class, int) else tuple(per_class)
    labels = jnp.asarray(class_labels(counts))
    onehot = jax.nn.one_hot(labels, classes, dtype=dtype)

    def init(key):
        kh, k1, k2 = jax.random.split(key, 3)
        return {
            "H1": init_scale * jax.random.normal(kh, (len(labels), dim), dtype),
            "W1": init_scale * jax.random.normal(k1, (hidden, dim), dtype),
            "W2": init_scale * jax.random.normal(k2, (classes, hidden), dtype),
        }

    def readout(params):
        H2 = jax.nn.relu(params["H1"] @ params["W1"].T)
        return Readout(params["W2"], H2, jnp.zeros((classes,), H2.dtype), labels)

    def loss(params):
        W2, H2, _, _ = readout(params)
        return (
            mean_squared_error(H2 @ W2.T, onehot)
            + 0.5 * wd_W * jnp.sum(W2**2)
            + 0.5 * wd_W1 * jnp.sum(params["W1"] ** 2)
            + 0.5 * wd_H * jnp.sum(params["H1"] ** 2)
        )

    def observables(params):
        Z = params["H1"] @ params["W1"].T
        return {
            "nc1_pre": metrics.nc1(Z, labels, classes),
            "nc2_pre": metrics.nc2_features(Z, labels, classes),
            "nc1_free": metrics.nc1(params["H1"], labels, classes),
        }

    return Model("extended-ufm", init, loss, readout, counts, hidden, False, observables)
