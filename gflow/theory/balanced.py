"""Closed forms of the balanced seed models (the papers gflow started from).

- simplex ETF: K unit vectors with pairwise cosine -1/(K-1); Gram (K/(K-1)) (I - 11^T/K).
- UFM-CE optimum (Zhu et al. 2021): with c = sqrt(lam_W / (n lam_H)) and K sqrt(n lam_W lam_H) < 1,
  rho = ||W||_F^2 = ((K-1)/c) log((c - (K-1) lam_W) / lam_W), ||H||_F^2 = n c^2 rho, b = 0,
  W W^T = (rho/(K-1)) (I - 11^T/K), h_i = c w_{y_i}; otherwise W = H = 0.
- ULPM max normalized margin (Ji et al. 2022): gamma* = 1 / (sqrt(n) (K-1)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


def etf_gram(classes: int) -> np.ndarray:
    """Gram matrix of a unit-norm simplex ETF: (K/(K-1)) (I_K - 11^T/K).

    Args:
        classes: K >= 2.

    Returns:
        The Gram matrix, (K, K): ones on the diagonal, -1/(K-1) off it.
    """
    K = classes
    return (K / (K - 1)) * (np.eye(K) - np.ones((K, K)) / K)


def simplex_etf(classes: int, dim: int | None = None) -> np.ndarray:
    """K unit-norm rows with pairwise cosine -1/(K-1): a simplex ETF, Gram matrix :func:`etf_gram`.

    Args:
        classes: K >= 2.
        dim: the ambient dimension, >= K-1 (default K-1); the rows are padded with zeros.

    Returns:
        The rows, (K, dim).

    Raises:
        ValueError: dim < K-1.
    """
    K = classes
    dim = K - 1 if dim is None else dim
    if dim < K - 1:
        raise ValueError(f"dim: a simplex ETF of {K} classes needs dim >= {K - 1}, got {dim}")
    centring = np.eye(K) - np.ones((K, K)) / K
    eigvals, eigvecs = np.linalg.eigh(centring)
    basis = eigvecs[:, eigvals > 0.5]  # the K-1 dimensional range of the centring projector
    rows = math.sqrt(K / (K - 1)) * centring @ basis
    return np.pad(rows, ((0, 0), (0, dim - (K - 1))))


class UFMCEOptimum(NamedTuple):
    """Global minimizer of balanced UFM-CE, in closed form (:func:`ufm_ce_optimum`).

    Attributes:
        collapsed: False where the minimizer is W = H = 0.
        c: the feature scale, h_i = c w_(y_i).
        rho: ||W||_F^2.
        H_norm_sq: ||H||_F^2 = n c^2 rho.
        loss: L at the minimizer.
        W_gram: W W^T, (K, K).
    """

    collapsed: bool  # False: the minimizer is W = H = 0
    c: float  # h_i = c w_{y_i}
    rho: float  # ||W||_F^2
    H_norm_sq: float  # ||H||_F^2 = n c^2 rho
    loss: float  # L at the minimizer
    W_gram: np.ndarray  # W W^T, shape (K, K)


def ufm_ce_optimum(classes: int, per_class: int, wd_W: float, wd_H: float) -> UFMCEOptimum:
    """Closed-form minimizer of UFM-CE with balanced classes (Zhu et al. 2021).

    On the collapsed set the loss reduces to f(rho) = log(1 + (K-1) e^(-c rho/(K-1))) + lam_W rho,
    c = sqrt(lam_W / (n lam_H)), minimized at rho = ((K-1)/c) log((c - (K-1) lam_W)/lam_W) when
    K sqrt(n lam_W lam_H) < 1; beyond, the minimizer is W = H = 0 with loss log K. Needs d >= K-1.

    Args:
        classes: K.
        per_class: n, samples per class.
        wd_W: lam_W > 0.
        wd_H: lam_H > 0.

    Returns:
        The optimum: rho = ||W||_F^2, the loss, W W^T = (rho/(K-1)) (I - 11^T/K), ...

    Raises:
        ValueError: a weight decay is not positive.
    """
    K, n = classes, per_class
    if wd_W <= 0 or wd_H <= 0:
        raise ValueError("wd_W, wd_H: the UFM-CE closed form needs both weight decays > 0")
    c = math.sqrt(wd_W / (n * wd_H))
    if K * math.sqrt(n * wd_W * wd_H) >= 1:
        return UFMCEOptimum(False, c, 0.0, 0.0, math.log(K), np.zeros((K, K)))
    rho = (K - 1) / c * math.log((c - (K - 1) * wd_W) / wd_W)
    loss = math.log1p((K - 1) * math.exp(-c * rho / (K - 1))) + wd_W * rho
    gram = rho / (K - 1) * (np.eye(K) - np.ones((K, K)) / K)
    return UFMCEOptimum(True, c, rho, n * c**2 * rho, loss, gram)


def ulpm_max_margin(classes: int, per_class: int) -> float:
    """Max normalized margin of the balanced ULPM (Ji et al. 2022), gamma* = 1/(sqrt(n) (K-1)).

    Args:
        classes: K.
        per_class: n.

    Returns:
        gamma*.
    """
    return 1.0 / (math.sqrt(per_class) * (classes - 1))


def collapse_threshold(classes: int, per_class: int, wd_W: float, wd_H: float) -> float:
    """K sqrt(n lam_W lam_H): UFM-CE collapses to a nonzero ETF iff this is < 1.

    Args:
        classes: K.
        per_class: n.
        wd_W: lam_W.
        wd_H: lam_H.

    Returns:
        The threshold quantity.
    """
    return classes * math.sqrt(per_class * wd_W * wd_H)


class UFMMSEOptimum(NamedTuple):
    """Global minimizer of balanced UFM-MSE (Tirer & Bruna 2022), b unregularized.

    Attributes:
        collapsed: False where s <= 0: the minimizer is W = H = 0 (and b = 1/K with a bias).
        s: the collapse scale 1 - K sqrt(n lam_H lam_W).
        c: the feature scale, h_i = c w_(y_i), c = sqrt(lam_W / (n lam_H)).
        b: (K,): 1/K with a bias, 0 without.
        HW: class means times W^T, (K, K): s I, or s (I - 11^T/K) with a bias.
        W_gram: W W^T = sqrt(n lam_H / lam_W) HW.
        W_norm_sq: ||W||_F^2.
        H_norm_sq: ||H||_F^2.
        loss: (1 - s^2)/2, times (K-1)/K with a bias.
    """

    collapsed: bool  # False (s <= 0): the minimizer is W = H = 0 (and b = 1/K with a bias)
    s: float  # collapse scale 1 - K sqrt(n lam_H lam_W)
    c: float  # h_i = c w_{y_i}, c = sqrt(lam_W / (n lam_H))
    b: np.ndarray  # (K,): 1/K with a bias, 0 without
    HW: np.ndarray  # class means times W^T, (K, K): s I, or s (I - 11^T/K) with a bias
    W_gram: np.ndarray  # W W^T = sqrt(n lam_H / lam_W) * HW
    W_norm_sq: float
    H_norm_sq: float
    loss: float  # (1 - s^2)/2, times (K-1)/K with a bias


def ufm_mse_optimum(
    classes: int, per_class: int, wd_W: float, wd_H: float, bias: bool
) -> UFMMSEOptimum:
    """Closed-form minimizer of UFM-MSE with balanced classes (Tirer & Bruna 2022; needs d >= K).

    With s = 1 - K sqrt(n lam_H lam_W) > 0 the class means collapse with H_bar W^T = s I (no
    bias: an orthogonal frame) or s (I - 11^T/K) and b = 1/K (bias: a simplex ETF); s <= 0 gives 0.

    Args:
        classes: K.
        per_class: n.
        wd_W: lam_W > 0.
        wd_H: lam_H > 0.
        bias: whether the model learns a bias b (unregularized).

    Returns:
        The optimum.

    Raises:
        ValueError: a weight decay is not positive.
    """
    K, n = classes, per_class
    if wd_W <= 0 or wd_H <= 0:
        raise ValueError("wd_W, wd_H: the UFM-MSE closed form needs both weight decays > 0")
    s = 1.0 - K * math.sqrt(n * wd_H * wd_W)
    frame = np.eye(K) - (np.ones((K, K)) / K if bias else 0.0)
    b = np.full(K, 1.0 / K) if bias else np.zeros(K)
    shrink = (K - 1) / K if bias else 1.0
    c = math.sqrt(wd_W / (n * wd_H))
    if s <= 0:
        zero = np.zeros((K, K))
        return UFMMSEOptimum(False, s, c, b, zero, zero, 0.0, 0.0, 0.5 * shrink)
    gram = math.sqrt(n * wd_H / wd_W) * s * frame
    w2 = float(np.trace(gram))
    return UFMMSEOptimum(
        True, s, c, b, s * frame, gram, w2, n * c**2 * w2, 0.5 * shrink * (1 - s**2)
    )


class FixedETFOptimum(NamedTuple):
    """Minimizer of UFM-CE over H (and b) with W frozen at a scaled simplex ETF.

    Attributes:
        t: the feature scale, h_i = t w_(y_i).
        H_norm_sq: ||H||_F^2 = N t^2 a, a = ||w_k||^2.
        loss: L at the minimizer.
    """

    t: float  # h_i = t w_{y_i}
    H_norm_sq: float  # N t^2 a, a = ||w_k||^2
    loss: float


def ufm_ce_fixed_etf_optimum(
    classes: int, per_class: int, wd_H: float, classifier_norm: float
) -> FixedETFOptimum:
    """UFM-CE with W frozen at a simplex ETF of row norm sqrt(a) (Zhu et al., section 5), b = 0.

    The problem in (H, b) is strictly convex (wd_b > 0) and the ETF's symmetry forces
    h_i = t w_(y_i), with t >= 0 minimizing log(1 + (K-1) exp(-t a K/(K-1))) + (lam_H N a / 2) t^2,
    i.e. the root of K e^(-x) / (1 + (K-1) e^(-x)) = lam_H N t,  x = t a K/(K-1)  (found by
    bisection).

    Args:
        classes: K.
        per_class: n (N = K n).
        wd_H: lam_H > 0.
        classifier_norm: sqrt(a), the frozen rows' norm.

    Returns:
        The optimum over H.

    Raises:
        ValueError: wd_H is not positive.
    """
    K, N, a = classes, classes * per_class, classifier_norm**2
    if wd_H <= 0:
        raise ValueError("wd_H: the fixed-ETF optimum needs wd_H > 0")

    def slope(t):  # derivative of the 1-d objective, increasing in t
        x = t * a * K / (K - 1)
        return -a * K * math.exp(-x) / (1 + (K - 1) * math.exp(-x)) + wd_H * N * a * t

    lo, hi = 0.0, 1.0
    while slope(hi) < 0:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if slope(mid) < 0 else (lo, mid)
    t = 0.5 * (lo + hi)
    x = t * a * K / (K - 1)
    loss = math.log1p((K - 1) * math.exp(-x)) + 0.5 * wd_H * N * a * t**2
    return FixedETFOptimum(t, N * a * t**2, loss)


def le_margin_rate(classes: int, alpha: float, beta: float) -> float:
    """Growth rate (alpha - beta)/K of the LE-ODE's class-averaged mean margin (balanced classes).

    m(t) = m(0) exp(rate t) exactly; positive iff alpha > beta: the transition.

    Args:
        classes: K.
        alpha: the intra-class impact.
        beta: the inter-class impact.

    Returns:
        The rate.
    """
    return (alpha - beta) / classes


def le_contrast_rate(classes: int, alpha: float, beta: float) -> float:
    """Growth rate (alpha + beta/(K-1))/K of the LE-ODE's class contrasts.

    The contrasts are the per-class mean margins orthogonal to their average; this rate is above
    :func:`le_margin_rate` whenever beta > 0.

    Args:
        classes: K.
        alpha: the intra-class impact.
        beta: the inter-class impact.

    Returns:
        The rate.
    """
    return (alpha + beta / (classes - 1)) / classes
