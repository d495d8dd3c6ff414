"""The model pattern shared by every gflow model (after equinox, optax and JAX MD).

A model is an ``equinox.Module``: a pytree whose static fields fix the structure (classes,
dimensions, per-class counts, depth, which parameters learn) and whose array leaves are its
hyperparameters (weight decays, impacts, the init scale: scalars) and data (non-scalar arrays,
e.g. a data set's inputs). Its methods are pure functions:

- ``init(key) -> params``: a random parameter pytree (one initialization);
- ``loss(params) -> scalar``: the objective whose negative gradient is the flow;
- ``weighted_loss(params, weights) -> scalar`` (optional): for a loss that is a mean over the
  N samples plus regularizers, the same with per-sample weights w (N,): the data term
  sum_i w_i l_i / N, the regularizers (weight decay) whole. Mini-batch SGD steps on it with
  mean-one weights (N/B on a batch of B samples, 0 elsewhere); a model that defines it gets
  ``loss`` = ``weighted_loss`` at w = 1 (one expression, the same bits);
- ``readout(params) -> Readout``: the (W, H, b, labels) view that the NC metrics read;
- ``observables(params) -> dict`` (optional): extra scalars a model reports along the
  trajectory beside the standard metrics (e.g. pre-ReLU NC metrics, balancedness of layers);
- ``drift(params) -> params`` (optional): the model's own vector field, for dynamics that are
  not a gradient flow (the locally elastic LE-ODE/LE-SDE); absent, the field is -grad loss.

All of them jit, grad and vmap. Because hyperparameters are leaves, a solve compiled for one
model serves every model of the same structure: ``jax.jit(f)(model, ...)`` traces once per
structure, and a batch of models that differ only in hyperparameters (their scalar leaves
stacked, see :func:`stack_hyperparameters`) is vmapped like a batch of inits. The dynamics only
ever see ``loss``, ``weighted_loss`` and ``drift``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

Params = Any  # a pytree of arrays


class Readout(NamedTuple):
    """Classifier W (K, d), features H (N, d) as rows, bias b (K,), labels (N,) in [0, K).

    What the NC metrics read (:func:`gflow.metrics.evaluate`); a model without a bias reports
    b = 0.

    Attributes:
        W: the classifier rows, (K, d).
        H: the features (penultimate layer) as rows, (N, d), grouped by class.
        b: the bias, (K,).
        labels: the class of each row of H, (N,) int32 in [0, K).
    """

    W: Float[Array, "K d"]
    H: Float[Array, "N d"]
    b: Float[Array, " K"]
    labels: Int[Array, " N"]


class Model(eqx.Module):
    """Base class: ``counts`` (per-class sample counts n_k) and the dtype are static; subclasses
    add their structure (static fields), hyperparameters (scalar array fields) and methods.

    The methods below are documented here once; a subclass's own docstrings say what differs
    (its parameter pytree, its loss).

    Attributes:
        counts: n_k, the samples of each class (static); K = len(counts), N = sum(counts).
        dtype_name: the dtype of parameters and hyperparameters, e.g. "float32" (static).
        name: the model's name in configs and results (e.g. "ufm-ce").
        weighted_loss: ``weighted_loss(params, weights) -> scalar``, where the loss is a mean
            over the N samples plus regularizers: the data term sum_i w_i l_i / N with
            per-sample weights w (N,), the regularizers whole (mini-batch SGD steps on it with
            mean-one weights); None where the loss is not such a mean.
        observables: ``observables(params) -> dict`` of extra scalars saved along the
            trajectory beside the standard metrics; None: none.
        drift: ``drift(params) -> params``, the model's own vector field for dynamics that are
            not a gradient flow; None: -grad loss.
    """

    counts: tuple[int, ...] = eqx.field(static=True)
    dtype_name: str = eqx.field(static=True)

    name: ClassVar[str] = "model"
    observables: ClassVar[Any] = None  # a subclass may define the method
    drift: ClassVar[Any] = None  # a subclass may define the method
    weighted_loss: ClassVar[Any] = None  # a subclass whose loss is a mean over samples defines it

    def init(self, key: Array) -> Params:
        """One random initialization.

        Args:
            key: a JAX PRNG key.

        Returns:
            The parameter pytree (a dict of arrays of the model's dtype).
        """
        raise NotImplementedError

    def loss(self, params: Params) -> Float[Array, ""]:
        """The objective whose negative gradient is the flow.

        Args:
            params: the parameter pytree.

        Returns:
            The loss, a scalar; by default ``weighted_loss`` at unit weights (one expression,
            the same bits).
        """
        if self.weighted_loss is None:
            raise NotImplementedError
        return self.weighted_loss(params, unit_weights(self.num_samples, self.dtype))

    def readout(self, params: Params) -> Readout:
        """The (W, H, b, labels) view of the parameters that the NC metrics read.

        Args:
            params: the parameter pytree.

        Returns:
            The :class:`Readout`: W (K, d), H (N, d), b (K,), labels (N,).
        """
        raise NotImplementedError

    def saved_data(self) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
        """The model's data arrays that its results file carries as variables.

        Returns:
            ``{name: (dims, values)}``, e.g. the regression targets
            ``{"targets": (("sample", "target"), Y)}``; a dim the results already have, such as
            ``sample``, must keep its size. Default: none.
        """
        return {}

    @property
    def dtype(self):
        """The dtype of parameters and hyperparameters."""
        return jnp.dtype(self.dtype_name)

    @property
    def dim(self) -> int:
        """Feature dimension of the readout's H."""
        raise NotImplementedError

    @property
    def bias(self) -> bool:
        """Whether the model learns a bias b."""
        return False

    @property
    def num_classes(self) -> int:
        """K."""
        return len(self.counts)

    @property
    def num_samples(self) -> int:
        """N, the samples of all classes."""
        return sum(self.counts)

    @property
    def labels(self) -> np.ndarray:
        """The class of each sample, (N,), grouped by class (:func:`class_labels`)."""
        return class_labels(self.counts)

    def onehot(self, axis: int = -1) -> Array:
        """One-hot labels in the model's dtype.

        Args:
            axis: the class axis: -1 for (N, K), 0 for (K, N).

        Returns:
            The one-hot labels, (N, K) or (K, N).
        """
        return jax.nn.one_hot(self.labels, self.num_classes, dtype=self.dtype, axis=axis)


def named_leaves(tree) -> dict[str, Any]:
    """The leaves of a parameter pytree by name, as ``init.from`` files and results'
    ``initial_*`` variables name them.

    Args:
        tree: a parameter pytree (or one of shapes).

    Returns:
        ``{name: leaf}``, the name its keys joined by "/" (``W``, ``H``, ``b``; ``linear/0``).
    """

    def name(path) -> str:
        return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)

    return {name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def standard_normal(key, shape: tuple[int, ...], dtype) -> Array:
    """``jax.random.normal(key, shape, dtype)``, fenced off from the ops that follow it.

    Inits draw with it so that their values do not depend on how they are run: jitted, XLA
    would fuse ``scale * normal`` and fold the normal's own constant into the scale (other
    bits); behind an optimization barrier the compiled draw gives the bits of the op-by-op one.

    Args:
        key: a PRNG key.
        shape: the shape.
        dtype: the dtype.

    Returns:
        Standard normal draws, ``shape``.
    """
    return jax.lax.optimization_barrier(jax.random.normal(key, shape, dtype))


def scalars(dtype, **values: float) -> dict[str, Array]:
    """Hyperparameters as 0-d arrays (leaves of the model, never constants of a compiled
    program): ``Model(..., **scalars(dtype, wd_W=5e-3, init_scale=0.1))``.

    Args:
        dtype: the arrays' dtype.
        **values: the hyperparameters by name.

    Returns:
        ``{name: 0-d array}``.
    """
    return {name: jnp.asarray(value, dtype) for name, value in values.items()}


def counts_of(classes: int, per_class: int | Sequence[int]) -> tuple[int, ...]:
    """Per-class sample counts.

    Args:
        classes: K.
        per_class: n for every class, or the list of the K counts.

    Returns:
        The counts n_k, a tuple of K ints.
    """
    if isinstance(per_class, int | np.integer):
        return (int(per_class),) * classes
    return tuple(int(n) for n in per_class)


def is_hyperparameter(leaf) -> bool:
    """Whether a model's leaf is a hyperparameter: a scalar array (larger ones are data).

    Args:
        leaf: a leaf of the model's pytree.

    Returns:
        True for a 0-d array.
    """
    return eqx.is_array(leaf) and jnp.ndim(leaf) == 0


def hyperparameters(model: Model) -> dict[str, float]:
    """The model's hyperparameters, for records and checks.

    Args:
        model: the model.

    Returns:
        Its scalar leaves by field name, as Python floats.
    """
    out = {}
    for field in dataclasses.fields(model):
        value = getattr(model, field.name)
        if is_hyperparameter(value):
            out[field.name] = float(value)
    return out


def split_hyperparameters(model: Model) -> tuple[Model, Model]:
    """The model split into its hyperparameters and its data (``eqx.combine`` puts them
    together again).

    Args:
        model: the model.

    Returns:
        ``(hyper, data)``: two partial models, the scalar leaves and the rest.
    """
    return eqx.partition(model, is_hyperparameter)


def stack_hyperparameters(models: Sequence[Model]) -> Model:
    """The hyperparameters of models of one structure, stacked: vmap it with in_axes 0 and
    combine with the data.

    Args:
        models: models that differ only in their scalar leaves.

    Returns:
        A partial model whose scalar leaves are (len(models),), the data leaves left out.
    """
    hypers = [split_hyperparameters(m)[0] for m in models]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *hypers)


