"""Closed forms of the normalized UFM: unit classifier rows w_k and unit features h_i, logits
s cos(w_k, h_i), cross-entropy F = (1/N) sum_i CE(s W h_i, y_i), no bias, no weight decay,
balanced classes. At the optima below h_i = w_{y_i}, so F* = log sum_j exp(s (w_j.w_k - 1))
(the same for every class k).

- K <= d + 1: the simplex ETF (Yaras, Wang, Zhu, Balzano & Qu, NeurIPS 2022, arXiv
  2209.09211: the only global minimizers; under the paper's assumptions every other critical
  point is a strict saddle),
  F* = log(1 + (K - 1) exp(-s K/(K - 1))), smallest angle arccos(-1/(K - 1)).
- K > d + 1 (Jiang et al. 2023, arXiv 2310.05351: the classifier tends to a softmax code as
  s -> infinity) the geometry depends on K and d; two cases are closed here, both checked by
  direct numerical minimization from random starts (no more than that):
  d = 2, the regular K-gon, F* = log sum_{j<K} exp(s (cos(2 pi j/K) - 1)), angle 2 pi/K;
  K = 6, d = 3, the octahedron (+-e_i), F* = log(1 + 4 e^{-s} + e^{-2s}), angle pi/2.

Plain NumPy in float64.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from gflow.theory.balanced import simplex_etf


class SphereOptimum(NamedTuple):
    """A global minimizer of the balanced normalized UFM (up to a rotation); features h_i = w_(y_i).

    Attributes:
        geometry: "simplex ETF", "regular K-gon" or "octahedron".
        classifier: the unit classifier rows, (K, d).
        loss: F*.
        min_angle: the smallest angle between two classifier rows, radians.
    """

    geometry: str  # "simplex ETF" | "regular K-gon" | "octahedron"
    classifier: np.ndarray  # (K, d), unit rows
    loss: float  # F*
    min_angle: float  # smallest angle between two classifier rows, radians


def sphere_etf_loss(classes: int, scale: float) -> float:
    """F* = log(1 + (K - 1) exp(-s K/(K - 1))) at the simplex ETF (K <= d + 1; Yaras et al.).

    Args:
        classes: K.
        scale: s, the logit scale.

    Returns:
        F*.
    """
    K = classes
    return math.log1p((K - 1) * math.exp(-scale * K / (K - 1)))


def sphere_polygon_loss(classes: int, scale: float) -> float:
    """F* = log sum_(j<K) exp(s (cos(2 pi j/K) - 1)) at the regular K-gon (d = 2).

    Args:
        classes: K.
        scale: s, the logit scale.

    Returns:
        F*.
    """
    angles = 2 * np.pi * np.arange(classes) / classes
    return float(np.log(np.sum(np.exp(scale * (np.cos(angles) - 1)))))


def sphere_octahedron_loss(scale: float) -> float:
    """F* = log(1 + 4 e^{-s} + e^{-2s}) at the octahedron +-e_i (K = 6, d = 3).

    Args:
        scale: s, the logit scale.

    Returns:
        F*.
    """
    return math.log1p(4 * math.exp(-scale) + math.exp(-2 * scale))


def sphere_min_angle(classes: int, dim: int) -> float | None:
    """The smallest angle between two classifier rows at the known optimum.

    arccos(-1/(K - 1)) for K <= d + 1, 2 pi/K for d = 2, pi/2 for the octahedron (K = 6, d = 3).

    Args:
        classes: K.
        dim: d.

    Returns:
        The angle in radians, or None where no closed form is known.
    """
    optimum = sphere_optimum(classes, dim, 1.0)
    return None if optimum is None else optimum.min_angle


def sphere_optimum(classes: int, dim: int, scale: float) -> SphereOptimum | None:
    """The known global minimizer for K classes in R^d at logit scale s (balanced classes).

    Args:
        classes: K.
        dim: d.
        scale: s > 0.

    Returns:
        The optimum, or None where no closed form is known (K > d + 1 beyond the K-gon and the
        octahedron).

    Raises:
        ValueError: scale is not positive.
    """
    K, d = classes, dim
    if scale <= 0:
        raise ValueError(f"scale: the logit scale must be > 0, got {scale}")
    if K <= d + 1:
        return SphereOptimum(
            "simplex ETF", simplex_etf(K, d), sphere_etf_loss(K, scale), math.acos(-1 / (K - 1))
        )
    if d == 2:
        angles = 2 * np.pi * np.arange(K) / K
        rows = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        return SphereOptimum("regular K-gon", rows, sphere_polygon_loss(K, scale), 2 * math.pi / K)
    if K == 6 and d == 3:
        rows = np.concatenate([np.eye(3), -np.eye(3)])
        return SphereOptimum("octahedron", rows, sphere_octahedron_loss(scale), math.pi / 2)
    return None
