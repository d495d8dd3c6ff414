"""Closed form of the regression UFM (neural regression collapse; Andriopoulos, Dong, Guo, Zhao
& Ross, NeurIPS 2024, arXiv 2409.04180), re-derived in gflow's conventions:

    L(H, W, b) = (1/(2N)) ||H W^T + 1 b^T - Y||_F^2 + wd_W/2 ||W||_F^2 + wd_H/2 ||H||_F^2

with targets Y (N, m), features H (N, d), d >= m, W (m, d), b (m,) not decayed. (The paper
decays the mean of ||h_i||^2, i.e. its wd_H is N times gflow's.)

Derivation: the optimal bias is b = ybar - W hbar and then hbar = 0, so b = ybar and the fit
is of the centred targets Yc = Y - 1 ybar^T by Z = H W^T. Over factorizations of Z,
wd_W/2 ||W||^2 + wd_H/2 ||H||^2 >= sqrt(wd_W wd_H) ||Z||_* (equality when balanced), so Z
minimizes (1/(2N)) ||Z - Yc||^2 + sqrt(wd_W wd_H) ||Z||_*: singular-value soft thresholding.
With the centred target covariance Sigma = Yc^T Yc / N = sum_i mu_i u_i u_i^T and
c = N wd_W wd_H:

- W W^T = sqrt(N wd_H/wd_W) sum_i (sqrt(mu_i) - sqrt(c))_+ u_i u_i^T,
- the factors are balanced, wd_W W^T W = wd_H H^T H, so ||H||^2 = (wd_W/wd_H) ||W||^2, and
  rank H = rank W = #{i : mu_i > c} (the modes with mu_i <= c die),
- F* = sum_{mu_i > c} (sqrt(c mu_i) - c/2) + sum_{mu_i <= c} mu_i/2, of which the fit
  (1/(2N)) ||H W^T + 1 b^T - Y||^2 is (c #{mu_i > c} + sum_{mu_i <= c} mu_i)/2 (each surviving
  singular value sqrt(mu_i) of Yc/sqrt(N) is shrunk by sqrt(c), each other one dies).

Plain NumPy in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class RegressionOptimum(NamedTuple):
    """The global minimum of the regression UFM (W and H up to a rotation of the features).

    Attributes:
        loss: F*.
        rank: #{mu_i > c}, the rank of W and of H.
        threshold: c = N wd_W wd_H: the eigenvalues of Sigma above it survive.
        spectrum: (m,) the eigenvalues mu_i of Sigma, descending.
        W_gram_eigenvalues: (m,) sqrt(N wd_H/wd_W) (sqrt(mu_i) - sqrt(c))_+, paired with
            ``spectrum``.
        W_norm_sq: ||W||_F^2 = trace W W^T.
        H_norm_sq: ||H||_F^2 = (wd_W/wd_H) ||W||_F^2.
        train_mse: the fit part of F*, (1/(2N)) ||H W^T + 1 b^T - Y||_F^2 =
            (c rank + sum_{mu_i <= c} mu_i)/2.
        W_gram: (m, m) W W^T; None when only the spectrum was given.
        bias: (m,) b = ybar; None when only the spectrum was given.
    """

    loss: float  # F*
    rank: int  # #{mu_i > c}: rank of W and of H
    threshold: float  # c = N wd_W wd_H: eigenvalues of Sigma above it survive
    spectrum: np.ndarray  # (m,) the eigenvalues mu_i of Sigma, descending
    W_gram_eigenvalues: np.ndarray  # (m,) sqrt(N wd_H/wd_W) (sqrt(mu_i) - sqrt(c))_+
    W_norm_sq: float  # ||W||_F^2 = trace W W^T
    H_norm_sq: float  # ||H||_F^2 = (wd_W/wd_H) ||W||_F^2
    train_mse: float  # the fit part of F*: (c rank + sum_{mu_i <= c} mu_i)/2
    W_gram: np.ndarray | None  # (m, m) W W^T
    bias: np.ndarray | None  # (m,) b = ybar


def target_covariance(targets: np.ndarray) -> np.ndarray:
    """Sigma = (1/N) Yc^T Yc of the centred targets Yc = Y - 1 ybar^T.

    Args:
        targets: Y, (N, m).

    Returns:
        Sigma, (m, m).
    """
    Y = np.asarray(targets, float)
    Yc = Y - Y.mean(axis=0)
    return Yc.T @ Yc / Y.shape[0]


def regression_spectrum_optimum(
    spectrum: Sequence[float], samples: int, wd_W: float, wd_H: float
) -> RegressionOptimum:
    """F*, the rank and W W^T's eigenvalues from Sigma's eigenvalues and N alone.

    Args:
        spectrum: the m eigenvalues mu_i of Sigma (any order).
        samples: N.
        wd_W: weight decay of W, > 0.
        wd_H: weight decay of H, > 0.

    Returns:
        The optimum, without ``W_gram`` and ``bias``.

    Raises:
        ValueError: a weight decay is not positive.
    """
    if not (wd_W > 0 and wd_H > 0):
        raise ValueError("regression_spectrum_optimum: needs wd_W > 0 and wd_H > 0")
    mu = np.sort(np.asarray(spectrum, float))[::-1]
    c = samples * wd_W * wd_H
    alive = mu > c
    loss = float(np.sum(np.where(alive, np.sqrt(c * mu) - c / 2, mu / 2)))
    gram = math.sqrt(samples * wd_H / wd_W) * np.maximum(np.sqrt(mu) - math.sqrt(c), 0.0)
    W_norm_sq = float(np.sum(gram))
    fit = float(np.sum(np.where(alive, c, mu)) / 2)
    return RegressionOptimum(
        loss=loss, rank=int(np.sum(alive)), threshold=c, spectrum=mu, W_gram_eigenvalues=gram,
        W_norm_sq=W_norm_sq, H_norm_sq=W_norm_sq * wd_W / wd_H, train_mse=fit, W_gram=None,
        bias=None,
    )  # fmt: skip


def regression_optimum(targets: np.ndarray, wd_W: float, wd_H: float) -> RegressionOptimum:
    """The optimum for the targets Y: :func:`regression_spectrum_optimum` of Sigma's eigenvalues.

    W W^T = sqrt(N wd_H/wd_W) sum_i (sqrt(mu_i) - sqrt(c))_+ u_i u_i^T and b = ybar.

    Args:
        targets: Y, (N, m).
        wd_W: weight decay of W, > 0.
        wd_H: weight decay of H, > 0.

    Returns:
        The optimum, with ``W_gram`` (m, m) and ``bias`` (m,).
    """
    Y = np.asarray(targets, float)
    mu, U = np.linalg.eigh(target_covariance(Y))
    mu, U = mu[::-1], U[:, ::-1]
    opt = regression_spectrum_optimum(np.maximum(mu, 0.0), Y.shape[0], wd_W, wd_H)
    gram = (U * opt.W_gram_eigenvalues) @ U.T
    return opt._replace(W_gram=gram, bias=Y.mean(axis=0))
