"""Closed forms of the UFM with imbalanced classes: counts n_k, N = sum n_k, D = diag(n_k),
P = I - 11^T/K, Y the one-hot (N, K) labels, features H (N, d) as rows, classifier W (K, d).

- SELI (Thrampoulidis, Kini, Vakilian & Behnia, NeurIPS 2022, arXiv 2208.05512): unregularized
  cross-entropy without bias (the ULPM) converges in direction to the UFM-SVM
  min 1/2 (||W||^2 + ||H||^2) s.t. z_{i,y_i} - z_{i,j} >= 1, whose minimizers (d >= K - 1) are
  H W^T = Zhat = Y - 11^T/K, W W^T = (P D P)^{1/2}, M M^T = D^{-1/2} (D^{1/2} P D^{1/2})^{1/2}
  D^{-1/2} = ((P D P)^{1/2})^+ (M the class means), with value ||Zhat||_* = tr (P D P)^{1/2}.
- Minority collapse with weight decay, c = sqrt(wd_W wd_H): UFM-MSE without bias (Dang et al.,
  ICML 2023, arXiv 2301.00437), per-class singular values sigma_k = (sqrt(n_k) - N c)_+; and the
  UFM-CE convex reduction over X = D^{1/2} M W^T (K, K) (Hong & Ling, arXiv 2309.09725), where
  equal-size classes of n_B samples share one mean and classifier iff sqrt(n_B)/N <= c.

Plain NumPy in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


def _psd_sqrt(A: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix; eigenvalues at rounding level count as 0 (a
    rank-deficient A would otherwise gain sqrt(1e-16) = 1e-8 per zero eigenvalue)."""
    w, V = np.linalg.eigh(0.5 * (A + A.T))
    w = np.where(w > 1e-12 * max(float(w.max()), 0.0), w, 0.0)
    return (V * np.sqrt(w)) @ V.T


def _counts(counts: Sequence[int]) -> np.ndarray:
    ns = np.asarray(counts, float)
    if ns.ndim != 1 or len(ns) < 2 or np.any(ns < 1):
        raise ValueError(f"counts: need K >= 2 positive per-class counts, got {counts!r}")
    return ns


class SELI(NamedTuple):
    """The SELI geometry at the SVM scale (minimum margin 1), :func:`seli`.

    Attributes:
        Z: H W^T = Zhat = Y - 11^T/K, (N, K), rows per sample grouped by class.
        W_gram: W W^T = (P D P)^{1/2}, (K, K).
        means_gram: M M^T of the raw class means, (K, K).
        nuclear_norm: ||Zhat||_* = tr (P D P)^{1/2}, the SVM value 1/2 (||W||^2 + ||H||^2).
        margin: the max normalized margin 1/||Zhat||_* (balanced: 1/(sqrt(n)(K-1))).
    """

    Z: np.ndarray  # H W^T = Zhat = Y - 11^T/K, (N, K), rows per sample grouped by class
    W_gram: np.ndarray  # W W^T = (P D P)^{1/2}, (K, K)
    means_gram: np.ndarray  # M M^T of the raw class means, (K, K)
    nuclear_norm: float  # ||Zhat||_* = tr (P D P)^{1/2} = the SVM value 1/2 (||W||^2 + ||H||^2)
    margin: float  # max normalized margin 1/||Zhat||_* (balanced: 1/(sqrt(n)(K-1)))


def seli(counts: Sequence[int]) -> SELI:
    """The SELI geometry of Thrampoulidis et al. 2022 for per-class counts n_k (needs d >= K-1).

    Zhat = Y - 11^T/K = Y P, so Zhat^T Zhat = P D P; W W^T = (P D P)^{1/2},
    M M^T = D^{-1/2} (D^{1/2} P D^{1/2})^{1/2} D^{-1/2}. The normalized margin
    min_(i, j != y_i) (z_(i,y_i) - z_(i,j)) / (||W||^2/2 + ||H||^2/2) is at most 1/||Zhat||_*.

    Args:
        counts: the K >= 2 per-class counts n_k.

    Returns:
        The geometry.

    Raises:
        ValueError: fewer than two counts, or a count below 1.
    """
    ns = _counts(counts)
    K = len(ns)
    P = np.eye(K) - 1.0 / K
    labels = np.repeat(np.arange(K), ns.astype(int))
    Z = np.eye(K)[labels] @ P
    W_gram = _psd_sqrt(P @ np.diag(ns) @ P)
    root = np.sqrt(ns)
    means_gram = _psd_sqrt(root[:, None] * P * root[None, :]) / np.outer(root, root)
    nuclear = float(np.trace(W_gram))
    return SELI(Z, W_gram, means_gram, nuclear, 1.0 / nuclear)


