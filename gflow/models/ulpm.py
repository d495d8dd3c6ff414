"""Unconstrained layer-peeled model (Ji et al., ICLR 2022).

    L(W, H) = (1/N) sum_i CE(W h_i, y_i)   [+ lam_W/2 ||W||_F^2 + lam_H/2 ||H||_F^2]

No bias. Unregularized (the default) the loss only vanishes as ||(W, H)|| -> infinity and gradient
flow converges in direction to a KKT point of  min 1/2 ||W||^2 + 1/2 ||H||^2  s.t.
(w_{y_i} - w_j) . h_i >= 1 for all i, j != y_i; the balanced optimum has normalized margin
1 / (sqrt(n) (K - 1)). With weight decay it is the regularized ULPM, whose critical points other
than the collapsed minimizers are strict saddles.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from gflow import metrics
from gflow.models.ufm import UFM, ufm


class ULPM(UFM):
    """The UFM-CE loss with no bias; observables add the KKT residual of the minimum-norm
    separation problem (:func:`gflow.metrics.kkt_residual`): ``kkt_residual`` and
    ``kkt_slackness``."""

    def observables(self, params):
        W, H, _, labels = self.readout(params)
        residual, slackness = metrics.kkt_residual(W, H, labels, self.num_classes)
        return {"kkt_residual": residual, "kkt_slackness": slackness}


def ulpm(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    wd_W: float = 0.0,
    wd_H: float = 0.0,
    init_scale: float = 0.1,
    dtype=jnp.float32,
) -> ULPM:
    """ULPM: the UFM-CE loss with no bias and, by default, no weight decay."""
    base = ufm(
        classes, dim, per_class, loss="ce", wd_W=wd_W, wd_H=wd_H, wd_b=0.0, bias=False,
        init_scale=init_scale, dtype=dtype, name="ulpm",
    )  # fmt: skip
    return ULPM(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
