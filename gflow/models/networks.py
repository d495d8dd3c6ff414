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

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from gflow import linalg
from gflow.models.base import Model, Readout, counts_of, scalars, standard_normal
from gflow.models.options import (
    CLASSES,
    DIM,
    MINIBATCH_KINDS,
    NO_BIAS,
    ORTHOGONAL_METRICS,
    PER_CLASS,
    STRUCTURE,
    WD_H,
    WD_W,
    ModelSpec,
    Option,
    OptionError,
)  # fmt: skip
from gflow.models.ufm import mean_squared_error

DATASETS = ("digits",)


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.data / 16.0, data.target


def load_dataset(name: str, classes: int, per_class: int) -> np.ndarray:
    """The inputs of a data set's first samples, grouped by class (the order of
    :func:`gflow.models.base.class_labels`), pixels scaled to [0, 1].

    Args:
        name: the data set ("digits": scikit-learn's).
        classes: the first ``classes`` classes.
        per_class: the first ``per_class`` samples of each.

    Returns:
        X, (N, p) with N = classes x per_class.

    Raises:
        ValueError: an unknown data set.
    """
    if name != "digits":
        raise ValueError(f"dataset: unknown {name!r}; valid: {', '.join(DATASETS)}")
    X, y = _digits()
    return np.concatenate([X[y == k][:per_class] for k in range(classes)])


def dataset_limits(name: str) -> tuple[int, int]:
    """What a data set can provide.

    Args:
        name: the data set.

    Returns:
        (max classes, max samples per class).
    """
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


class LinearHead(Model):
    """Inputs a(x) (free features, or a ReLU layer on data) followed by ``depth`` linear layers
    V_1 .. V_L of width ``width``, MSE loss, weight decay ``wd_W`` on every weight matrix."""

    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    wd_W: Array
    init_scale: Array

    @property
    def dim(self) -> int:
        return self.width

    def inputs(self, params):
        """a(x), (N, width): what the linear layers act on."""
        raise NotImplementedError

    def first_params(self, key) -> dict:
        """The parameters of a(x), a dict (``init`` adds ``"linear"``)."""
        raise NotImplementedError

    def extra_penalty(self, params):
        """The weight decay of a(x)'s parameters, a scalar."""
        raise NotImplementedError

    def init(self, key):
        """``first_params(key)`` and ``"linear": [V_1 (width, width), ..., V_L (K, width)]``,
        V_l entries init_scale N(0, 1)/sqrt(width)."""
        depth, width, K = self.depth, self.width, self.num_classes
        shapes = [(width, width)] * (depth - 1) + [(K, width)]
        keys = jax.random.split(key, depth + 1)
        params = self.first_params(keys[0])
        params["linear"] = [
            self.init_scale / math.sqrt(shape[1]) * standard_normal(k, shape, self.dtype)
            for k, shape in zip(keys[1:], shapes, strict=True)
        ]
        return params

    def penultimate(self, params):
        """The features V_{L-1} ... V_1 a(x), (N, width)."""
        a = self.inputs(params)
        for V in params["linear"][:-1]:
            a = a @ V.T
        return a

    def readout(self, params):
        """(V_L, the penultimate features, b = 0, labels)."""
        H = self.penultimate(params)
        zeros = jnp.zeros((self.num_classes,), H.dtype)
        return Readout(params["linear"][-1], H, zeros, jnp.asarray(self.labels))

    def weighted_loss(self, params, weights):
        """The MSE of the outputs with per-sample weights w (N,), plus lam_W/2 sum_l ||V_l||^2
        and :meth:`extra_penalty`."""
        outputs = self.penultimate(params) @ params["linear"][-1].T
        decay = sum(jnp.sum(V**2) for V in params["linear"])
        fit = mean_squared_error(outputs, self.onehot(), 1, weights)
        return fit + 0.5 * self.wd_W * decay + self.extra_penalty(params)

    def observables(self, params):
        """``train_mse``, ``train_error``, ``balancedness`` (max_l ||V_{l+1}^T V_{l+1} -
        V_l V_l^T||_F) and ``condition_number`` (the largest sigma_1/sigma_K of the V_l)."""
        return _linear_chain_observables(
            params["linear"], self.penultimate(params), jnp.asarray(self.labels),
            self.onehot(), self.num_classes,
        )  # fmt: skip


class DeepLinear(LinearHead):
    """Free features H (N, width) -> ``depth`` linear layers; weight decay wd_H on H."""

    wd_H: Array

    name = "deep-linear"

    def inputs(self, params):
        """H."""
        return params["H"]

    def first_params(self, key):
        """``{"H": (N, width)}``, entries init_scale N(0, 1)."""
        shape = (self.num_samples, self.width)
        return {"H": self.init_scale * standard_normal(key, shape, self.dtype)}

    def extra_penalty(self, params):
        """lam_H/2 ||H||^2."""
        return 0.5 * self.wd_H * jnp.sum(params["H"] ** 2)