def seli_distance(Z: np.ndarray, counts: Sequence[int]) -> float:
    """|| Z/||Z||_F - Zhat/||Zhat||_F ||_F: the direction distance of logits Z = H W^T to SELI.

    Args:
        Z: logits H W^T, (N, K), rows grouped by class.
        counts: the per-class counts n_k.

    Returns:
        The distance, in [0, 2]; 0 iff Z is a positive multiple of Zhat.
    """
    target = seli(counts).Z
    Z = np.asarray(Z, float)
    return float(np.linalg.norm(Z / np.linalg.norm(Z) - target / np.linalg.norm(target)))


class UFMMSEImbalancedOptimum(NamedTuple):
    """Global minimizer of UFM-MSE without bias, imbalanced (Dang et al. 2023).

    Attributes:
        sigma: (K,) per-class singular values (sqrt(n_k) - N c)_+ of X = D^{1/2} M W^T.
        alive: (K,) bool, sigma_k > 0 (class k dies, w_k = mu_k = 0, iff n_k <= N^2 c^2).
        critical_c: (K,) sqrt(n_k)/N: class k dies once sqrt(wd_W wd_H) reaches it.
        W_gram: W W^T = sqrt(wd_H/wd_W) diag(sigma), (K, K).
        means_gram: M M^T = sqrt(wd_W/wd_H) diag(sigma/n), (K, K).
        HW: M W^T = diag(sigma/sqrt(n)), (K, K).
        W_norm_sq: sqrt(wd_H/wd_W) sum sigma.
        H_norm_sq: sqrt(wd_W/wd_H) sum sigma.
        loss: sum_k (sqrt(n_k) - sigma_k)^2/(2N) + c sigma_k.
    """

    sigma: np.ndarray  # (K,) per-class singular values (sqrt(n_k) - N c)_+ of X = D^{1/2} M W^T
    alive: np.ndarray  # (K,) bool, sigma_k > 0 (class k dies, w_k = mu_k = 0, iff n_k <= N^2 c^2)
    critical_c: np.ndarray  # (K,) sqrt(n_k)/N: class k dies once sqrt(wd_W wd_H) reaches it
    W_gram: np.ndarray  # W W^T = sqrt(wd_H/wd_W) diag(sigma), (K, K)
    means_gram: np.ndarray  # M M^T = sqrt(wd_W/wd_H) diag(sigma/n), (K, K)
    HW: np.ndarray  # M W^T = diag(sigma/sqrt(n)), (K, K)
    W_norm_sq: float  # sqrt(wd_H/wd_W) sum sigma
    H_norm_sq: float  # sqrt(wd_W/wd_H) sum sigma
    loss: float  # sum_k (sqrt(n_k) - sigma_k)^2/(2N) + c sigma_k


def ufm_mse_imbalanced_optimum(
    counts: Sequence[int], wd_W: float, wd_H: float
) -> UFMMSEImbalancedOptimum:
    """Minimizer of (1/(2N)) ||H W^T - Y||^2 + wd_W/2 ||W||^2 + wd_H/2 ||H||^2, imbalanced classes.

    Dang et al. 2023 (needs d >= K). Features collapse to their means; with X = D^{1/2} M W^T
    the loss is (1/(2N)) ||X - D^{1/2}||^2 + c ||X||_*, c = sqrt(wd_W wd_H), minimized by
    singular-value thresholding: X = diag(sigma), sigma_k = (sqrt(n_k) - N c)_+.

    Args:
        counts: the per-class counts n_k.
        wd_W: weight decay of W, > 0.
        wd_H: weight decay of H, > 0.

    Returns:
        The optimum.

    Raises:
        ValueError: a weight decay is not positive, or the counts are not K >= 2 positive ints.
    """
    if wd_W <= 0 or wd_H <= 0:
        raise ValueError("wd_W, wd_H: the UFM-MSE closed form needs both weight decays > 0")
    ns = _counts(counts)
    N, c = ns.sum(), math.sqrt(wd_W * wd_H)
    root = np.sqrt(ns)
    sigma = np.maximum(root - N * c, 0.0)
    loss = float(np.sum((root - sigma) ** 2 / (2 * N) + c * sigma))
    r = math.sqrt(wd_H / wd_W)
    return UFMMSEImbalancedOptimum(
        sigma, sigma > 0, root / N, r * np.diag(sigma), np.diag(sigma / ns) / r,
        np.diag(sigma / root), r * float(sigma.sum()), float(sigma.sum()) / r, loss,
    )  # fmt: skip


