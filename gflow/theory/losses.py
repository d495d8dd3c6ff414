"""Closed forms of the balanced UFM under other losses, and of the supervised contrastive loss.

**Label smoothing and focal loss** (Zhou, You, Li, Wang, Sun & Zhu, NeurIPS 2022, arXiv
2210.02192): the UFM of :mod:`gflow.models.ufm` with the cross-entropy replaced by

    LS:  l(z, y) = -sum_j q_j log p_j,   q = (1 - alpha) e_y + alpha/K,  alpha in [0, 1)
    FL:  l(z, y) = -(1 - p_y)^gamma log p_y,   gamma >= 0  (gamma = 0 is CE)

with p = softmax(z), weight decay wd_W, wd_H (and wd_b on a bias). Balanced classes, n per class,
d >= K - 1: every global minimizer is a collapsed simplex ETF with b = 0 and h_i = mu_{y_i}. With
t = ||w_k|| ||mu_k|| and the margin g = t K/(K - 1) (z_y - z_j at the ETF), the loss reduces to

    F* = min_{t >= 0} phi(g) + K sqrt(n) c t,   c = sqrt(wd_W wd_H),
    ||w_k||^2 = t sqrt(n wd_H/wd_W),   ||mu_k||^2 = t sqrt(wd_W/(n wd_H)),

    phi_CE(g) = log(1 + (K - 1) e^{-g}) = -log p,   p = 1/(1 + (K - 1) e^{-g}) (p_y at the ETF),
    phi_LS(g) = phi_CE(g) + alpha (K - 1) g/K,      phi_FL(g) = (1 - p)^gamma phi_CE(g).

(the weight decays enter through c only, by AM-GM over the split of t between ||w_k||, ||mu_k||.)
The zero solution W = H = 0 (F = phi(0) = log K; FL ((K - 1)/K)^gamma log K) is a local minimum
iff K sqrt(n) c >= kappa, the slope -phi'(0) K/(K - 1):

    kappa_CE = 1,   kappa_LS = 1 - alpha,   kappa_FL = ((K - 1)/K)^gamma (1 + gamma log K/(K - 1)).

kappa is also the global threshold while phi is convex (CE, LS; FL for small K and gamma); for
large K the focal loss is not convex near 0 and the optimum jumps to 0 at a larger c
(:func:`zero_global_threshold_wd`), first-order. The 1-d reduction and the kappa's are derived
from Zhou et al.'s ETF result and were checked against direct minimization of the full problem.

**Supervised contrastive loss** on N features of norm rho, temperature tau, P(i) the other
samples of i's class (n_k >= 2):

    L = (1/N) sum_i -(1/|P(i)|) sum_{p in P(i)} log[e^{h_i.h_p/tau} / sum_{a != i} e^{h_i.h_a/tau}].

- signed features, balanced, d >= K - 1: the simplex ETF of radius rho (every h_i its class
  vertex), F* = log(n - 1 + n (K - 1) e^{-rho^2 K/((K - 1) tau)}) (Graf, Hofer, Niethammer &
  Kwitt, ICML 2021, arXiv 2102.08817);
- non-negative features, any counts n_k, d >= K: an orthogonal frame of radius rho,
  F* = (1/N) sum_k n_k log(n_k - 1 + (N - n_k) e^{-rho^2/tau}) (Kini, Vakilian, Behnia, Gill &
  Thrampoulidis, ICLR 2024, arXiv 2306.07960).

Plain NumPy/SciPy in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from gflow.theory.balanced import simplex_etf

LOSS_KINDS = ("ce", "ls", "focal")


def _check(kind: str, smoothing: float, focal_gamma: float) -> None:
    if kind not in LOSS_KINDS:
        raise ValueError(f"kind: unknown loss {kind!r}; valid: {', '.join(LOSS_KINDS)}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing: must be in [0, 1), got {smoothing}")
    if focal_gamma < 0:
        raise ValueError(f"focal_gamma: must be >= 0, got {focal_gamma}")


def etf_loss_profile(
    kind: str, classes: int, margin: float, smoothing: float = 0.0, focal_gamma: float = 0.0
) -> tuple[float, float]:
    """(phi(g), phi'(g)): the per-sample loss at a simplex ETF of margin g = z_y - z_j >= 0.

    phi_CE' = -(1 - p); phi_LS' = -(1 - p) + alpha (K - 1)/K;
    phi_FL' = -(1 - p)^gamma (gamma p phi_CE + 1 - p), using dp/dg = p (1 - p).

    Args:
        kind: "ce", "ls" or "focal".
        classes: K.
        margin: g >= 0.
        smoothing: alpha in [0, 1), label smoothing (kind "ls").
        focal_gamma: gamma >= 0, the focal exponent (kind "focal").

    Returns:
        (phi(g), phi'(g)).

    Raises:
        ValueError: an unknown kind, or smoothing or focal_gamma out of range.
    """
    from scipy.special import expit  # scipy here, not at import: ~0.3 s of every start

    _check(kind, smoothing, focal_gamma)
    K, g = classes, margin
    shift = g - math.log(K - 1)
    p, q = float(expit(shift)), float(expit(-shift))  # p_y and 1 - p_y, without cancellation
    ce = math.log1p((K - 1) * math.exp(-g))
    if kind == "ce":
        return ce, -q
    if kind == "ls":
        slope = smoothing * (K - 1) / K
        return ce + slope * g, -q + slope
    weight = q**focal_gamma
    return weight * ce, -weight * (focal_gamma * p * ce + q)


def zero_loss(kind: str, classes: int, smoothing: float = 0.0, focal_gamma: float = 0.0) -> float:
    """phi(0), the loss of W = H = 0 (b = 0): log K, for FL ((K - 1)/K)^gamma log K.

    Args:
        kind: "ce", "ls" or "focal".
        classes: K.
        smoothing: alpha in [0, 1), label smoothing (kind "ls").
        focal_gamma: gamma >= 0, the focal exponent (kind "focal").

    Returns:
        phi(0).
    """
    return etf_loss_profile(kind, classes, 0.0, smoothing, focal_gamma)[0]


def zero_stability_kappa(
    kind: str, classes: int, smoothing: float = 0.0, focal_gamma: float = 0.0
) -> float:
    """kappa = -phi'(0) K/(K - 1): W = H = 0 is a local minimum iff K sqrt(n wd_W wd_H) >= kappa.

    CE 1, LS 1 - alpha, FL ((K - 1)/K)^gamma (1 + gamma log K/(K - 1)).

    Args:
        kind: "ce", "ls" or "focal".
        classes: K.
        smoothing: alpha in [0, 1), label smoothing (kind "ls").
        focal_gamma: gamma >= 0, the focal exponent (kind "focal").

    Returns:
        kappa.
    """
    K = classes
    return -etf_loss_profile(kind, K, 0.0, smoothing, focal_gamma)[1] * K / (K - 1)


def zero_threshold_wd(
    kind: str, classes: int, per_class: int, smoothing: float = 0.0, focal_gamma: float = 0.0
) -> float:
    """lambda_c = kappa/(K sqrt(n)): the sqrt(wd_W wd_H) from which W = H = 0 is locally stable.

    The global threshold too where phi is convex, see :func:`zero_global_threshold_wd`.

    Args:
        kind: "ce", "ls" or "focal".
        classes: K.
        per_class: n.
        smoothing: alpha in [0, 1), label smoothing (kind "ls").
        focal_gamma: gamma >= 0, the focal exponent (kind "focal").

    Returns:
        lambda_c.
    """
    kappa = zero_stability_kappa(kind, classes, smoothing, focal_gamma)
    return kappa / (classes * math.sqrt(per_class))


def zero_global_threshold_wd(
    kind: str, classes: int, per_class: int, smoothing: float = 0.0, focal_gamma: float = 0.0
) -> float:
    """The sqrt(wd_W wd_H) from which W = H = 0 is the global minimizer.

    sup_(t > 0) (phi(0) - phi(g))/(K sqrt(n) t), g = t K/(K - 1) (F* = phi(0) iff
    phi(g) + K sqrt(n) c t >= phi(0) for every t). Equal to :func:`zero_threshold_wd` (the limit
    t -> 0) where phi is convex; larger where it is not (FL at large K).

    Args:
        kind: "ce", "ls" or "focal".
        classes: K.
        per_class: n.
        smoothing: alpha in [0, 1), label smoothing (kind "ls").
        focal_gamma: gamma >= 0, the focal exponent (kind "focal").

    Returns:
        The threshold on sqrt(wd_W wd_H).
    """
    from scipy.optimize import minimize_scalar  # (scipy: see etf_loss_profile)

    K, n = classes, per_class

    def ratio(g):  # (phi(0) - phi(g))/(K sqrt(n) t), t = g (K - 1)/K
        drop = (
            zero_loss(kind, K, smoothing, focal_gamma)
            - etf_loss_profile(kind, K, g, smoothing, focal_gamma)[0]
        )
        return drop / (math.sqrt(n) * (K - 1) * g)

    local = zero_threshold_wd(kind, K, n, smoothing, focal_gamma)
    grid = np.geomspace(1e-6, 200.0, 4001)
    values = np.array([ratio(g) for g in grid])
    k = int(np.argmax(values))
    if k == 0 or values[k] <= local:
        return local
    found = minimize_scalar(lambda g: -ratio(g), bounds=(grid[k - 1], grid[k + 1]),
                            method="bounded", options={"xatol": 1e-12})  # fmt: skip
    return max(local, -float(found.fun), float(values[k]))


class LossOptimum(NamedTuple):
    """Global minimizer of the balanced UFM under CE, LS or FL (d >= K - 1), from the 1-d reduction.

    Attributes:
        collapsed: a nonzero simplex ETF (False: W = H = 0).
        t: ||w_k|| ||mu_k||.
        margin: g = t K/(K - 1).
        W_norm_sq: ||W||_F^2 = K t sqrt(n wd_H/wd_W).
        H_norm_sq: ||H||_F^2 = N ||mu_k||^2 = K n t sqrt(wd_W/(n wd_H)).
        loss: F*.
        zero_loss: phi(0), the loss of W = H = 0.
        zero_threshold_wd: lambda_c = kappa/(K sqrt(n)) (local stability of 0).
    """

    collapsed: bool  # a nonzero simplex ETF (False: W = H = 0)
    t: float  # ||w_k|| ||mu_k||
    margin: float  # g = t K/(K - 1)
    W_norm_sq: float  # ||W||_F^2 = K t sqrt(n wd_H/wd_W)
    H_norm_sq: float  # ||H||_F^2 = N ||mu_k||^2 = K n t sqrt(wd_W/(n wd_H))
    loss: float  # F*
    zero_loss: float  # phi(0), the loss of W = H = 0
    zero_threshold_wd: float  # lambda_c = kappa/(K sqrt(n)) (local stability of 0)


def ufm_loss_optimum(
    kind: str,
    classes: int,
    per_class: int,
    wd_W: float,
    wd_H: float,
    smoothing: float = 0.0,
    focal_gamma: float = 0.0,
) -> LossOptimum:
    """The 1-d reduction min_(t >= 0) phi(tK/(K-1)) + K sqrt(n) c t, solved globally.

    Every stationary point (a root of the derivative, bracketed on a grid of t in
    [0, phi(0)/(K sqrt(n) c)], beyond which the objective exceeds phi(0)) and t = 0 are compared;
    c = sqrt(wd_W wd_H).

    Args:
        kind: "ce", "ls" or "focal".
        classes: K.
        per_class: n.
        wd_W: weight decay of W, > 0.
        wd_H: weight decay of H, > 0.
        smoothing: alpha in [0, 1), label smoothing (kind "ls").
        focal_gamma: gamma >= 0, the focal exponent (kind "focal").

    Returns:
        The optimum.

    Raises:
        ValueError: a weight decay is not positive, an unknown kind, or an option out of range.
    """
    from scipy.optimize import brentq  # (scipy: see etf_loss_profile)

    _check(kind, smoothing, focal_gamma)
    if wd_W <= 0 or wd_H <= 0:
        raise ValueError("wd_W, wd_H: the closed form needs both weight decays > 0")
    K, n = classes, per_class
    slope = K * math.sqrt(n * wd_W * wd_H)
    scale = K / (K - 1)

    def objective(t):
        return etf_loss_profile(kind, K, t * scale, smoothing, focal_gamma)[0] + slope * t

    def derivative(t):
        return etf_loss_profile(kind, K, t * scale, smoothing, focal_gamma)[1] * scale + slope

    zero = objective(0.0)
    t_max = zero / slope
    grid = np.unique(np.concatenate([np.linspace(0.0, t_max, 2001),
                                     np.geomspace(t_max * 1e-9, t_max, 2001)]))  # fmt: skip
    signs = np.array([derivative(t) for t in grid])
    best_t, best = 0.0, zero
    for k in np.flatnonzero((signs[:-1] < 0) & (signs[1:] >= 0)):  # local minima
        t = brentq(derivative, grid[k], grid[k + 1], xtol=1e-15, rtol=1e-15, maxiter=500)
        if objective(t) < best:
            best_t, best = t, objective(t)
    ratio = math.sqrt(n * wd_H / wd_W)
    return LossOptimum(
        collapsed=best_t > 0, t=best_t, margin=best_t * scale, W_norm_sq=K * best_t * ratio,
        H_norm_sq=K * n * best_t / ratio, loss=best, zero_loss=zero,
        zero_threshold_wd=zero_threshold_wd(kind, K, n, smoothing, focal_gamma),
    )  # fmt: skip


# --------------------------------------------------------------------------- SupCon


def supcon_etf_loss(classes: int, per_class: int, feature_norm: float, temperature: float) -> float:
    """F* = log(n - 1 + n (K - 1) exp(-rho^2 K/((K - 1) tau))) at the simplex ETF of radius rho.

    Signed features, balanced, d >= K - 1 (Graf et al. 2021).

    Args:
        classes: K.
        per_class: n >= 2.
        feature_norm: rho > 0.
        temperature: tau > 0.

    Returns:
        F*.
    """
    K, n, rho, tau = classes, per_class, feature_norm, temperature
    return math.log(n - 1 + n * (K - 1) * math.exp(-(rho**2) * K / ((K - 1) * tau)))


def supcon_orthogonal_loss(counts: Sequence[int], feature_norm: float, temperature: float) -> float:
    """F* = (1/N) sum_k n_k log(n_k - 1 + (N - n_k) exp(-rho^2/tau)) at the orthogonal frame.

    Non-negative features, any counts, d >= K, the frame of radius rho (Kini et al. 2024).

    Args:
        counts: the per-class counts n_k >= 2.
        feature_norm: rho > 0.
        temperature: tau > 0.

    Returns:
        F*.
    """
    counts = np.asarray(counts, float)
    N, decay = counts.sum(), math.exp(-(feature_norm**2) / temperature)
    return float(np.sum(counts * np.log(counts - 1 + (N - counts) * decay)) / N)


def supcon_loss(features: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    """The SupCon loss of given features, computed directly.

    Args:
        features: the features h_i as rows, (N, d).
        labels: integer labels, (N,); every class needs two samples or more.
        temperature: tau > 0.

    Returns:
        L.
    """
    S = np.asarray(features, float) @ np.asarray(features, float).T / temperature
    N = S.shape[0]
    off = ~np.eye(N, dtype=bool)
    positive = (labels[:, None] == labels[None, :]) & off
    top = np.max(np.where(off, S, -np.inf), axis=1, keepdims=True)
    log_denominator = top[:, 0] + np.log(np.sum(np.where(off, np.exp(S - top), 0.0), axis=1))
    mean_positive = np.sum(np.where(positive, S, 0.0), axis=1) / positive.sum(axis=1)
    return float(np.mean(log_denominator - mean_positive))


class SupConOptimum(NamedTuple):
    """Global minimizer of the SupCon loss on features of norm rho (every feature its class mean).

    Attributes:
        geometry: "simplex ETF" or "orthogonal frame".
        means: the class means, (K, d), rows of norm rho.
        loss: F*.
    """

    geometry: str  # "simplex ETF" | "orthogonal frame"
    means: np.ndarray  # (K, d), rows of norm rho
    loss: float


def supcon_optimum(
    counts: Sequence[int], dim: int, feature_norm: float, temperature: float, nonnegative: bool
) -> SupConOptimum | None:
    """The known optimum of the SupCon loss, where one is known.

    Non-negative features with d >= K: the orthogonal frame rho e_k (any counts); signed,
    balanced with d >= K - 1: the simplex ETF.

    Args:
        counts: the per-class counts n_k.
        dim: d.
        feature_norm: rho > 0.
        temperature: tau > 0.
        nonnegative: features h_i >= 0.

    Returns:
        The optimum, or None where no closed form is known.

    Raises:
        ValueError: feature_norm or temperature not positive.
    """
    counts = tuple(int(c) for c in counts)
    K, rho = len(counts), feature_norm
    if feature_norm <= 0 or temperature <= 0:
        raise ValueError("feature_norm, temperature: must be > 0")
    if nonnegative and dim >= K:
        means = rho * np.eye(K, dim)
        return SupConOptimum(
            "orthogonal frame", means, supcon_orthogonal_loss(counts, rho, temperature)
        )
    if not nonnegative and len(set(counts)) == 1 and dim >= K - 1:
        loss = supcon_etf_loss(K, counts[0], rho, temperature)
        return SupConOptimum("simplex ETF", rho * simplex_etf(K, dim), loss)
    return None
