"""Unconstrained layer-peeled model (Ji et al., ICLR 2022).

    L(W, H) = (1/N) sum_i CE(W h_i, y_i)   [+ lam_W/2 ||W||_F^2 + lam_H/2 ||H||_F^2]

No bias. Unregularized (the default) the loss only vanishes as ||(W, H)|| -> infinity and gradient
flow converges in direction to a KKT point of  min 1/2 ||W||^2 + 1/2 ||H||^2  s.t.
(w_{y_i} - w_j) . h_i >= 1 for all i, j != y_i; the balanced optimum has normalized margin
1 / (sqrt(n) (K - 1)). With imbalanced counts that KKT point is SELI (Thrampoulidis et al.,
NeurIPS 2022): H W^T tends in direction to Zhat = Y - 11^T/K, normalized margin
1/||Zhat||_* (:func:`gflow.theory.seli`), but only like 1/log t. With weight decay it is the
regularized ULPM, whose critical points other than the collapsed minimizers are strict saddles.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from gflow import metrics, theory
from gflow.models.options import (
    CLASSES,
    DIM,
    ETF_METRICS,
    IMBALANCED_METRICS,
    MINIBATCH_KINDS,
    NO_BIAS,
    PER_CLASS,
    WD_H,
    WD_W,
    ModelSpec,
    imbalanced,
)  # fmt: skip
from gflow.models.ufm import UFM, ce_imbalanced_attrs, ufm


class ULPM(UFM):
    """The UFM-CE loss with no bias; observables add the KKT residual of the minimum-norm
    separation problem (:func:`gflow.metrics.kkt_residual`): ``kkt_residual`` and
    ``kkt_slackness``; and ``seli_distance`` = || Z/||Z||_F - Zhat/||Zhat||_F ||_F, the
    direction distance of the logits Z = H W^T (N, K) to SELI's Zhat = Y - 11^T/K (in [0, 2];
    balanced, Zhat is the simplex ETF's logits; unregularized it falls like 1/log t)."""

    def observables(self, params):
        """``kkt_residual``, ``kkt_slackness`` and ``seli_distance`` (see the class)."""
        W, H, _, labels = self.readout(params)
        residual, slackness = metrics.kkt_residual(W, H, labels, self.num_classes)
        target = theory.seli(self.counts).Z
        target = jnp.asarray(target / np.linalg.norm(target), self.dtype)
        logits = H @ W.T
        distance = jnp.linalg.norm(logits / jnp.linalg.norm(logits) - target)
        return {"kkt_residual": residual, "kkt_slackness": slackness, "seli_distance": distance}


def ulpm(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    wd_W: float = 0.0,
    wd_H: float = 0.0,
    init_scale: float = 0.1,
    dtype=jnp.float32,
) -> ULPM:
    """ULPM: the UFM-CE loss with no bias and, by default, no weight decay.

    Args:
        classes: K.
        dim: d, the feature dimension.
        per_class: n for every class, or the K counts n_k.
        wd_W: lam_W (0: unregularized).
        wd_H: lam_H (0: unregularized).
        init_scale: the parameters' entries are i.i.d. ``init_scale * N(0, 1)``.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The :class:`ULPM`.
    """
    base = ufm(
        classes, dim, per_class, loss="ce", wd_W=wd_W, wd_H=wd_H, wd_b=0.0, bias=False,
        init_scale=init_scale, dtype=dtype, name="ulpm",
    )  # fmt: skip
    return ULPM(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})


def _closed_form(o, counts) -> dict:
    """Unregularized: the max-margin limit 1/(sqrt(n)(K-1)) of the normalized margin (Ji et
    al. 2022). Regularized: the UFM-CE optimum (Zhu et al. 2021; its bias is 0 there anyway).
    Imbalanced: those of UFM-CE without bias (SELI's 1/||Zhat||_* unregularized, the convex
    reduction's optimum and the minority merge regularized; :mod:`gflow.models.ufm`)."""
    n, K = (counts[0], o["classes"]) if len(set(counts)) == 1 else (None, None)
    if n is None:
        return ce_imbalanced_attrs({**o, **NO_BIAS, "classifier": "learned"}, counts)
    if o["wd_W"] == 0 and o["wd_H"] == 0:
        return {"theory_normalized_margin": theory.ulpm_max_margin(K, n)}
    if o["wd_W"] <= 0 or o["wd_H"] <= 0 or o["dim"] < K - 1:
        return {}
    opt = theory.ufm_ce_optimum(K, n, o["wd_W"], o["wd_H"])
    return {
        "theory_collapsed": int(opt.collapsed),
        "theory_W_norm_sq": opt.rho,
        "theory_H_norm_sq": opt.H_norm_sq,
        "theory_loss": opt.loss,
    }


SPEC = ModelSpec(
    name="ulpm",
    summary="the layer-peeled model: UFM-CE with no bias and, by default, no weight decay "
    "(Ji et al. 2022)",
    options=(CLASSES, DIM, PER_CLASS, WD_W.with_default(0.0), WD_H.with_default(0.0)),
    build=ulpm,
    kinds=MINIBATCH_KINDS,
    pinned=NO_BIAS,
    loss_tends_to_zero=lambda o: o["wd_W"] == 0 and o["wd_H"] == 0,
    closed_form=_closed_form,
    targets=lambda o: IMBALANCED_METRICS if imbalanced(o) else ETF_METRICS,
    gram=lambda o, counts: ("SELI", theory.seli(counts).W_gram)
    if imbalanced(o) and not (o["wd_W"] or o["wd_H"]) else None,
    geometry=lambda o: ("imbalanced: collapsed features, equal-size minorities merge where "
    "sqrt(n_B)/N <= sqrt(wd_W wd_H)" if imbalanced(o) else "simplex ETF (a strict-saddle "
    "landscape)") if o["wd_W"] or o["wd_H"]
    else "KKT point of the min-norm separation problem: SELI, H W^T -> Y - 11^T/K in direction "
    "(seli_distance)" if imbalanced(o)
    else "KKT point of the min-norm separation problem (a simplex ETF when balanced)",
)  # fmt: skip
