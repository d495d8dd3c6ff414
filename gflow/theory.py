"""Closed-form solutions the simulations are checked against.

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
    """Gram matrix of a unit-norm simplex ETF: (K/(K-1)) (I_K - 11^T/K), shape (K, K)."""
    K = classes
    return (K / (K - 1)) * (np.eye(K) - np.ones((K, K)) / K)


def simplex_etf(classes: int, dim: int | None = None) -> np.ndarray:
    """K unit-norm rows in R^dim (dim >= K-1, default K-1) with Gram matrix :func:`etf_gram`."""
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
    """Global minimizer of balanced UFM-CE, in closed form."""

    collapsed: bool  # False: the minimizer is W = H = 0
    c: float  # h_i = c w_{y_i}
    rho: float  # ||W||_F^2
    H_norm_sq: float  # ||H||_F^2 = n c^2 rho
    loss: float  # L at the minimizer
    W_gram: np.ndarray  # W W^T, shape (K, K)


def ufm_ce_optimum(classes: int, per_class: int, wd_W: float, wd_H: float) -> UFMCEOptimum:
    """Closed-form minimizer of UFM-CE with balanced classes (needs d >= K-1, wd_W, wd_H > 0).

    On the collapsed set the loss reduces to f(rho) = log(1 + (K-1) e^{-c rho/(K-1)}) + lam_W rho,
    minimized at rho = ((K-1)/c) log((c - (K-1) lam_W)/lam_W) when K sqrt(n lam_W lam_H) < 1.
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
    """Max normalized margin of the balanced ULPM, gamma* = 1/(sqrt(n) (K-1))."""
    return 1.0 / (math.sqrt(per_class) * (classes - 1))


def collapse_threshold(classes: int, per_class: int, wd_W: float, wd_H: float) -> float:
    """K sqrt(n lam_W lam_H): UFM-CE collapses to a nonzero ETF iff this is < 1."""
    return classes * math.sqrt(per_class * wd_W * wd_H)
