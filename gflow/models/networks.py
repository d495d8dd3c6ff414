"""Networks ending in L >= 2 linear layers, trained with weight decay (Jacot, Súkeník, Wang,
Mondelli: wide networks with weight decay provably exhibit neural collapse).

    f(x) = V_L V_{L-1} ... V_1 a(x),   L = (1/(2N)) ||F - Y||_F^2 + lam_W/2 sum ||weights||^2

- ``deep-linear``: a(x_i) = h_i are free features (N, d) with weight decay lam_H, V_l (d, d),
  V_L (K, d): a deep linear head on the unconstrained features model.
- ``wide-net``: a(x) = relu(W_0 x + b_0), a wide ReLU layer (width m) on a real data set
  (scikit-learn's digits, 10 classes, 8x8 images, no download), V_l (m, m), V_L (K, m).

The readout is (V_L, penultimate features V_{L-1}...V_1 a(x), b = 0). Observables follow the
paper's checks: training error and MSE, balancedness max_l ||V_{l+1}^T V_{l+1} - V_l V_l^T||_F of
consecutive linear layers (under gradient flow it decays exactly like e^{-2 lam_W t}), and the
largest condition number sigma_1/sigma_K among the linear layers.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from gflow import linalg
from gflow.models.base import Model, Readout, class_labels
from gflow.models.ufm import mean_squared_error

DATASETS = ("digits",)


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data / 16.0, data.target


def load_dataset(name: str, classes: int, per_class: int) -> np.ndarray:
    """Inputs (N, p) of the first ``per_class`` samples of each of the first ``classes`` classes,
    grouped by class (the order of :func:`class_labels`), pixels scaled to [0, 1]."""
    if name != "digits":
        raise ValueError(f"dataset: unknown {name!r}; valid: {', '.join(DATASETS)}")
    X, y = _digits()
    return np.concatenate([X[y == k][:per_class] for k in range(classes)])


def dataset_limits(name: str) -> tuple[int, int]:
    """(max classes, max samples per class) a data set can provide."""
    X, y = _digits()
    return int(y.max()) + 1, int(np.bincount(y).min())


def _linear_chain_observables(layers, features, labels, onehot, num_classes):
    """Training error/MSE, balancedness and conditioning of the linear layers V_1..V_L."""
    outputs = features @ layers[-1].T
    balance = [
        jnp.linalg.norm(upper.T @ upper - lower @ lower.T)
        for lower, upper in zip(layers[:-1], layers[1:], strict=True)
    ]
    conditions = []
    for V in layers:
        sigma = linalg.singular_values(V)
        conditions.append(sigma[0] / sigma[num_classes - 1])
    return {
        "train_mse": mean_squared_error(outputs, onehot),
        "train_error": jnp.mean((jnp.argmax(outputs, axis=1) != labels).astype(outputs.dtype)),
        "balancedness": jnp.max(jnp.stack(balance)),
        "condition_number": jnp.max(jnp.stack(conditions)),
    }


def _network(name, inputs_fn, first_params, counts, width, classes, depth, wd_W, extra_penalty,
             init_scale, dtype):  # fmt: skip
    labels = jnp.asarray(class_labels(counts))
    onehot = jax.nn.one_hot(labels, classes, dtype=dtype)
    shapes = [(width, width)] * (depth - 1) + [(classes, width)]

    def init(key):
        keys = jax.random.split(key, depth + 1)
        params = first_params(keys[0])
        params["linear"] = [
            init_scale / math.sqrt(shape[1]) * jax.random.normal(k, shape, dtype)
            for k, shape in zip(keys[1:], shapes, strict=True)
        ]
        return params

    def penultimate(params):
        a = inputs_fn(params)
        for V in params["linear"][:-1]:
            a = a @ V.T
        return a

    def readout(params):
        H = penultimate(params)
        return Readout(params["linear"][-1], H, jnp.zeros((classes,), H.dtype), labels)

    def loss(params):
        outputs = penultimate(params) @ params["linear"][-1].T
        decay = sum(jnp.sum(V**2) for V in params["linear"])
        return mean_squared_error(outputs, onehot) + 0.5 * wd_W * decay + extra_penalty(params)

    def observables(params):
        return _linear_chain_observables(
            params["linear"], penultimate(params), labels, onehot, classes
        )

    return Model(name, init, loss, readout, counts, width, False, observables)


def deep_linear(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    depth: int = 3,
    wd_W: float = 5e-3,
    wd_H: float = 5e-3,
    init_scale: float = 1.0,
    dtype=jnp.float32,
) -> Model:
    """Free features H (N, dim) -> ``depth`` linear layers; weight decay wd_W on V, wd_H on H.

    Init: H entries init_scale N(0, 1); V_l entries init_scale N(0, 1)/sqrt(fan_in).
    """
    counts = (per_class,) * classes if isinstance(per_class, int) else tuple(per_class)
    num_samples = sum(counts)
    return _network(
        "deep-linear",
        lambda p: p["H"],
        lambda key: {"H": init_scale * jax.random.normal(key, (num_samples, dim), dtype)},
        counts, dim, classes, depth, wd_W,
        lambda p: 0.5 * wd_H * jnp.sum(p["H"] ** 2),
        init_scale, dtype,
    )  # fmt: skip


def wide_net(
    classes: int,
    per_class: int,
    width: int,
    depth: int = 2,
    wd_W: float = 1e-3,
    dataset: str = "digits",
    init_scale: float = 1.0,
    dtype=jnp.float32,
) -> Model:
    """relu(W_0 x + b_0) of width ``width`` on ``dataset``, then ``depth`` linear layers.

    Weight decay wd_W on every weight matrix (W_0 included, not b_0). Init: entries
    init_scale N(0, 1)/sqrt(fan_in) (times sqrt(2) for the ReLU layer), b_0 = 0.
    """
    X = jnp.asarray(load_dataset(dataset, classes, per_class), dtype)
    counts = (per_class,) * classes

    def first(key):
        scale = init_scale * math.sqrt(2.0 / X.shape[1])  # a Python float keeps the dtype
        W0 = scale * jax.random.normal(key, (width, X.shape[1]), dtype)
        return {"W0": W0, "b0": jnp.zeros((width,), dtype)}

    return _network(
        "wide-net",
        lambda p: jax.nn.relu(X @ p["W0"].T + p["b0"]),
        first, counts, width, classes, depth, wd_W,
        lambda p: 0.5 * wd_W * jnp.sum(p["W0"] ** 2),
        init_scale, dtype,
    )  # fmt: skip
