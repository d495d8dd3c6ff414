"""Supervised contrastive loss on free features (Khosla et al. 2020; the unconstrained-features
analysis of Graf, Hofer, Niethammer & Kwitt, ICML 2021, arXiv 2102.08817, and of Kini et al.,
ICLR 2024, arXiv 2306.07960 for non-negative features).

    L(V) = (1/N) sum_i -(1/|P(i)|) sum_{p in P(i)} log[e^{h_i.h_p/tau}/sum_{a != i} e^{h_i.h_a/tau}]

with P(i) the other samples of i's class (every class needs n_k >= 2), temperature tau > 0
(``temperature``) and features of norm rho (``feature_norm``), normalized parametrization:

    h_i = rho v_i/||v_i||            (signed)
    h_i = rho v_i^2/||v_i^2||        (``nonnegative``: v_i^2 entrywise, so h_i >= 0)

V (N, d) free, rows grouped by class; no classifier, no bias, no weight decay. The loss is
invariant to scaling any row v_i (degree 0 in v_i), so gradient flow is a plain gradient system
that conserves every ||v_i|| and turns the unit rows on their sphere (as :mod:`gflow.models.
sphere`); non-negative, the square makes coordinates decay to 0 only exponentially, never cross.

Readout: H the features h_i (N, d); W the class means mu_k (K, d) of H, the nearest-class-mean
classifier (no classifier is learned); b = 0. So NC1 is the features' within-class collapse,
NC2 (and ``orthogonal_classifier``) the geometry of the raw class means, NC3 the distance of the
raw means to the centred ones (0 at a simplex ETF, whose means sum to 0), NC4 argmax_k mu_k.h
against the nearest mean; ``nc3_uncentred`` is identically 0 here. Closed forms:
:mod:`gflow.theory.losses`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from gflow import metrics, theory
from gflow.models.base import Model, Readout, counts_of, scalars, standard_normal
from gflow.models.options import (
    CLASSES,
    DIM,
    ETF_METRICS,
    IMBALANCED_METRICS,
    NO_BIAS,
    PER_CLASS,
    STRUCTURE,
    ModelSpec,
    Option,
    OptionError,
)  # fmt: skip


class SupConUFM(Model):
    """Free features under the SupCon loss (see the module docstring).

    ``init(key)`` draws every row v_i uniformly on the sphere of radius ``init_scale sqrt(d)``
    (the RMS norm of i.i.d. ``init_scale N(0, 1)`` entries). Observables: ``within_cosine``
    (mean cos(h_i, h_p) over same-class pairs, 1 at collapse) and ``between_cosine`` (mean over
    pairs of different classes: -1/(K-1) at a balanced simplex ETF, 0 at an orthogonal frame).
    """

    feature_dim: int = eqx.field(static=True)
    nonnegative: bool = eqx.field(static=True)
    feature_norm: Array
    temperature: Array
    init_scale: Array

    name = "ufm-supcon"

    @property
    def dim(self) -> int:
        return self.feature_dim

    def init(self, key):
        """``{"V": (N, d)}``, rows uniform on the sphere of radius init_scale sqrt(d)."""
        N, d = self.num_samples, self.feature_dim
        V = standard_normal(key, (N, d), self.dtype)
        radius = self.init_scale * jnp.sqrt(jnp.asarray(d, self.dtype))
        norms = jax.lax.optimization_barrier(jnp.linalg.norm(V, axis=1, keepdims=True))
        return {"V": radius * V / norms}  # (fenced: the bits of the op-by-op division)

    def features(self, params) -> Array:
        """The features h_i = rho u_i/||u_i||, u = V (signed) or V**2 (non-negative).

        Args:
            params: the parameter pytree.

        Returns:
            H, (N, d), every row of norm rho = ``feature_norm``.
        """
        U = params["V"] ** 2 if self.nonnegative else params["V"]
        return self.feature_norm * U / jnp.linalg.norm(U, axis=1, keepdims=True)

    def _pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(positive, negative) masks (N, N): same class but not i; another class."""
        labels = self.labels
        same = labels[:, None] == labels[None, :]
        return same & ~np.eye(len(labels), dtype=bool), ~same

    def readout(self, params):
        """(the class means of H as W, H, b = 0, labels): no classifier is learned."""
        H = self.features(params)
        labels = jnp.asarray(self.labels)
        W = metrics.class_means(H, labels, self.num_classes)
        return Readout(W, H, jnp.zeros((self.num_classes,), H.dtype), labels)

    def loss(self, params):
        """The SupCon loss of the module docstring, at temperature ``temperature``."""
        H = self.features(params)
        S = H @ H.T / self.temperature
        positive, _ = self._pairs()
        others = jnp.where(jnp.eye(self.num_samples, dtype=bool), -jnp.inf, S)
        log_denominator = jax.nn.logsumexp(others, axis=1)
        weights = jnp.asarray(positive / positive.sum(axis=1, keepdims=True), self.dtype)
        return jnp.mean(log_denominator - jnp.sum(weights * S, axis=1))

    def observables(self, params):
        """``within_cosine`` and ``between_cosine`` (see the class)."""
        H = self.features(params)
        cosines = H @ H.T / self.feature_norm**2
        positive, negative = self._pairs()
        return {
            "within_cosine": jnp.sum(jnp.where(positive, cosines, 0)) / positive.sum(),
            "between_cosine": jnp.sum(jnp.where(negative, cosines, 0)) / negative.sum(),
        }