def unit_weights(count: int, dtype) -> Array:
    """Per-sample weights all 1: a constant, so that XLA drops the products by them and the
    weighted mean compiles to the plain one.

    Args:
        count: N.
        dtype: the weights' dtype.

    Returns:
        Ones, (count,).
    """
    return jnp.ones((count,), dtype)


def class_labels(counts: tuple[int, ...]) -> np.ndarray:
    """Labels of the N = sum(counts) samples, grouped by class: [0]*n_0 + [1]*n_1 + ...

    Args:
        counts: n_k per class.

    Returns:
        The labels, (N,) int32.
    """
    return np.repeat(np.arange(len(counts)), counts).astype(np.int32)


def _margins(logits, onehot, axis: int):
    """(e, S, lse), all keeping the class axis: with m = max_{j != y}(z_j - z_y),
    e_j = exp(z_j - z_y - m) (0 at j = y), S = sum_j e_j and
    lse = logsumexp_{j != y}(z_j - z_y) = m + log S. One exp per logit serves the loss and its
    derivative, e_j / S = exp(z_j - z_y - lse)."""
    own = jnp.sum(onehot * logits, axis=axis, keepdims=True)
    others = jnp.where(onehot > 0, -jnp.inf, logits - own)
    top = jax.lax.stop_gradient(jnp.max(others, axis=axis, keepdims=True))  # lse is m-free
    e = jnp.exp(others - top)
    total = jnp.sum(e, axis=axis, keepdims=True)
    return e, total, top + jnp.log(total)


