"""The UFM with other softmax losses: label smoothing and focal loss (Zhou, You, Li, Wang, Sun &
Zhu, NeurIPS 2022, arXiv 2210.02192).

    L = (1/N) sum_i l(W h_i + b, y_i) + wd_W/2 ||W||_F^2 + wd_H/2 ||H||_F^2 + wd_b/2 ||b||^2

    ufm-ls:    l(z, y) = -sum_j q_j log p_j,  q = (1 - alpha) e_y + alpha/K   (``smoothing``)
                       = (1 - alpha) CE(z, y) + alpha (logsumexp(z) - mean_j z_j)
    ufm-focal: l(z, y) = -(1 - p_y)^gamma log p_y                           (``focal_gamma``)
                       = sigmoid(s)^gamma softplus(s),  s = logsumexp_{j != y}(z_j - z_y)

p = softmax(z); W (K, d), H (N, d) rows grouped by class, b (K,). Both are the UFM of
:mod:`gflow.models.ufm` (same parameters, init and readout) with only the loss replaced; the
focal weight is exp(gamma log_sigmoid(s)), exact at tiny 1 - p_y and at gamma = 0 (CE).
Balanced, d >= K - 1: a simplex ETF with b = 0 whose scale solves a 1-d problem, and a
threshold sqrt(wd_W wd_H) beyond which W = H = 0 (:mod:`gflow.theory.losses`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

from gflow import theory
from gflow.models.base import counts_of, cross_entropy, scalars
from gflow.models.options import (
    CLASSES,
    DIM,
    ETF_METRICS,
    IMBALANCED_METRICS,
    MINIBATCH_KINDS,
    PER_CLASS,
    WD_H,
    WD_W,
    ModelSpec,
    Option,
    OptionError,
    imbalanced,
)  # fmt: skip
from gflow.models.ufm import BIAS, UFM, WD_B


def margin_lse(logits: Array, onehot: Array, axis: int = 0) -> Array:
    """s = logsumexp_{j != y}(z_j - z_y) per sample; CE = softplus(s).

    Args:
        logits: z, (K, N) (or (N, K) with ``axis`` 1).
        onehot: the one-hot labels, the shape of ``logits``.
        axis: the class axis (reduced).

    Returns:
        s, (N,).
    """
    own = jnp.sum(onehot * logits, axis=axis, keepdims=True)
    others = jnp.where(onehot > 0, -jnp.inf, logits - own)
    return jax.nn.logsumexp(others, axis=axis)


class _SoftmaxLossUFM(UFM):
    """A learned-classifier UFM whose data term is ``data_loss(logits (K, N), onehot (K, N),
    weights (N,))``: sum_i w_i l(z_i, y_i) / N."""

    def data_loss(self, logits, onehot, weights):
        raise NotImplementedError

    def weighted_loss(self, params, weights):
        W, H, b, _ = self.readout(params)
        # logits as (K, N), the sample axis minor (as the UFM)
        value = self.data_loss(W @ H.T + b[:, None], self.onehot(axis=0), weights)
        value = value + 0.5 * self.wd_W * jnp.sum(W**2) + 0.5 * self.wd_H * jnp.sum(H**2)
        if self.has_bias:
            value = value + 0.5 * self.wd_b * jnp.sum(b**2)
        return value


class LabelSmoothingUFM(_SoftmaxLossUFM):
    """The UFM with label smoothing alpha = ``smoothing`` in [0, 1) (alpha = 0 is ufm-ce)."""

    smoothing: Array

    def data_loss(self, logits, onehot, weights):
        """(1 - alpha) CE + alpha times the CE against uniform labels, weighted by w (N,);
        ``logits`` and ``onehot`` (K, N)."""
        ce = cross_entropy(logits, onehot, 0, weights)
        uniform = jax.nn.logsumexp(logits, axis=0) - jnp.mean(logits, axis=0)
        smoothed = jnp.sum(weights * uniform) / uniform.size
        return (1 - self.smoothing) * ce + self.smoothing * smoothed


class FocalUFM(_SoftmaxLossUFM):
    """The UFM with the focal loss of exponent gamma = ``focal_gamma`` >= 0 (0 is ufm-ce)."""

    focal_gamma: Array

    def data_loss(self, logits, onehot, weights):
        """sum_i w_i (1 - p_{i,y_i})^gamma CE_i / N, ``logits`` and ``onehot`` (K, N)."""
        s = margin_lse(logits, onehot, 0)
        focal = jnp.exp(self.focal_gamma * jax.nn.log_sigmoid(s)) * jax.nn.softplus(s)
        return jnp.sum(weights * focal) / s.size


def _build(cls, name, classes, dim, per_class, wd_W, wd_H, wd_b, bias, init_scale, dtype, **hyper):
    dtype = jnp.dtype(dtype)
    return cls(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, feature_dim=dim,
        loss_kind=name.removeprefix("ufm-"), has_bias=bias, classifier="learned",
        model_name=name,
        **scalars(dtype, wd_W=wd_W, wd_H=wd_H, wd_b=wd_b, classifier_norm=1.0,
                  init_scale=init_scale, **hyper),
    )  # fmt: skip


def ufm_ls(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    smoothing: float = 0.1,
    wd_W: float = 5e-3,
    wd_H: float = 5e-3,
    wd_b: float = 5e-3,
    bias: bool = True,
    init_scale: float = 0.1,
    dtype=jnp.float32,
) -> LabelSmoothingUFM:
    """A :class:`LabelSmoothingUFM` (a learned classifier).

    Args:
        classes: K.
        dim: d, the feature dimension.
        per_class: n for every class, or the K counts n_k.
        smoothing: alpha in [0, 1) (0: ufm-ce).
        wd_W: lam_W, the weight decay of W.
        wd_H: lam_H, the weight decay of H.
        wd_b: lam_b, the weight decay of b.
        bias: learn a bias b (K,).
        init_scale: the parameters' entries are i.i.d. ``init_scale * N(0, 1)``.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The model, named "ufm-ls".
    """
    return _build(LabelSmoothingUFM, "ufm-ls", classes, dim, per_class, wd_W, wd_H, wd_b, bias,
                  init_scale, dtype, smoothing=smoothing)  # fmt: skip


def ufm_focal(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    focal_gamma: float = 2.0,
    wd_W: float = 5e-3,
    wd_H: float = 5e-3,
    wd_b: float = 5e-3,
    bias: bool = True,
    init_scale: float = 0.1,
    dtype=jnp.float32,
) -> FocalUFM:
    """A :class:`FocalUFM` (a learned classifier).

    Args:
        classes: K.
        dim: d, the feature dimension.
        per_class: n for every class, or the K counts n_k.
        focal_gamma: gamma >= 0 (0: ufm-ce).
        wd_W: lam_W, the weight decay of W.
        wd_H: lam_H, the weight decay of H.
        wd_b: lam_b, the weight decay of b.
        bias: learn a bias b (K,).
        init_scale: the parameters' entries are i.i.d. ``init_scale * N(0, 1)``.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The model, named "ufm-focal".
    """
    return _build(FocalUFM, "ufm-focal", classes, dim, per_class, wd_W, wd_H, wd_b, bias,
                  init_scale, dtype, focal_gamma=focal_gamma)  # fmt: skip


# --------------------------------------------------------------------------- declarations

SMOOTHING = Option(
    "smoothing", "float", 0.1, "alpha, label smoothing: targets (1 - alpha) e_y + alpha/K, "
    "alpha < 1", low=0.0, bad=1.0,
)  # fmt: skip
FOCAL_GAMMA = Option(
    "focal_gamma", "float", 2.0, "gamma, the focal exponent: -(1 - p_y)^gamma log p_y (0: CE)",
    low=0.0, bad=-1.0,
)  # fmt: skip


def _check_smoothing(o) -> None:
    if not o["smoothing"] < 1:
        raise OptionError(f"model.smoothing: must be in [0, 1), got {o['smoothing']:g}")


def _hyper(kind: str, o) -> dict:
    return {"smoothing": o["smoothing"]} if kind == "ls" else {"focal_gamma": o["focal_gamma"]}


def _closed_form(kind: str):
    def closed_form(o, counts) -> dict:
        """Balanced, d >= K - 1, wd_W, wd_H > 0: the ETF of the 1-d reduction (or W = H = 0),
        and lambda_c = kappa/(K sqrt(n)), the sqrt(wd_W wd_H) from which W = H = 0 is locally
        stable (``theory_zero_threshold_wd``; for the focal loss also the global one,
        ``theory_zero_global_threshold_wd``, larger where phi is not convex)."""
        K = o["classes"]
        if len(set(counts)) != 1 or o["dim"] < K - 1 or o["wd_W"] <= 0 or o["wd_H"] <= 0:
            return {}
        n, hyper = counts[0], _hyper(kind, o)
        opt = theory.ufm_loss_optimum(kind, K, n, o["wd_W"], o["wd_H"], **hyper)
        attrs = {
            "theory_collapsed": int(opt.collapsed),
            "theory_W_norm_sq": opt.W_norm_sq,
            "theory_H_norm_sq": opt.H_norm_sq,
            "theory_loss": opt.loss,
            "theory_zero_threshold_wd": opt.zero_threshold_wd,
        }
        if kind == "focal":
            attrs["theory_zero_global_threshold_wd"] = theory.zero_global_threshold_wd(
                kind, K, n, **hyper
            )
        return attrs

    return closed_form


def _targets(o) -> tuple[str, ...]:
    return IMBALANCED_METRICS if imbalanced(o) or o["dim"] < o["classes"] - 1 else ETF_METRICS


def _geometry(kind: str):
    kappa = {"ls": "1 - alpha", "focal": "((K-1)/K)^gamma (1 + gamma ln K/(K-1))"}[kind]

    def geometry(o) -> str:
        if imbalanced(o):
            return "imbalanced: collapsed features (no closed form)"
        if o["dim"] < o["classes"] - 1:
            return "collapsed features (no closed form for dim < classes - 1)"
        return (
            "simplex ETF, b = 0, scale from the 1-d reduction (W = H = 0 locally stable from "
            f"K sqrt(n wd_W wd_H) = {kappa})"
        )

    return geometry


_OPTIONS = (CLASSES, DIM, PER_CLASS, WD_W, WD_H, WD_B, BIAS)

LS = ModelSpec(
    name="ufm-ls",
    summary="the UFM (bias, weight decay) with label-smoothed cross-entropy, smoothing alpha "
    "(Zhou et al. 2022)",
    options=(*_OPTIONS, SMOOTHING),
    build=ufm_ls,
    kinds=MINIBATCH_KINDS,
    check=_check_smoothing,
    closed_form=_closed_form("ls"),
    targets=_targets,
    geometry=_geometry("ls"),
)  # fmt: skip

FOCAL = ModelSpec(
    name="ufm-focal",
    summary="the UFM (bias, weight decay) with the focal loss, exponent gamma (Zhou et al. 2022)",
    options=(*_OPTIONS, FOCAL_GAMMA),
    build=ufm_focal,
    kinds=MINIBATCH_KINDS,
    closed_form=_closed_form("focal"),
    targets=_targets,
    geometry=_geometry("focal"),
)  # fmt: skip