def minority_merge_threshold(counts: Sequence[int], group: Sequence[int] | None = None) -> float:
    """sqrt(n_B)/N: where a group of equal-size minority classes merges at the UFM-CE optimum.

    A group of equal-size classes (n_B samples each) shares one class mean and one classifier
    row at the UFM-CE optimum (d >= K, wd_W, wd_H > 0) iff sqrt(wd_W wd_H) >= this value.
    Continuous: the split of the means and classifiers vanishes like (threshold - c)^{1/2};
    independent of wd_b and of whether there is a bias. From the nuclear-norm subgradient of the
    convex reduction (:func:`ufm_ce_imbalanced_optimum`): merged rows of X are equal, and equality
    is optimal iff their difference in the CE gradient, of size sqrt(n_B)/N per unit of the
    split, fits under c.

    Args:
        counts: the per-class counts n_k.
        group: the classes of the group (default: those of the smallest count, at least two).

    Returns:
        The threshold on sqrt(wd_W wd_H).

    Raises:
        ValueError: the group has fewer than two classes or classes of different sizes.
    """
    ns = _counts(counts)
    group = np.flatnonzero(ns == ns.min()) if group is None else np.asarray(group, int)
    if len(group) < 2 or len(set(ns[group])) != 1:
        raise ValueError(
            f"group: need at least two classes of equal size, got counts {list(ns[group])}"
        )
    return float(math.sqrt(ns[group[0]]) / ns.sum())


class UFMCEImbalancedOptimum(NamedTuple):
    """Global minimizer of UFM-CE, imbalanced, from its convex reduction.

    Attributes:
        loss: F*.
        X: D^{1/2} M W^T at the optimum, (K, K).
        b: (K,) bias (0 without; with wd_b = 0 fixed only up to + const 1).
        sigma: the singular values of X, descending.
        W_gram: W W^T = sqrt(wd_H/wd_W) (X^T X)^{1/2}.
        means_gram: M M^T = sqrt(wd_W/wd_H) D^{-1/2} (X X^T)^{1/2} D^{-1/2}.
        W_norm_sq: sqrt(wd_H/wd_W) ||X||_*.
        H_norm_sq: sqrt(wd_W/wd_H) ||X||_*.
        iterations: the proximal-gradient iterations taken.
        converged: False where max_iter ran out before the proximal step fell below tol.
    """

    loss: float  # F*
    X: np.ndarray  # D^{1/2} M W^T at the optimum, (K, K)
    b: np.ndarray  # (K,) bias (0 without; with wd_b = 0 fixed only up to + const 1)
    sigma: np.ndarray  # singular values of X, descending
    W_gram: np.ndarray  # W W^T = sqrt(wd_H/wd_W) (X^T X)^{1/2}
    means_gram: np.ndarray  # M M^T = sqrt(wd_W/wd_H) D^{-1/2} (X X^T)^{1/2} D^{-1/2}
    W_norm_sq: float  # sqrt(wd_H/wd_W) ||X||_*
    H_norm_sq: float  # sqrt(wd_W/wd_H) ||X||_*
    iterations: int
    converged: bool  # False: max_iter ran out before the proximal step fell below tol