def ufm_supcon(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    feature_norm: float = 1.0,
    temperature: float = 0.5,
    nonnegative: bool = False,
    init_scale: float = 0.1,
    dtype=jnp.float32,
) -> SupConUFM:
    """A :class:`SupConUFM`.

    Args:
        classes: K.
        dim: d, the feature dimension.
        per_class: n for every class, or the K counts n_k.
        feature_norm: rho, the norm of every feature.
        temperature: tau > 0.
        nonnegative: features from V**2 (non-negative, as after a ReLU) instead of V.
        init_scale: the rows of V start at norm init_scale sqrt(d).
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The model.
    """
    dtype = jnp.dtype(dtype)
    return SupConUFM(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, feature_dim=dim,
        nonnegative=nonnegative,
        **scalars(dtype, feature_norm=feature_norm, temperature=temperature,
                  init_scale=init_scale),
    )  # fmt: skip


# --------------------------------------------------------------------------- declarations

FEATURE_NORM = Option(
    "feature_norm", "float", 1.0, "rho, the norm of every feature h_i", above=0.0, bad=0.0
)
TEMPERATURE = Option(
    "temperature", "float", 0.5, "tau, the temperature: similarities h_i.h_a/tau", above=0.0,
    bad=0.0,
)  # fmt: skip
NONNEGATIVE = Option(
    "nonnegative", "bool", False, "non-negative features, h_i = rho v_i^2/||v_i^2|| (post-ReLU "
    "like)", STRUCTURE, bad=1,
)  # fmt: skip


def _check(o) -> None:
    counts = counts_of(o["classes"], o["per_class"])
    if min(counts) < 2:
        raise OptionError(
            f"model.per_class: ufm-supcon needs >= 2 samples per class (a positive pair), got "
            f"{min(counts)}"
        )


def _optimum(o):
    counts = counts_of(o["classes"], o["per_class"])
    return theory.supcon_optimum(counts, o["dim"], o["feature_norm"], o["temperature"],
                                 o["nonnegative"])  # fmt: skip


def _closed_form(o, counts) -> dict:
    """F* at the simplex ETF (signed, balanced, d >= K - 1) or the orthogonal frame
    (non-negative, any counts, d >= K); {} otherwise."""
    optimum = _optimum(o)
    return {} if optimum is None else {"theory_loss": optimum.loss}


def _targets(o) -> tuple[str, ...]:
    """ETF metrics at the ETF; at the orthogonal frame NC1, the equal-norm orthogonality of the
    class means (W here) and NC4; elsewhere NC1 only."""
    optimum = _optimum(o)
    if optimum is None:
        return IMBALANCED_METRICS
    return ETF_METRICS if optimum.geometry == "simplex ETF" else ("nc1", "orthogonal_classifier",
                                                                   "nc4")  # fmt: skip


def _geometry(o) -> str:
    optimum = _optimum(o)
    if optimum is None:
        return "collapsed features (no closed form for these counts, d and signs)"
    return f"features on the {optimum.geometry} of radius feature_norm, h_i = mu_(y_i)"


SPEC = ModelSpec(
    name="ufm-supcon",
    summary="free features of norm rho under the supervised contrastive loss at temperature "
    "tau, signed or non-negative; no classifier (Graf et al. 2021; Kini et al. 2024)",
    options=(CLASSES, DIM, PER_CLASS, FEATURE_NORM, TEMPERATURE, NONNEGATIVE),
    build=ufm_supcon,
    pinned=NO_BIAS,
    check=_check,
    closed_form=_closed_form,
    targets=_targets,
    geometry=_geometry,
)  # fmt: skip
