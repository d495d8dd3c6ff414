"""Deep linear unconstrained features models: the low-rank bias of depth (Garrod & Keating,
arXiv 2410.23169; Súkeník et al. 2024).

Model: free features H (N, d), weights W_1 .. W_{L-1} (d, d) and W_L (K, d), logits
z_i = W_L ... W_1 h_i, no bias, balanced classes (n per class), d >= K, and

    F = (1/N) sum_i CE(z_i, y_i) + lam_W/2 sum_l ||W_l||_F^2 + lam_H/2 ||H||_F^2.

Every critical point has collapsed features (for fixed weights F is strictly convex in H), so
with Zbar (K, K) the logits of the class means, Zbar = M_0 W_1^T ... W_L^T, and a product of
L + 1 factors costing at least (L+1) sum_i sigma_i^{2/(L+1)} (equality for balanced factors):

    F* = min_Zbar (1/K) sum_k CE(Zbar_k, k) + (L+1)/2 c sum_i sigma_i(Zbar)^{2/(L+1)},
    c = (n lam_H lam_W^L)^{1/(L+1)}.

For L = 1 the penalty is the nuclear norm (convex) and the simplex ETF wins (Zhu et al. 2021);
for L >= 2 it is a Schatten quasi-norm that rewards low rank. Candidates, each with its scale
optimized by a 1-d minimization (all have equal nonzero singular values):

- ETF, gap g (Zbar = g (I - 11^T/K), rank K-1): ln(1 + (K-1) e^{-g}) + (L+1)/2 c (K-1) g^p;
- regular polygon (Zbar_jk = r cos(2 pi (j-k)/K), rank 2, K >= 3):
  ln sum_j e^{r (cos(2 pi j/K) - 1)} + (L+1) c (rK/2)^p;
- octahedron (K = 6, Zbar = r Gram(+-e_1, +-e_2, +-e_3), rank 3):
  ln(1 + 4 e^{-r} + e^{-2r}) + 3 (L+1)/2 c (2r)^p;
- zero (rank 0): ln K,

with p = 2/(L+1). They are critical points of F, not proven global minimizers. With the MSE
loss (1/(2N)) ||Z - Y||^2 the reduction separates over the singular values and the optimum is
an orthogonal frame Zbar = s I (Dang et al. 2023), or zero.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

RANK_TOL = 1e-3  # numerical rank: singular values above this fraction of the largest


class Candidate(NamedTuple):
    """A candidate critical point of the deep linear UFM, its scale optimized.

    Attributes:
        name: etf | polygon | octahedron | zero (CE); orthogonal | zero (MSE).
        rank: the rank of the class means (and of Zbar).
        scale: g (ETF gap), r (polygon, octahedron), s (orthogonal frame); 0 for zero.
        loss: F at the candidate.
    """

    name: str  # etf | polygon | octahedron | zero (CE); orthogonal | zero (MSE)
    rank: int  # rank of the class means (and of Zbar)
    scale: float  # g (ETF gap), r (polygon, octahedron), s (orthogonal frame); 0 for zero
    loss: float  # F at the candidate


def penalty_constant(per_class: int, wd_W: float, wd_H: float, depth: int) -> float:
    """c = (n lam_H lam_W^L)^{1/(L+1)}: the penalty is (L+1)/2 c sum_i sigma_i(Zbar)^{2/(L+1)}.

    Args:
        per_class: n.
        wd_W: lam_W.
        wd_H: lam_H.
        depth: L.

    Returns:
        c.
    """
    return (per_class * wd_H * wd_W**depth) ** (1.0 / (depth + 1))


def _nonzero_minimum(fit, slope, weight: float, power: float) -> tuple[float, float] | None:
    """(x, f(x)) of the lowest local minimum over x > 0 of f(x) = fit(x) + weight x^power
    (``slope`` = fit'), or None when f only increases: a log grid over [1e-8, 1e4] brackets it
    and Brent's method finds the root of f' there (to machine precision in x)."""
    from scipy import optimize  # scipy here, not at import: ~0.3 s of every start

    def f(x):
        return fit(x) + weight * x**power

    def df(x):
        return slope(x) + weight * power * x ** (power - 1)

    x = np.geomspace(1e-8, 1e4, 4001)
    fx = np.array([f(v) for v in x])
    interior = np.flatnonzero((fx[1:-1] < fx[:-2]) & (fx[1:-1] <= fx[2:])) + 1
    if interior.size == 0:
        return None
    i = interior[np.argmin(fx[interior])]
    root = optimize.brentq(df, x[i - 1], x[i + 1], xtol=1e-300, rtol=4 * np.finfo(float).eps)
    return float(root), float(f(root))


def _check(classes: int, per_class: int, wd_W: float, wd_H: float, depth: int) -> None:
    if wd_W <= 0 or wd_H <= 0:
        raise ValueError("wd_W, wd_H: the deep UFM closed forms need both weight decays > 0")
    if depth < 1 or classes < 2 or per_class < 1:
        raise ValueError("depth, classes, per_class: need depth >= 1, classes >= 2, n >= 1")


def deep_ce_candidates(
    classes: int, per_class: int, wd_W: float, wd_H: float, depth: int
) -> dict[str, Candidate]:
    """The candidates of the module docstring by name, each at its optimal scale.

    The polygon exists for K >= 3 and the octahedron for K = 6; a shape whose 1-d objective has
    no minimum at a nonzero scale is left out. ``zero`` is always there.

    Args:
        classes: K.
        per_class: n.
        wd_W: lam_W > 0.
        wd_H: lam_H > 0.
        depth: L >= 1, the number of weight layers.

    Returns:
        The candidates by name.

    Raises:
        ValueError: a weight decay is not positive, or depth < 1, classes < 2, per_class < 1.
    """
    _check(classes, per_class, wd_W, wd_H, depth)
    K, L = classes, depth
    c, p = penalty_constant(per_class, wd_W, wd_H, L), 2.0 / (L + 1)
    a = np.cos(2 * np.pi * np.arange(K) / K) - 1.0  # polygon: Zbar_kj - Zbar_kk = r a_{j-k}

    def softmax_mean(r):  # d/dr ln sum_j e^{r a_j}
        e = np.exp(r * a)
        return float(np.sum(a * e) / np.sum(e))

    # name: rank, fit (the CE of one class), its slope, the penalty (L+1)/2 c sum sigma^p
    # written as weight * scale^p
    shapes = {
        "etf": (
            K - 1,
            lambda g: math.log1p((K - 1) * math.exp(-g)),
            lambda g: -(K - 1) * math.exp(-g) / (1 + (K - 1) * math.exp(-g)),
            (L + 1) / 2 * c * (K - 1),
        ),
        "polygon": (
            2,
            lambda r: math.log(np.sum(np.exp(r * a))),
            softmax_mean,
            (L + 1) * c * (K / 2) ** p,
        ),
        "octahedron": (
            3,
            lambda r: math.log1p(4 * math.exp(-r) + math.exp(-2 * r)),
            lambda r: (
                -(4 * math.exp(-r) + 2 * math.exp(-2 * r))
                / (1 + 4 * math.exp(-r) + math.exp(-2 * r))
            ),
            3 * (L + 1) / 2 * c * 2**p,
        ),
    }
    if K < 3:  # K = 2: the "polygon" is the ETF
        del shapes["polygon"]
    if K != 6:
        del shapes["octahedron"]
    out = {}
    for name, (rank, fit, slope, weight) in shapes.items():
        found = _nonzero_minimum(fit, slope, weight, p)
        if found is not None:
            out[name] = Candidate(name, rank, *found)
    out["zero"] = Candidate("zero", 0, 0.0, math.log(K))
    return out


def deep_ce_optimum(classes: int, per_class: int, wd_W: float, wd_H: float, depth: int):
    """The lowest of :func:`deep_ce_candidates`.

    The ETF at depth 1; low rank for L >= 2 when the weight decay is large enough, e.g. the
    octahedron at K = 6, n = 5, lam = 5e-3, L = 3.

    Args:
        classes: K.
        per_class: n.
        wd_W: lam_W > 0.
        wd_H: lam_H > 0.
        depth: L >= 1, the number of weight layers.

    Returns:
        The candidate of lowest loss.
    """
    found = deep_ce_candidates(classes, per_class, wd_W, wd_H, depth)
    return min(found.values(), key=lambda cand: cand.loss)


def deep_mse_optimum(
    classes: int, per_class: int, wd_W: float, wd_H: float, depth: int
) -> Candidate:
    """The optimum of the deep linear UFM with MSE, no bias.

    ||Zbar - I||^2 >= sum_i (sigma_i - 1)^2 (equality for Zbar symmetric PSD), so every singular
    value minimizes the same h(s) = (s - 1)^2/(2K) + (L+1)/2 c s^{2/(L+1)}: Zbar = s I, an
    orthogonal frame of rank K, with F = K h(s), or Zbar = 0 (F = 1/2) when that is lower.
    L = 1: s = 1 - K sqrt(n lam_H lam_W) (Tirer & Bruna 2022).

    Args:
        classes: K.
        per_class: n.
        wd_W: lam_W > 0.
        wd_H: lam_H > 0.
        depth: L >= 1, the number of weight layers.

    Returns:
        ``orthogonal`` at its scale s, or ``zero``.
    """
    _check(classes, per_class, wd_W, wd_H, depth)
    K, L = classes, depth
    c = penalty_constant(per_class, wd_W, wd_H, L)
    weight, p = (L + 1) / 2 * c * K, 2 / (L + 1)
    found = _nonzero_minimum(lambda s: (s - 1) ** 2 / 2, lambda s: s - 1, weight, p)
    if found is None or found[1] >= 0.5:
        return Candidate("zero", 0, 0.0, 0.5)
    return Candidate("orthogonal", K, *found)


def candidate_logits(name: str, classes: int, scale: float) -> np.ndarray:
    """Zbar of a candidate at its scale: the class means' logits, symmetric PSD.

    Args:
        name: etf | polygon | octahedron | orthogonal | zero.
        classes: K.
        scale: the candidate's scale (:class:`Candidate`).

    Returns:
        Zbar, (K, K).

    Raises:
        ValueError: an unknown name.
    """
    K = classes
    if name == "etf":
        return scale * (np.eye(K) - np.ones((K, K)) / K)
    if name == "polygon":
        j = np.arange(K)
        return scale * np.cos(2 * np.pi * (j[:, None] - j[None, :]) / K)
    if name == "octahedron":
        V = np.kron(np.eye(K // 2), np.array([[1.0], [-1.0]]))  # rows e_1, -e_1, e_2, -e_2, ...
        return scale * V @ V.T
    if name == "orthogonal":
        return scale * np.eye(K)
    if name == "zero":
        return np.zeros((K, K))
    raise ValueError(f"name: unknown candidate {name!r}")


def balanced_factors(
    logits: np.ndarray, per_class: int, wd_W: float, wd_H: float, depth: int, dim: int
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A minimal-cost factorization of a symmetric PSD Zbar = U diag(s) U^T.

    Class means M_0 and weights with M_0 W_1^T ... W_L^T = Zbar and every factor of singular
    values (a s)^{1/(L+1)} (M_0 divided by a), a = sqrt(n lam_H / lam_W); set h_i = M_0[y_i] for a
    point of the full model.

    Args:
        logits: Zbar, (K, K), symmetric PSD.
        per_class: n.
        wd_W: lam_W.
        wd_H: lam_H.
        depth: L.
        dim: d >= K.

    Returns:
        (M_0 (K, dim), [W_1 (dim, dim), ..., W_(L-1) (dim, dim), W_L (K, dim)]).

    Raises:
        ValueError: dim < K.
    """
    eigval, eigvec = np.linalg.eigh(logits)
    keep = eigval > 1e-12 * max(eigval.max(), 1e-300)
    U, s = eigvec[:, keep], eigval[keep]
    rank = s.size
    if dim < logits.shape[0]:
        raise ValueError(f"dim: needs dim >= classes ({logits.shape[0]}), got {dim}")
    alpha = math.sqrt(per_class * wd_H / wd_W)
    root = np.diag((alpha * s) ** (1.0 / (depth + 1)))
    Q = np.eye(rank, dim)  # the first rank coordinates of R^dim
    outer = U @ root @ Q  # (K, dim)
    inner = Q.T @ root @ Q  # (dim, dim)
    return outer / alpha, [inner] * (depth - 1) + [outer]


def numerical_rank(matrix: np.ndarray, tol: float = RANK_TOL) -> int:
    """The number of singular values above ``tol`` times the largest.

    Args:
        matrix: any 2-d array.
        tol: the relative threshold (:data:`RANK_TOL`).

    Returns:
        The rank; 0 for a zero matrix.
    """
    sv = np.linalg.svd(np.asarray(matrix, float), compute_uv=False)
    return int(np.sum(sv > tol * sv[0])) if sv.size and sv[0] > 0 else 0


def nearest_candidate(
    loss: float, rank: int, candidates: dict[str, Candidate], rtol: float = 1e-6
) -> str:
    """The candidate a final state reached.

    The one of the same class-mean rank whose loss is within ``rtol`` (relative) of ``loss``
    (zero: by the loss alone, as vanishing class means have no numerical rank); a state that is
    still moving, or a critical point not among the candidates, is "other".

    Args:
        loss: the final loss.
        rank: the numerical rank of the final class means.
        candidates: :func:`deep_ce_candidates` (or any candidates by name).
        rtol: the relative tolerance on the loss.

    Returns:
        The candidate's name, or ``"other (rank r, loss x)"``.
    """
    for cand in sorted(candidates.values(), key=lambda c: abs(c.loss - loss)):
        close = abs(cand.loss - loss) <= rtol * abs(cand.loss)
        if close and (cand.rank == rank or cand.name == "zero"):
            return cand.name
    return f"other (rank {rank}, loss {loss:.10g})"