def ufm_ce_imbalanced_optimum(
    counts: Sequence[int],
    wd_W: float,
    wd_H: float,
    wd_b: float = 0.0,
    bias: bool = True,
    *,
    tol: float = 1e-12,
    max_iter: int = 200_000,
) -> UFMCEImbalancedOptimum:
    """Minimizer of UFM-CE for per-class counts n_k (needs d >= K, wd_W, wd_H > 0).

    The loss (1/N) sum_i CE(W h_i + b, y_i) + wd_W/2 ||W||^2 + wd_H/2 ||H||^2 + wd_b/2 ||b||^2.
    Features collapse to their class means M (K, d) (strict convexity in each h_i); with
    X = D^{1/2} M W^T and c = sqrt(wd_W wd_H), the balanced factorization of X gives the convex
    problem (Hong & Ling 2023)

        F* = min_(X, b) (1/N) sum_k n_k CE(X_k/sqrt(n_k) + b, k) + c ||X||_* + wd_b/2 ||b||^2,

    solved here by accelerated proximal gradient (FISTA with restarts; singular-value soft
    thresholding), step N for X and 1/(1 + wd_b) for b (the smooth part's curvature is at most
    1/N in X and 1 + wd_b in b). From X = U S V^T: M = (wd_W/wd_H)^{1/4} D^{-1/2} U S^{1/2} R^T,
    W = (wd_H/wd_W)^{1/4} V S^{1/2} R^T for any orthogonal R (d, K).

    Args:
        counts: the per-class counts n_k.
        wd_W: weight decay of W, > 0.
        wd_H: weight decay of H, > 0.
        wd_b: weight decay of b.
        bias: whether the model learns a bias.
        tol: stop once a proximal step moves X (scaled by 1/sqrt(N)) and b by less than this.
        max_iter: the most iterations.

    Returns:
        The optimum, with the iterations taken and whether ``tol`` was met.

    Raises:
        ValueError: a weight decay is not positive, or the counts are not K >= 2 positive ints.
    """
    from scipy.special import log_softmax, softmax  # here, not at import: ~0.3 s a start

    if wd_W <= 0 or wd_H <= 0:
        raise ValueError("wd_W, wd_H: the UFM-CE closed form needs both weight decays > 0")
    ns = _counts(counts)
    K, N, c = len(ns), ns.sum(), math.sqrt(wd_W * wd_H)
    root = np.sqrt(ns)[:, None]
    weight = (ns / N)[:, None]
    wd_b = wd_b if bias else 0.0
    step_X, step_b = N, 1.0 / (1.0 + wd_b)

    def smooth(X, b):
        logits = X / root + b
        value = -float(np.sum(weight[:, 0] * np.diag(log_softmax(logits, axis=1))))
        G = weight * (softmax(logits, axis=1) - np.eye(K))  # d/d logits
        return value + 0.5 * wd_b * float(b @ b), G / root, (G.sum(0) + wd_b * b) * bias

    def objective(X, b):
        return smooth(X, b)[0] + c * float(np.linalg.svd(X, compute_uv=False).sum())

    def prox(X):
        U, s, Vt = np.linalg.svd(X)
        return (U * np.maximum(s - step_X * c, 0.0)) @ Vt

    X, b = np.zeros((K, K)), np.zeros(K)
    Yx, Yb, t, value, converged = X, b, 1.0, objective(X, b), False
    for it in range(1, max_iter + 1):  # noqa: B007 (it: the count returned)
        _, gX, gb = smooth(Yx, Yb)
        Xn, bn = prox(Yx - step_X * gX), Yb - step_b * gb
        new = objective(Xn, bn)
        moved = max(np.abs(Xn - Yx).max() / math.sqrt(N), np.abs(bn - Yb).max())
        if new > value + 1e-15 * abs(value):  # restart the momentum from the last iterate
            if t == 1.0:  # even a plain step from it does not descend: rounding level
                converged = True
                break
            Yx, Yb, t = X, b, 1.0
        else:
            tn = 0.5 * (1.0 + math.sqrt(1.0 + 4.0 * t * t))
            Yx, Yb = Xn + (t - 1.0) / tn * (Xn - X), bn + (t - 1.0) / tn * (bn - b)
            X, b, t, value = Xn, bn, tn, min(new, value)
        if moved < tol:
            converged = True
            break
    U, s, Vt = np.linalg.svd(X)
    r = math.sqrt(wd_H / wd_W)
    W_gram = r * (Vt.T * s) @ Vt
    means_gram = ((U * s) @ U.T) / r / (root * root.T)
    return UFMCEImbalancedOptimum(
        value, X, b, s, W_gram, means_gram, r * float(s.sum()), float(s.sum()) / r, it, converged
    )
