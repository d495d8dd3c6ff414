"""The normalized unconstrained features model: classifier rows and features on unit spheres
(Yaras et al., NeurIPS 2022, arXiv 2209.09211; Jiang et al. 2023, arXiv 2310.05351 for
K > d + 1).

    F(W, H) = (1/N) sum_i CE(s Wn hn_i, y_i),   Wn = rows w_k/||w_k||,  hn_i = h_i/||h_i||

with logit scale s > 0 (``logit_scale``), no bias and no weight decay; W (K, d), H (N, d).

Normalized parametrization, not a Riemannian flow: W and H are free and the loss reads their
normalized rows, so the model is a plain gradient system of a pure loss and every dynamics
(flow, gd, sde, Hessians, the log clock) applies. Its minimizers are those of the problem on
the product of spheres (times any row norms). F is invariant to scaling any row, so its
gradient in a row is orthogonal to that row:

- gradient flow conserves every row norm, d/dt ||w_k||^2 = d/dt ||h_i||^2 = 0 (the observable
  ``radius_sq``, the sum of them, stays at its initial value), and each unit row follows the
  Riemannian gradient flow on its sphere with the clock sped up by 1/||w_k(0)||^2 (the same
  1/(init_scale^2 d) for every row at the model's init; features also carry the 1/N of the
  mean);
- gradient descent adds lr^2 ||grad||^2 to ||w_k||^2 at every step: the row norms grow slowly
  and the effective step lr/||w_k||^2 shrinks.

The readout is the unit rows (Wn, Hn, b = 0), so the NC metrics and figures read the point on
the spheres. With s finite the optimum is attained at finite points (no divergence): a flow
to moderate t converges. Closed forms (balanced classes): :mod:`gflow.theory.sphere`.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from gflow import theory
from gflow.models.base import Model, Readout, counts_of, cross_entropy, scalars, standard_normal
from gflow.models.options import (
    CLASSES,
    DIM,
    ETF_METRICS,
    MINIBATCH_KINDS,
    NO_BIAS,
    PER_CLASS,
    ModelSpec,
    Option,
)  # fmt: skip


def unit_rows(X: Array, fenced: bool = False) -> Array:
    """The rows of X scaled to unit Euclidean norm (a zero row gives NaN).

    Args:
        X: the rows, (n, d).
        fenced: the norms behind an optimization barrier, so that XLA cannot fuse the
            division into other bits: those of the op-by-op division (for inits).

    Returns:
        X_i / ||X_i||, (n, d).
    """
    norms = jnp.linalg.norm(X, axis=-1, keepdims=True)
    return X / (jax.lax.optimization_barrier(norms) if fenced else norms)


class SphereUFM(Model):
    """Free W (K, d) and H (N, d), the loss of their unit rows at logit scale ``logit_scale``.

    ``init(key)`` draws every row uniformly on the sphere of radius ``init_scale sqrt(d)`` (the
    RMS norm of i.i.d. ``init_scale N(0, 1)`` entries), so every row turns on the same clock
    (no row starts near 0, which would make the flow stiff). Observables:
    ``min_angle`` (the smallest angle between two classifier rows, radians),
    ``feature_classifier_cosine`` (mean_i cos(h_i, w_{y_i}), 1 at collapse) and ``radius_sq``
    (sum of the squared raw row norms, conserved by the flow).
    """

    feature_dim: int = eqx.field(static=True)
    logit_scale: Array
    init_scale: Array

    name = "ufm-sphere"

    @property
    def dim(self) -> int:
        return self.feature_dim

    def init(self, key):
        """``{"W": (K, d), "H": (N, d)}``, rows uniform on the sphere of radius
        init_scale sqrt(d)."""
        kw, kh = jax.random.split(key)
        K, N, d = self.num_classes, self.num_samples, self.feature_dim
        radius = self.init_scale * jnp.sqrt(jnp.asarray(d, self.dtype))
        return {
            "W": radius * unit_rows(standard_normal(kw, (K, d), self.dtype), fenced=True),
            "H": radius * unit_rows(standard_normal(kh, (N, d), self.dtype), fenced=True),
        }

    def readout(self, params):
        """(unit rows of W, unit rows of H, b = 0, labels)."""
        W, H = unit_rows(params["W"]), unit_rows(params["H"])
        return Readout(W, H, jnp.zeros((self.num_classes,), W.dtype), jnp.asarray(self.labels))

    def weighted_loss(self, params, weights):
        """CE of the logits s cos(w_k, h_i) with per-sample weights w (N,); no weight decay."""
        W, H, _, _ = self.readout(params)
        # logits as (K, N), the sample axis minor (as the UFM)
        return cross_entropy(self.logit_scale * (W @ H.T), self.onehot(axis=0), 0, weights)

    def observables(self, params):
        """``min_angle``, ``feature_classifier_cosine`` and ``radius_sq`` (see the class)."""
        W, H, _, labels = self.readout(params)
        K = self.num_classes
        # angle = 2 arcsin(chord/2) for unit vectors: accurate near 0 and pi, unlike arccos
        chords = jnp.linalg.norm(W[:, None, :] - W[None, :, :], axis=-1)
        chords = jnp.where(jnp.eye(K, dtype=bool), jnp.inf, chords)
        min_angle = 2 * jnp.arcsin(jnp.minimum(jnp.min(chords) / 2, 1.0))
        radius_sq = jnp.sum(params["W"] ** 2) + jnp.sum(params["H"] ** 2)
        return {
            "min_angle": min_angle,
            "feature_classifier_cosine": jnp.mean(jnp.sum(H * W[labels], axis=1)),
            "radius_sq": radius_sq,
        }


def ufm_sphere(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    logit_scale: float = 2.0,
    init_scale: float = 0.1,
    dtype=jnp.float32,
) -> SphereUFM:
    """A :class:`SphereUFM`.

    Args:
        classes: K.
        dim: d, the feature dimension.
        per_class: n for every class, or the K counts n_k.
        logit_scale: s, the logits are s cos(w_k, h_i).
        init_scale: the rows start at norm init_scale sqrt(d).
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The model.
    """
    dtype = jnp.dtype(dtype)
    return SphereUFM(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, feature_dim=dim,
        **scalars(dtype, logit_scale=logit_scale, init_scale=init_scale),
    )  # fmt: skip


# --------------------------------------------------------------------------- declarations

# default 2: the curvature at the optimum scales like s^2 exp(-s K/(K-1)) (the off-class
# softmax weight), largest for s near 1-2; at s = 5 the flow to 1e-8 is ~10x slower
LOGIT_SCALE = Option(
    "logit_scale", "float", 2.0, "s, the logit scale: logits s cos(w_k, h_i)", above=0.0, bad=0
)


def _balanced(counts) -> bool:
    return len(set(counts)) == 1


def _closed_form(o, counts) -> dict:
    """The known optimum of the balanced problem (simplex ETF, K-gon, octahedron), else {}."""
    optimum = theory.sphere_optimum(o["classes"], o["dim"], o["logit_scale"])
    if optimum is None or not _balanced(counts):
        return {}
    return {"theory_loss": optimum.loss, "theory_min_angle": optimum.min_angle}


def _targets(o) -> tuple[str, ...]:
    """ETF metrics for K <= d + 1. At the K-gon and the octahedron h_i = w_{y_i} and the rows sum
    to 0 (centred means = W): NC1, NC3 and NC4 vanish, NC2 (distance to an ETF) does not.
    Elsewhere (other K > d + 1, imbalanced classes) only within-class collapse and the
    nearest-mean agreement are expected."""
    balanced = _balanced(counts_of(o["classes"], o["per_class"]))
    if balanced and o["classes"] <= o["dim"] + 1:
        return ETF_METRICS
    if balanced and theory.sphere_optimum(o["classes"], o["dim"], 1.0) is not None:
        return ("nc1", "nc3", "nc4")
    return ("nc1", "nc4")


def _geometry(o) -> str:
    optimum = theory.sphere_optimum(o["classes"], o["dim"], 1.0)
    if optimum is None or not _balanced(counts_of(o["classes"], o["per_class"])):
        return "unit features on their classifier rows (no closed form for these K, d, counts)"
    return f"{optimum.geometry} of unit classifier rows, features h_i = w_(y_i)"


SPEC = ModelSpec(
    name="ufm-sphere",
    summary="unit-normalized features and classifier rows, logits s cos(w_k, h_i), "
    "cross-entropy, no bias or weight decay (Yaras et al. 2022)",
    options=(CLASSES, DIM, PER_CLASS, LOGIT_SCALE),
    build=ufm_sphere,
    kinds=MINIBATCH_KINDS,
    pinned=NO_BIAS,
    closed_form=_closed_form,
    targets=_targets,
    geometry=_geometry,
)  # fmt: skip
