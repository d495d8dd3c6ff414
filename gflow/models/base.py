"""The model pattern shared by every gflow model (after optax and JAX MD).

A model is a NamedTuple of pure functions closed over its hyperparameters:

- ``init(key) -> params``: a random parameter pytree (one initialization);
- ``loss(params) -> scalar``: the objective whose negative gradient is the flow;
- ``readout(params) -> Readout``: the (W, H, b, labels) view that the NC metrics read;
- ``observables(params) -> dict`` (optional): extra scalars a model reports along the
  trajectory beside the standard metrics (e.g. pre-ReLU NC metrics, balancedness of layers);
- ``drift(params) -> params`` (optional): the model's own vector field, for dynamics that are
  not a gradient flow (the locally elastic LE-ODE/LE-SDE); absent, the field is -grad loss.

All of them jit, grad and vmap. The dynamics only ever see ``loss`` and ``drift``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

Params = Any  # a pytree of arrays


class Readout(NamedTuple):
    """Classifier W (K, d), features H (N, d) as rows, bias b (K,), labels (N,) in [0, K)."""

    W: Float[Array, "K d"]
    H: Float[Array, "N d"]
    b: Float[Array, " K"]
    labels: Int[Array, " N"]


class Model(NamedTuple):
    """Pure functions plus the static facts the rest of gflow needs about the model."""

    name: str
    init: Callable[[Array], Params]
    loss: Callable[[Params], Float[Array, ""]]
    readout: Callable[[Params], Readout]
    counts: tuple[int, ...]  # per-class sample counts n_k
    dim: int  # feature dimension of the readout's H
    bias: bool
    observables: Callable[[Params], dict[str, Float[Array, ""]]] | None = None
    drift: Callable[[Params], Params] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.counts)

    @property
    def labels(self) -> np.ndarray:
        return class_labels(self.counts)


def class_labels(counts: tuple[int, ...]) -> np.ndarray:
    """Labels of the N = sum(counts) samples, grouped by class: [0]*n_0 + [1]*n_1 + ..."""
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
    over classes, which would corrupt long-horizon ULPM flows. ``axis`` is the class axis.
    """
    return jax.nn.softplus(jnp.squeeze(_margins(logits, onehot, axis)[2], axis))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def cross_entropy(
    logits: Float[Array, "N K"], onehot: Float[Array, "N K"], axis: int = 1
) -> Float[Array, ""]:
    """Mean over samples of CE(z_i, y_i) = logsumexp(z_i) - z_{i, y_i}, in the exact margin form
    of :func:`sample_cross_entropy`; ``axis`` is the class axis (0 for (K, N) logits).

    Its derivative is the closed form dL/dz_i = (p_i - y_i)/N, p = softmax(z), also written
    without cancellation: p_j = sigmoid(s) e^{z_j - z_y - s} for j != y and p_y - 1 = -sigmoid(s),
    s = logsumexp_{j != y}(z_j - z_y). One fused expression, with one exp per logit, instead of
    the autodiff chain of softplus, logsumexp and the masks (1.5x faster GD); higher derivatives
    (Hessians) still work.
    """
    return jnp.mean(sample_cross_entropy(logits, onehot, axis))


@cross_entropy.defjvp
def _cross_entropy_jvp(axis, primals, tangents):
    logits, onehot = primals
    dlogits, _ = tangents  # the labels are data: no derivative through them
    e, total, lse = _margins(logits, onehot, axis)
    sure = jax.nn.sigmoid(lse)  # 1 - p_y
    residual = jnp.where(onehot > 0, -sure, e * (sure / total))  # p - y
    count = logits.size // logits.shape[axis]
    return jnp.mean(jax.nn.softplus(lse)), jnp.sum(residual * dlogits) / count
