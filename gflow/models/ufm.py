"""Unconstrained features models: free features H, a linear classifier W (K, d), a bias b.

Cross-entropy (Zhu et al., NeurIPS 2021):
    L = (1/N) sum_i CE(W h_i + b, y_i) + lam_W/2 ||W||_F^2 + lam_H/2 ||H||_F^2 + lam_b/2 ||b||^2
MSE (Tirer & Bruna, ICML 2022), Y the one-hot (N, K) labels:
    L = (1/(2N)) ||H W^T + 1 b^T - Y||_F^2 + lam_W/2 ||W||^2 + lam_H/2 ||H||^2 [+ lam_b/2 ||b||^2]

H (N, d) holds the features as rows, grouped by class; ``per_class`` may differ between classes.
With ``classifier="fixed-etf"`` W is frozen at ``classifier_norm`` times a simplex ETF (d >= K-1)
and only H (and b) learn (Zhu et al., section 5). Closed-form minimizers: :mod:`gflow.theory`.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from gflow import theory
from gflow.models.base import (
    Model,
    Readout,
    counts_of,
    cross_entropy,
    scalars,
    standard_normal,
    unit_weights,
)
from gflow.models.options import (
    CLASSES,
    DIM,
    ETF_METRICS,
    IMBALANCED_METRICS,
    MINIBATCH_KINDS,
    ORTHOGONAL_METRICS,
    PER_CLASS,
    STRUCTURE,
    WD_H,
    WD_W,
    ModelSpec,
    Option,
    OptionError,
    imbalanced,
)  # fmt: skip

LOSSES = ("ce", "mse")
CLASSIFIERS = ("learned", "fixed-etf")


def mean_squared_error(outputs, onehot, axis: int = 1, weights=None):
    """(1/(2N)) sum_i w_i ||outputs_i - Y_i||^2.

    Args:
        outputs: the outputs, (N, K) (or (K, N) with ``axis`` 0).
        onehot: Y, the one-hot labels, the shape of ``outputs``.
        axis: the class axis.
        weights: per-sample weights w, (N,); None: w = 1, (1/(2N)) ||outputs - Y||_F^2.

    Returns:
        The loss, a scalar.
    """
    count = outputs.size // outputs.shape[axis]
    w = unit_weights(count, outputs.dtype) if weights is None else weights
    return jnp.sum(jnp.expand_dims(w, axis) * optax.l2_loss(outputs, onehot)) / count


class UFM(Model):
    """A UFM with the chosen loss ("ce" or "mse") and classifier ("learned" or "fixed-etf").

    ``init(key)`` draws the learned parameters ``{"H": (N, d), "W": (K, d), "b": (K,)}``
    i.i.d. ``init_scale * N(0, 1)``; parameters that are not learned (b without bias, W when
    fixed) are absent from the pytree and ``readout`` reports their fixed value (b = 0, W the
    ETF). Built by :func:`ufm`, :func:`ufm_ce`, :func:`ufm_mse`.
    """

    feature_dim: int = eqx.field(static=True)
    loss_kind: str = eqx.field(static=True)
    has_bias: bool = eqx.field(static=True)
    classifier: str = eqx.field(static=True)
    model_name: str = eqx.field(static=True)
    wd_W: Array
    wd_H: Array
    wd_b: Array
    classifier_norm: Array
    init_scale: Array

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.model_name

    @property
    def dim(self) -> int:
        return self.feature_dim

    @property
    def bias(self) -> bool:
        return self.has_bias

    @property
    def learns_W(self) -> bool:
        """Whether W is learned (classifier "learned"), not frozen at the ETF."""
        return self.classifier == "learned"

    def init(self, key):
        K, d, dtype = self.num_classes, self.feature_dim, self.dtype
        kw, kh, kb = jax.random.split(key, 3)
        params = {"H": self.init_scale * standard_normal(kh, (self.num_samples, d), dtype)}
        if self.learns_W:
            params["W"] = self.init_scale * standard_normal(kw, (K, d), dtype)
        if self.has_bias:
            params["b"] = self.init_scale * standard_normal(kb, (K,), dtype)
        return params

    def readout(self, params):
        K = self.num_classes
        if self.learns_W:
            W = params["W"]
        else:
            etf = jnp.asarray(theory.simplex_etf(K, self.feature_dim), self.dtype)
            W = self.classifier_norm * etf
        b = params["b"] if self.has_bias else jnp.zeros((K,), W.dtype)
        return Readout(W, params["H"], b, jnp.asarray(self.labels))

    def weighted_loss(self, params, weights):
        """CE or MSE of the logits W H^T + b 1^T with per-sample weights w (N,), plus
        lam_W/2 ||W||^2 (learned W), lam_H/2 ||H||^2 and lam_b/2 ||b||^2 (with a bias)."""
        W, H, b, _ = self.readout(params)
        fit = cross_entropy if self.loss_kind == "ce" else mean_squared_error
        # logits as (K, N), the sample axis minor: 1.3-1.6x faster on CPU than (N, K)
        value = fit(W @ H.T + b[:, None], self.onehot(axis=0), 0, weights)
        value = value + 0.5 * self.wd_H * jnp.sum(H**2)
        if self.learns_W:
            value = value + 0.5 * self.wd_W * jnp.sum(W**2)
        if self.has_bias:
            value = value + 0.5 * self.wd_b * jnp.sum(b**2)
        return value


def ufm(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    *,
    loss: str = "ce",
    wd_W: float = 5e-3,
    wd_H: float = 5e-3,
    wd_b: float = 5e-3,
    bias: bool = True,
    classifier: str = "learned",
    classifier_norm: float = 1.0,
    init_scale: float = 0.1,
    dtype=jnp.float32,
    name: str | None = None,
) -> UFM:
    """A :class:`UFM`.

    Args:
        classes: K.
        dim: d, the feature dimension.
        per_class: n for every class, or the K counts n_k.
        loss: "ce" or "mse".
        wd_W: lam_W, the weight decay of W.
        wd_H: lam_H, the weight decay of H.
        wd_b: lam_b, the weight decay of b.
        bias: learn a bias b (K,).
        classifier: "learned", or "fixed-etf" (W frozen at a simplex ETF, d >= K - 1).
        classifier_norm: the frozen rows' norm (fixed-etf).
        init_scale: the parameters' entries are i.i.d. ``init_scale * N(0, 1)``.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).
        name: the model's name; None: "ufm-" + loss.

    Returns:
        The model.
    """
    dtype = jnp.dtype(dtype)
    return UFM(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, feature_dim=dim,
        loss_kind=loss, has_bias=bias, classifier=classifier, model_name=name or f"ufm-{loss}",
        **scalars(dtype, wd_W=wd_W, wd_H=wd_H, wd_b=wd_b, classifier_norm=classifier_norm,
                  init_scale=init_scale),
    )  # fmt: skip


def ufm_ce(classes, dim, per_class, wd_W=5e-3, wd_H=5e-3, wd_b=5e-3, bias=True, **kwargs) -> UFM:
    """UFM with cross-entropy and weight decay on W, H and b (Zhu et al. 2021).

    Args:
        classes: K.
        dim: d.
        per_class: n for every class, or the K counts n_k.
        wd_W: lam_W.
        wd_H: lam_H.
        wd_b: lam_b.
        bias: learn a bias b.
        **kwargs: the other arguments of :func:`ufm`.

    Returns:
        The :class:`UFM`.
    """
    return ufm(classes, dim, per_class, loss="ce", wd_W=wd_W, wd_H=wd_H, wd_b=wd_b, bias=bias,
               **kwargs)  # fmt: skip


def ufm_mse(classes, dim, per_class, wd_W=5e-3, wd_H=5e-3, wd_b=0.0, bias=True, **kwargs) -> UFM:
    """UFM with MSE; the bias is unregularized by default (Tirer & Bruna 2022).

    Args:
        classes: K.
        dim: d.
        per_class: n for every class, or the K counts n_k.
        wd_W: lam_W.
        wd_H: lam_H.
        wd_b: lam_b (0: unregularized).
        bias: learn a bias b.
        **kwargs: the other arguments of :func:`ufm`.

    Returns:
        The :class:`UFM`.
    """
    return ufm(classes, dim, per_class, loss="mse", wd_W=wd_W, wd_H=wd_H, wd_b=wd_b, bias=bias,
               **kwargs)  # fmt: skip


# --------------------------------------------------------------------------- declarations

WD_B = Option("wd_b", "float", 5e-3, "weight decay of the bias b", low=0.0, bad=-1.0)
BIAS = Option("bias", "bool", True, "learn a bias b (K,)", STRUCTURE, bad=1)
CLASSIFIER = Option(
    "classifier", "str", "learned", "learned, or W frozen at a simplex ETF (d >= K - 1)",
    STRUCTURE, choices=CLASSIFIERS, bad="frozen",
)  # fmt: skip
CLASSIFIER_NORM = Option(
    "classifier_norm", "float", 1.0, "fixed-etf: the frozen rows' norm", above=0.0, bad=0
)


def _check_fixed_etf(o) -> None:
    if o["classifier"] == "fixed-etf" and o["dim"] < o["classes"] - 1:
        raise OptionError(
            f"model.dim: a fixed simplex ETF of {o['classes']} classes needs dim >= "
            f"{o['classes'] - 1}, got {o['dim']}"
        )


def _balanced(counts: tuple[int, ...]) -> int | None:
    return counts[0] if len(set(counts)) == 1 else None


def seli_attrs(o, counts) -> dict:
    """Unregularized CE without bias, imbalanced, d >= K - 1 (the ULPM): SELI's max normalized
    margin 1/||Zhat||_* and ||Zhat||_*, Zhat = Y - 11^T/K (Thrampoulidis et al. 2022)."""
    if _balanced(counts) is not None or o["wd_W"] != 0 or o["wd_H"] != 0:
        return {}
    if o["dim"] < o["classes"] - 1:
        return {}
    geometry = theory.seli(counts)
    return {
        "theory_normalized_margin": geometry.margin,
        "theory_seli_nuclear_norm": geometry.nuclear_norm,
    }


def ce_imbalanced_attrs(o, counts) -> dict:
    """Imbalanced, learned W: without weight decay or bias SELI (:func:`seli_attrs`); with
    wd_W, wd_H > 0 and d >= K the optimum of the convex reduction (``theory_loss``) and, where
    the smallest count is shared by several classes, the sqrt(wd_W wd_H) at which they merge
    (``theory_minority_merge_wd`` = sqrt(n_B)/N) and whether they do (0/1,
    ``theory_minority_merged``)."""
    if o["classifier"] != "learned":
        return {}
    if o["wd_W"] == 0 and o["wd_H"] == 0:
        return {} if o["bias"] else seli_attrs(o, counts)
    if o["wd_W"] <= 0 or o["wd_H"] <= 0 or o["dim"] < o["classes"]:
        return {}
    attrs = {}
    opt = theory.ufm_ce_imbalanced_optimum(counts, o["wd_W"], o["wd_H"], o["wd_b"], o["bias"],
                                           max_iter=20_000)  # fmt: skip
    if opt.converged:
        attrs["theory_loss"] = opt.loss
    if counts.count(min(counts)) >= 2:
        threshold = theory.minority_merge_threshold(counts)
        attrs["theory_minority_merge_wd"] = threshold
        attrs["theory_minority_merged"] = int((o["wd_W"] * o["wd_H"]) ** 0.5 >= threshold)
    return attrs


def _ce_closed_form(o, counts) -> dict:
    """Zhu et al. 2021 (learned W, d >= K - 1) or the fixed-ETF optimum over H and b;
    imbalanced, :func:`ce_imbalanced_attrs`."""
    n, K = _balanced(counts), o["classes"]
    if n is None:
        return ce_imbalanced_attrs(o, counts)
    if o["classifier"] == "fixed-etf":
        if o["wd_H"] > 0 and (o["wd_b"] > 0 or not o["bias"]):
            opt = theory.ufm_ce_fixed_etf_optimum(K, n, o["wd_H"], o["classifier_norm"])
            return {"theory_H_norm_sq": opt.H_norm_sq, "theory_loss": opt.loss}
        return {}
    if o["wd_W"] <= 0 or o["wd_H"] <= 0 or o["dim"] < K - 1:
        return {}
    opt = theory.ufm_ce_optimum(K, n, o["wd_W"], o["wd_H"])
    return _optimum_attrs(opt, opt.rho)


def _mse_imbalanced_closed_form(o, counts) -> dict:
    """Dang et al. 2023, no bias, d >= K: per class k (lists of K values) the singular value
    sigma_k = (sqrt(n_k) - N sqrt(wd_W wd_H))_+ (``theory_sigma``), ||w_k||^2 and ||mu_k||^2
    (``theory_W_row_norm_sq``, ``theory_mean_norm_sq``), whether it lives (``theory_alive``,
    0/1) and the sqrt(wd_W wd_H) = sqrt(n_k)/N at which it dies (``theory_death_wd``)."""
    opt = theory.ufm_mse_imbalanced_optimum(counts, o["wd_W"], o["wd_H"])
    return {
        "theory_loss": opt.loss,
        "theory_sigma": [float(v) for v in opt.sigma],
        "theory_W_row_norm_sq": [float(v) for v in opt.W_gram.diagonal()],
        "theory_mean_norm_sq": [float(v) for v in opt.means_gram.diagonal()],
        "theory_alive": [int(v) for v in opt.alive],
        "theory_death_wd": [float(v) for v in opt.critical_c],
    }


def _mse_closed_form(o, counts) -> dict:
    """Tirer & Bruna 2022: d >= K, the bias (if any) unregularized; imbalanced without bias,
    :func:`_mse_imbalanced_closed_form`."""
    n, K = _balanced(counts), o["classes"]
    if o["classifier"] != "learned" or o["wd_W"] <= 0 or o["wd_H"] <= 0:
        return {}
    if n is None:
        ok = o["dim"] >= K and not o["bias"]
        return _mse_imbalanced_closed_form(o, counts) if ok else {}
    if o["dim"] < K or (o["wd_b"] != 0 and o["bias"]):
        return {}
    opt = theory.ufm_mse_optimum(K, n, o["wd_W"], o["wd_H"], o["bias"])
    return _optimum_attrs(opt, opt.W_norm_sq)


def _optimum_attrs(opt, W_norm_sq) -> dict:
    return {
        "theory_collapsed": int(opt.collapsed),
        "theory_W_norm_sq": W_norm_sq,
        "theory_H_norm_sq": opt.H_norm_sq,
        "theory_loss": opt.loss,
    }


_UFM_OPTIONS = (CLASSES, DIM, PER_CLASS, WD_W, WD_H, WD_B, BIAS, CLASSIFIER, CLASSIFIER_NORM)

UFM_CE = ModelSpec(
    name="ufm-ce",
    summary="free features H, classifier W, bias b; cross-entropy + weight decay (Zhu et al. "
    "2021)",
    options=_UFM_OPTIONS,
    build=functools.partial(ufm, loss="ce"),
    kinds=MINIBATCH_KINDS,
    check=_check_fixed_etf,
    closed_form=_ce_closed_form,
    targets=lambda o: ("nc1", "nc3", "nc4") if o["classifier"] == "fixed-etf"
    else IMBALANCED_METRICS if imbalanced(o) else ETF_METRICS,
    geometry=lambda o: "features on the fixed simplex ETF" if o["classifier"] == "fixed-etf"
    else "imbalanced: collapsed features, equal-size minorities merge where sqrt(n_B)/N <= "
    "sqrt(wd_W wd_H); SELI in direction without weight decay" if imbalanced(o)
    else "simplex ETF (W = H = 0 beyond K sqrt(n wd_W wd_H) = 1)",
)  # fmt: skip

UFM_MSE = ModelSpec(
    name="ufm-mse",
    summary="the same with the MSE loss, the bias unregularized by default (Tirer & Bruna 2022)",
    options=tuple(o.with_default(0.0) if o is WD_B else o for o in _UFM_OPTIONS),
    build=functools.partial(ufm, loss="mse"),
    kinds=MINIBATCH_KINDS,
    check=_check_fixed_etf,
    closed_form=_mse_closed_form,
    targets=lambda o: IMBALANCED_METRICS if imbalanced(o)
    else ETF_METRICS if o["bias"] else ORTHOGONAL_METRICS,
    geometry=lambda o: "imbalanced, no bias: orthogonal classifier rows of norms^2 sqrt(wd_H/wd_W) "
    "(sqrt(n_k) - N sqrt(wd_W wd_H))_+, class k dead where n_k <= N^2 wd_W wd_H"
    if imbalanced(o) and not o["bias"]
    else "imbalanced: collapsed features" if imbalanced(o)
    else ("simplex ETF" if o["bias"] else "orthogonal frame")
    + " (W = H = 0 beyond K sqrt(n wd_W wd_H) = 1)",
)  # fmt: skip