class WideNet(LinearHead):
    """relu(W_0 x + b_0) of width ``width`` on the inputs ``X`` (N, p; data, a leaf), then
    ``depth`` linear layers; wd_W on W_0 too (not on b_0)."""

    dataset: str = eqx.field(static=True)
    X: Array

    name = "wide-net"

    def inputs(self, params):
        """relu(X W_0^T + b_0)."""
        return jax.nn.relu(self.X @ params["W0"].T + params["b0"])

    def first_params(self, key):
        """``{"W0": (width, p), "b0": (width,)}``: W_0 entries init_scale sqrt(2/p) N(0, 1),
        b_0 = 0."""
        scale = self.init_scale * math.sqrt(2.0 / self.X.shape[1])
        W0 = scale * standard_normal(key, (self.width, self.X.shape[1]), self.dtype)
        return {"W0": W0, "b0": jnp.zeros((self.width,), self.dtype)}

    def extra_penalty(self, params):
        """lam_W/2 ||W_0||^2."""
        return 0.5 * self.wd_W * jnp.sum(params["W0"] ** 2)


def deep_linear(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    depth: int = 3,
    wd_W: float = 5e-3,
    wd_H: float = 5e-3,
    init_scale: float = 1.0,
    dtype=jnp.float32,
) -> DeepLinear:
    """Free features H (N, dim) -> ``depth`` linear layers; weight decay wd_W on V, wd_H on H.

    Init: H entries init_scale N(0, 1); V_l entries init_scale N(0, 1)/sqrt(fan_in).

    Args:
        classes: K.
        dim: d, the width of H and of the linear layers.
        per_class: n for every class, or the K counts n_k.
        depth: L, the number of linear layers.
        wd_W: lam_W, the weight decay of every V_l.
        wd_H: lam_H, the weight decay of H.
        init_scale: the scale of the initial entries.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The :class:`DeepLinear` model.
    """
    dtype = jnp.dtype(dtype)
    return DeepLinear(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, width=dim, depth=depth,
        **scalars(dtype, wd_W=wd_W, init_scale=init_scale, wd_H=wd_H),
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
) -> WideNet:
    """relu(W_0 x + b_0) of width ``width`` on ``dataset``, then ``depth`` linear layers.

    Weight decay wd_W on every weight matrix (W_0 included, not b_0). Init: entries
    init_scale N(0, 1)/sqrt(fan_in) (times sqrt(2) for the ReLU layer), b_0 = 0.

    Args:
        classes: K.
        per_class: n, the samples of every class (the data set's first ones).
        width: the width of the ReLU and linear layers.
        depth: L, the number of linear layers.
        wd_W: lam_W, the weight decay of every weight matrix.
        dataset: the data set (:func:`load_dataset`).
        init_scale: the scale of the initial entries.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The :class:`WideNet` model, its inputs X (N, p) a data leaf.
    """
    dtype = jnp.dtype(dtype)
    X = jnp.asarray(load_dataset(dataset, classes, per_class), dtype)
    return WideNet(
        counts=(per_class,) * classes, dtype_name=dtype.name, width=width, depth=depth,
        dataset=dataset, X=X, **scalars(dtype, wd_W=wd_W, init_scale=init_scale),
    )  # fmt: skip


# --------------------------------------------------------------------------- declarations

DEPTH = Option("depth", "int", 3, "L, the number of final linear layers", STRUCTURE, low=2, bad=1)


def _check_dataset(o) -> None:
    """The data set must hold ``classes`` classes of ``per_class`` samples each."""
    max_classes, max_per_class = dataset_limits(o["dataset"])
    if o["classes"] > max_classes:
        raise OptionError(
            f"model.classes: {o['dataset']} has {max_classes} classes, got {o['classes']}"
        )
    if not isinstance(o["per_class"], int) or o["per_class"] > max_per_class:
        raise OptionError(
            f"model.per_class: {o['dataset']} needs one count <= {max_per_class} (its smallest "
            f"class), got {o['per_class']}"
        )
    if o["width"] < o["classes"]:
        raise OptionError(f"model.width: must be >= classes ({o['classes']}), got {o['width']}")


DEEP_LINEAR = ModelSpec(
    name="deep-linear",
    summary="free features -> `depth` linear layers; MSE + weight decay (Súkeník et al. 2023)",
    options=(CLASSES, DIM, PER_CLASS, DEPTH, WD_W, WD_H),
    build=deep_linear,
    kinds=MINIBATCH_KINDS,
    pinned=NO_BIAS,
    targets=lambda o: ORTHOGONAL_METRICS,
    geometry=lambda o: "orthogonal frame at every layer, the layers balanced",
)  # fmt: skip

WIDE_NET = ModelSpec(
    name="wide-net",
    summary="a wide ReLU layer on scikit-learn's digits -> `depth` linear layers; MSE + weight "
    "decay (Jacot et al. 2024)",
    options=(
        CLASSES, PER_CLASS,
        Option("width", "int", 128, "width of the ReLU and linear layers, at least classes",
               STRUCTURE, low=1),
        DEPTH.with_default(2), WD_W.with_default(1e-3),
        Option("dataset", "str", "digits", "the data set (scikit-learn's digits: 10 classes, "
               "<= 174 per class)", STRUCTURE, choices=DATASETS, bad="mnist"),
    ),
    build=wide_net,
    kinds=MINIBATCH_KINDS,
    pinned=NO_BIAS,
    targets=lambda o: ORTHOGONAL_METRICS,
    check=_check_dataset,
    geometry=lambda o: "orthogonal frame of the penultimate class means (approached)",
)  # fmt: skip