def sample_cross_entropy(
    logits: Float[Array, "N K"], onehot: Float[Array, "N K"], axis: int = 1
) -> Float[Array, " N"]:
    """CE(z_i, y_i) = log(1 + sum_{j != y_i} exp(-(z_{i,y_i} - z_{i,j}))) per sample, (N,).

    Written in margin form, softplus(logsumexp_{j != y}(z_j - z_y)), which stays exact when the
    loss is tiny: the usual logsumexp(z) - z_y (optax's softmax_cross_entropy) cancels to 0 in
    float64 once the margins exceed ~37 (CE < 1e-16), and its gradient then no longer sums to 0
    over classes, which would corrupt long-horizon ULPM flows.

    Args:
        logits: z, (N, K) (or (K, N) with ``axis`` 0).
        onehot: the one-hot labels, the shape of ``logits``.
        axis: the class axis.

    Returns:
        CE per sample, (N,).
    """
    return jax.nn.softplus(jnp.squeeze(_margins(logits, onehot, axis)[2], axis))


def cross_entropy(
    logits: Float[Array, "N K"],
    onehot: Float[Array, "N K"],
    axis: int = 1,
    weights: Float[Array, " N"] | None = None,
) -> Float[Array, ""]:
    """Mean over samples of CE(z_i, y_i) = logsumexp(z_i) - z_{i, y_i}, in the exact margin form
    of :func:`sample_cross_entropy`.

    Its derivative is the closed form dL/dz_i = w_i (p_i - y_i)/N, p = softmax(z), also written
    without cancellation: p_j = sigmoid(s) e^{z_j - z_y - s} for j != y and p_y - 1 = -sigmoid(s),
    s = logsumexp_{j != y}(z_j - z_y). One fused expression, with one exp per logit, instead of
    the autodiff chain of softplus, logsumexp and the masks (1.5x faster GD); higher derivatives
    (Hessians) still work. Labels and weights are data: no derivative through them.

    Args:
        logits: z, (N, K) (or (K, N) with ``axis`` 0).
        onehot: the one-hot labels, the shape of ``logits``.
        axis: the class axis.
        weights: per-sample weights w, (N,); None: w = 1, the mean.

    Returns:
        sum_i w_i CE_i / N, a scalar.
    """
    count = logits.size // logits.shape[axis]
    w = unit_weights(count, logits.dtype) if weights is None else weights
    return _cross_entropy(logits, onehot, w, axis)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _cross_entropy(logits, onehot, weights, axis: int):
    count = logits.size // logits.shape[axis]
    return jnp.sum(weights * sample_cross_entropy(logits, onehot, axis)) / count


@_cross_entropy.defjvp
def _cross_entropy_jvp(axis, primals, tangents):
    logits, onehot, weights = primals
    dlogits = tangents[0]  # the labels and weights are data: no derivative through them
    e, total, lse = _margins(logits, onehot, axis)
    sure = jax.nn.sigmoid(lse)  # 1 - p_y
    residual = jnp.where(onehot > 0, -sure, e * (sure / total))  # p - y
    count = logits.size // logits.shape[axis]
    w = jnp.expand_dims(weights, axis)
    return jnp.sum(w * jax.nn.softplus(lse)) / count, jnp.sum(w * residual * dlogits) / count
