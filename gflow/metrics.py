"""Neural-collapse and margin metrics: pure, jit/vmap-able, features as rows.

Conventions (Papyan et al. 2020; the review of Kothapalli 2023; the code of Zhu et al. 2021 and of
rhubarbwu/neural-collapse, so numbers compare directly):

- class means mu_k (mean of h_i with y_i = k, any class sizes), global mean mu_G = mean of the mu_k,
  centred means M (d, K) with columns mu_k - mu_G;
- Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T, Sigma_B = (1/K) M M^T;
- P = I_K - 11^T/K, the centring projector, with ||P||_F = sqrt(K-1).

Shapes: W (K, d), H (N, d), b (K,), labels (N,) ints in [0, K). ``num_classes`` must be a Python
int (static under jit).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from gflow import linalg

Scalar = Float[Array, ""]


def class_means(H: Float[Array, "N d"], labels: Int[Array, " N"], num_classes: int):
    """Class means mu_k (the mean of the h_i with y_i = k, any class sizes) as rows.

    Args:
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The means, (K, d).
    """
    # one-hot average Y^T H / n_k: a matrix product gives the same bits run after run on every
    # backend (a segment sum's scatter-add uses atomics on GPUs, so its order varies)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=H.dtype)
    sums = jnp.matmul(onehot.T, H, precision=jax.lax.Precision.HIGHEST)
    counts = jnp.sum(onehot, axis=0)
    return sums / counts[:, None]


def centred_means(H: Float[Array, "N d"], labels: Int[Array, " N"], num_classes: int):
    """Centred class means M as rows: mu_k - mu_G, with mu_G the mean of the class means.

    Args:
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        M, (K, d); its rows sum to 0.
    """
    means = class_means(H, labels, num_classes)
    return means - jnp.mean(means, axis=0)


def _within_class_deviations(H, labels, num_classes):
    return H - class_means(H, labels, num_classes)[labels]


def _simplex_distance(gram: Float[Array, "K K"]) -> Scalar:
    """|| G/||G||_F - P/sqrt(K-1) ||_F: how far a Gram matrix is from a simplex ETF's."""
    K = gram.shape[0]
    target = (jnp.eye(K, dtype=gram.dtype) - 1.0 / K) / jnp.sqrt(K - 1.0)
    return jnp.linalg.norm(gram / jnp.linalg.norm(gram) - target)


def nc1(H: Float[Array, "N d"], labels: Int[Array, " N"], num_classes: int) -> Scalar:
    """NC1 = (1/K) Tr(Sigma_W Sigma_B^+) (Papyan et al. 2020; rhubarbwu's ``pinv`` ratio).

    Computed as (1/N) ||E (M^+)^T||_F^2 with E the within-class deviations (N, d) and M^+ the
    pseudo-inverse of the centred means (K, d): equal to the trace form, with a (K, d) SVD in place
    of a (d, d) one.

    Args:
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        NC1, a scalar: 0 when every feature is at its class mean.
    """
    M = centred_means(H, labels, num_classes)
    E = _within_class_deviations(H, labels, num_classes)
    return jnp.sum((E @ linalg.pinv(M)) ** 2) / H.shape[0]


def nc1_quotient(H: Float[Array, "N d"], labels: Int[Array, " N"], num_classes: int) -> Scalar:
    """NC1 as the quotient Tr(Sigma_W) / Tr(Sigma_B) (Tirer et al. 2023; rhubarbwu's ``quotient``).

    Args:
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The quotient, a scalar.
    """
    M = centred_means(H, labels, num_classes)
    E = _within_class_deviations(H, labels, num_classes)
    return (jnp.sum(E**2) / H.shape[0]) / (jnp.sum(M**2) / num_classes)


def nc2(W: Float[Array, "K d"]) -> Scalar:
    """NC2 of the classifier: || W W^T/||W W^T||_F - P/sqrt(K-1) ||_F (Zhu et al. 2021).

    Args:
        W: classifier rows, (K, d).

    Returns:
        The distance, a scalar: 0 for a simplex ETF (any scale).
    """
    return _simplex_distance(W @ W.T)


def nc2_features(H: Float[Array, "N d"], labels: Int[Array, " N"], num_classes: int) -> Scalar:
    """NC2 of the centred class means, on M M^T with M as rows (rhubarbwu's ``simplex_etf_error``).

    Args:
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The distance of the means' normalized Gram from the simplex ETF's, a scalar.
    """
    M = centred_means(H, labels, num_classes)
    return _simplex_distance(M @ M.T)


def orthogonal_frame_distance(vectors: Float[Array, "K d"]) -> Scalar:
    """|| G/||G||_F - I/sqrt(K) ||_F with G the Gram of the rows (not centred).

    0 for an orthogonal frame of equal norms: the target of MSE without bias and of the post-ReLU
    class means of the extended UFM.

    Args:
        vectors: the K rows, (K, d).

    Returns:
        The distance, a scalar.
    """
    gram = vectors @ vectors.T
    K = gram.shape[0]
    return jnp.linalg.norm(
        gram / jnp.linalg.norm(gram) - jnp.eye(K, dtype=gram.dtype) / jnp.sqrt(K)
    )


def nc3(W: Float[Array, "K d"], H: Float[Array, "N d"], labels: Int[Array, " N"], num_classes: int):
    """NC3 (self-duality, Papyan et al.): || W/||W||_F - M/||M||_F ||_F, M the centred means.

    Args:
        W: classifier rows, (K, d).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The distance, a scalar: 0 when the classifier rows are the centred means up to scale.
    """
    M = centred_means(H, labels, num_classes)
    return jnp.linalg.norm(W / jnp.linalg.norm(W) - M / jnp.linalg.norm(M))


def nc3_uncentred(W: Float[Array, "K d"], H: Float[Array, "N d"], labels, num_classes: int):
    """|| W/||W||_F - Mu/||Mu||_F ||_F with Mu the raw (uncentred) class means as rows.

    The self-duality of orthogonal frames (MSE without bias, post-ReLU extended-UFM features).

    Args:
        W: classifier rows, (K, d).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The distance, a scalar.
    """
    means = class_means(H, labels, num_classes)
    return jnp.linalg.norm(W / jnp.linalg.norm(W) - means / jnp.linalg.norm(means))


def nc3_duality(W: Float[Array, "K d"], H: Float[Array, "N d"], labels, num_classes: int):
    """The other NC3 convention (tding1, rhubarbwu's ``self_duality_error``).

    || W M/||W M||_F - P/sqrt(K-1) ||_F with M (d, K) the centred means as columns.

    Args:
        W: classifier rows, (K, d).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The distance, a scalar.
    """
    M = centred_means(H, labels, num_classes)
    return _simplex_distance(W @ M.T)


def nc4(W: Float[Array, "K d"], b: Float[Array, " K"], H: Float[Array, "N d"], labels, num_classes):
    """NC4: the fraction of samples where argmax_k (W h + b)_k is not the nearest class mean.

    Args:
        W: classifier rows, (K, d).
        b: bias, (K,).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The fraction in [0, 1], a scalar.
    """
    means = class_means(H, labels, num_classes)
    predicted = jnp.argmax(H @ W.T + b, axis=1)
    sq_dist = jnp.sum(H**2, 1)[:, None] - 2 * H @ means.T + jnp.sum(means**2, 1)[None, :]
    nearest = jnp.argmin(sq_dist, axis=1)
    return jnp.mean((predicted != nearest).astype(H.dtype))


def bias_relation(W: Float[Array, "K d"], b: Float[Array, " K"], H, labels, num_classes: int):
    """|| W mu_G + b ||: the classifier's output at the global mean (tding1's bias check).

    Args:
        W: classifier rows, (K, d).
        b: bias, (K,).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The norm, a scalar.
    """
    mu_G = jnp.mean(class_means(H, labels, num_classes), axis=0)
    return jnp.linalg.norm(W @ mu_G + b)


def cdnv(H: Float[Array, "N d"], labels: Int[Array, " N"], num_classes: int) -> Scalar:
    """Class-distance normalized variance (Galanti et al. 2022), averaged over pairs k < l.

    (sigma_k^2 + sigma_l^2) / (2 ||mu_k - mu_l||^2), sigma_k^2 = mean_{y_i=k} ||h_i - mu_k||^2.

    Args:
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The mean over the K(K-1)/2 pairs, a scalar.
    """
    means = class_means(H, labels, num_classes)
    E = _within_class_deviations(H, labels, num_classes)
    var = class_means(jnp.sum(E**2, axis=1, keepdims=True), labels, num_classes)[:, 0]
    dist_sq = jnp.sum((means[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    K = num_classes
    upper = jnp.triu(jnp.ones((K, K), bool), k=1)
    ratio = (var[:, None] + var[None, :]) / (2 * jnp.where(upper, dist_sq, 1.0))
    return jnp.sum(jnp.where(upper, ratio, 0.0)) / (K * (K - 1) / 2)


def equinorm(vectors: Float[Array, "K d"]) -> Scalar:
    """Coefficient of variation (std / mean) of the row norms.

    Args:
        vectors: the rows, (K, d).

    Returns:
        A scalar: 0 when all norms are equal.
    """
    norms = jnp.linalg.norm(vectors, axis=1)
    return jnp.std(norms) / jnp.mean(norms)


def _pairwise_cosines(vectors: Float[Array, "K d"]):
    unit = vectors / jnp.linalg.norm(vectors, axis=1, keepdims=True)
    cos = unit @ unit.T
    K = vectors.shape[0]
    off = ~jnp.eye(K, dtype=bool)
    return cos, off, K


def equiangularity(vectors: Float[Array, "K d"]) -> Scalar:
    """Standard deviation of the pairwise cosines of the rows (k != l).

    Args:
        vectors: the rows, (K, d).

    Returns:
        A scalar: 0 when the rows are equiangular.
    """
    cos, off, K = _pairwise_cosines(vectors)
    mean = jnp.sum(jnp.where(off, cos, 0.0)) / (K * (K - 1))
    return jnp.sqrt(jnp.sum(jnp.where(off, (cos - mean) ** 2, 0.0)) / (K * (K - 1)))


def max_angle_deviation(vectors: Float[Array, "K d"]) -> Scalar:
    """| mean pairwise cosine + 1/(K-1) |.

    Args:
        vectors: the rows, (K, d).

    Returns:
        A scalar: 0 for a simplex ETF (maximally separated).
    """
    cos, off, K = _pairwise_cosines(vectors)
    return jnp.abs(jnp.sum(jnp.where(off, cos, 0.0)) / (K * (K - 1)) + 1.0 / (K - 1))


def margin(W: Float[Array, "K d"], b: Float[Array, " K"], H: Float[Array, "N d"], labels):
    """Minimum margin min_i [ z_(i,y_i) - max_(j != y_i) z_(i,j) ] of the logits z = H W^T + b.

    Args:
        W: classifier rows, (K, d).
        b: bias, (K,).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).

    Returns:
        The margin, a scalar: positive when every sample is classified correctly.
    """
    logits = H @ W.T + b
    K = W.shape[0]
    own = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, K, dtype=bool), -jnp.inf, logits)
    return jnp.min(own - jnp.max(others, axis=1))


def normalized_margin(W: Float[Array, "K d"], b, H: Float[Array, "N d"], labels) -> Scalar:
    """gamma = margin / (||W||_F^2/2 + ||H||_F^2/2) (Ji et al. 2022).

    Scale-free for b = 0; 1/(sqrt(n)(K-1)) at the balanced ULPM optimum.

    Args:
        W: classifier rows, (K, d).
        b: bias, (K,).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).

    Returns:
        gamma, a scalar.
    """
    return margin(W, b, H, labels) / (0.5 * jnp.sum(W**2) + 0.5 * jnp.sum(H**2))


def evaluate(W, H, b, labels, num_classes: int) -> dict[str, Scalar]:
    """Every metric above at one point (vmap it for many points).

    Args:
        W: classifier rows, (K, d).
        H: features as rows, (N, d).
        b: bias, (K,).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).

    Returns:
        The metrics by name (the saved variables ``nc1`` ... ``H_norm_sq``), each a scalar.
    """
    K = num_classes
    M = centred_means(H, labels, K)
    return {
        "nc1": nc1(H, labels, K),
        "nc2": nc2(W),
        "nc3": nc3(W, H, labels, K),
        "nc4": nc4(W, b, H, labels, K),
        "nc1_quotient": nc1_quotient(H, labels, K),
        "nc2_features": nc2_features(H, labels, K),
        "nc3_duality": nc3_duality(W, H, labels, K),
        "nc3_uncentred": nc3_uncentred(W, H, labels, K),
        "cdnv": cdnv(H, labels, K),
        "bias_relation": bias_relation(W, b, H, labels, K),
        "orthogonal_means": orthogonal_frame_distance(class_means(H, labels, K)),
        "orthogonal_classifier": orthogonal_frame_distance(W),
        "equinorm_means": equinorm(M),
        "equinorm_classifier": equinorm(W),
        "equiangular_means": equiangularity(M),
        "equiangular_classifier": equiangularity(W),
        "angle_deviation_means": max_angle_deviation(M),
        "angle_deviation_classifier": max_angle_deviation(W),
        "margin": margin(W, b, H, labels),
        "normalized_margin": normalized_margin(W, b, H, labels),
        "W_norm_sq": jnp.sum(W**2),
        "H_norm_sq": jnp.sum(H**2),
    }


def _constraint_gram(W, H, labels, num_classes):
    """Gram Q of the gradients of the margin constraints c_ij = (w_{y_i} - w_j) . h_i, j != y_i,
    over (W, H): Q[(i,j),(k,l)] = <e_{y_i} - e_j, e_{y_k} - e_l> h_i.h_k
    + delta_ik (w_{y_i} - w_j).(w_{y_k} - w_l). Shapes (N, K, N, K); entries with j = y_i unused."""
    K = num_classes
    # E[i, j, :] = e_{y_i} - e_j: (N, K, K)
    E = jax.nn.one_hot(labels, K, dtype=W.dtype)[:, None, :] - jnp.eye(K, dtype=W.dtype)[None]
    class_part = jnp.einsum("ijc,klc->ijkl", E, E) * (H @ H.T)[:, None, :, None]
    D = jnp.einsum("ijc,cd->ijd", E, W)  # D[i, j] = w_{y_i} - w_j: (N, K, d)
    feature_part = jnp.einsum("ijd,ild->ijl", D, D)  # same sample i
    eye_n = jnp.eye(H.shape[0], dtype=W.dtype)
    return class_part + eye_n[:, None, :, None] * feature_part[:, :, None, :]


def kkt_residual(
    W: Float[Array, "K d"],
    H: Float[Array, "N d"],
    labels: Int[Array, " N"],
    num_classes: int,
    active_tol: float = 1e-2,
    iters: int = 10_000,
    tol: float | None = None,
    return_converged: bool = False,
) -> tuple[Scalar, Scalar] | tuple[Scalar, Scalar, Bool[Array, ""]]:
    """KKT residual of (W, H) for  min 1/2||W||^2 + 1/2||H||^2  s.t. (w_(y_i) - w_j).h_i >= 1.

    Ji et al. 2022: the unregularized ULPM flow converges in direction to such a KKT point.
    Rescale theta = (W, H) to unit minimum margin (margins are 2-homogeneous), keep the active
    constraints (margin <= 1 + ``active_tol``), fit multipliers alpha >= 0 on them by
    non-negative least squares of theta = sum alpha_ij grad c_ij (accelerated projected
    gradient until its gradient mapping is below ``tol`` times sqrt(lambda_max) ||theta||, or
    ``iters`` steps). Uses theta . grad c_ij = 2 c_ij, so only the constraint Gram matrix is
    formed, never the Jacobian; the residual vector is formed directly (its Gram expansion would
    lose half the digits).

    Args:
        W: classifier rows, (K, d).
        H: features as rows, (N, d).
        labels: the class of each row, (N,) ints in [0, K).
        num_classes: K, a Python int (static under jit).
        active_tol: a constraint is active when its rescaled margin is <= 1 + active_tol.
        iters: the most projected-gradient steps of the multiplier fit.
        tol: the fit's stopping tolerance (default 1000 machine epsilons).
        return_converged: also return whether the fit met ``tol`` within ``iters`` steps.

    Returns:
        (residual, slackness[, converged]): the relative stationarity residual
        ||theta - sum alpha grad c|| / ||theta||, the complementary-slackness gap
        sum alpha |c - 1| / sum alpha over the active set, and with ``return_converged`` a bool.
        Both are NaN where the point does not separate the classes (minimum margin <= 0).
    """
    K, N = num_classes, H.shape[0]
    others = ~jax.nn.one_hot(labels, K, dtype=bool)  # constraint (i, j) exists for j != y_i
    margins = (H @ W.T)[jnp.arange(N), labels][:, None] - H @ W.T
    scale = jnp.min(jnp.where(others, margins, jnp.inf))
    margins = margins / scale  # rescaled theta has min margin 1
    theta_sq = (jnp.sum(W**2) + jnp.sum(H**2)) / scale
    active = (others & (margins <= 1 + active_tol)).reshape(-1).astype(W.dtype)
    Q = _constraint_gram(W, H, labels, K).reshape(N * K, N * K) / scale
    Q = Q * active[:, None] * active[None, :]
    b = 2 * margins.reshape(-1) * active

    def objective_grad(alpha):
        return Q @ alpha - b

    # step 1/L with L = lambda_max(Q) by power iteration
    def power(_, v):
        v = Q @ v
        return v / (jnp.linalg.norm(v) + 1e-300)

    v = jax.lax.fori_loop(0, 50, power, active + 1e-3)
    lipschitz = jnp.maximum(v @ Q @ v, 1e-300) * 1.01

    tol = 1000 * jnp.finfo(W.dtype).eps if tol is None else tol
    threshold = tol * jnp.sqrt(theta_sq / lipschitz)  # on ||y - alpha_next||, the mapping / L

    def fista(state):
        k, alpha, y, t, _ = state
        alpha_next = jnp.maximum(y - objective_grad(y) / lipschitz, 0.0) * active
        t_next = 0.5 * (1 + jnp.sqrt(1 + 4 * t**2))
        step = jnp.linalg.norm(alpha_next - y)
        y = alpha_next + (t - 1) / t_next * (alpha_next - alpha)
        return k + 1, alpha_next, y, t_next, step

    def going(state):
        k, *_, step = state
        return (k < iters) & ~(step <= threshold) & (scale > 0)  # no fit where NaN anyway

    zero = jnp.zeros_like(b)
    one = jnp.ones((), W.dtype)
    _, alpha, _, _, step = jax.lax.while_loop(going, fista, (0, zero, zero, one, jnp.inf * one))
    # theta - sum alpha grad c, in units of 1/sqrt(scale): the W and H blocks
    A = alpha.reshape(N, K)
    E = jax.nn.one_hot(labels, K, dtype=W.dtype)[:, None, :] - jnp.eye(K, dtype=W.dtype)[None]
    r_W = W - jnp.einsum("ij,ijc,id->cd", A, E, H)
    r_H = H - jnp.einsum("ij,ijc,cd->id", A, E, W)
    residual = jnp.sqrt((jnp.sum(r_W**2) + jnp.sum(r_H**2)) / scale / theta_sq)
    flat = margins.reshape(-1)
    slackness = jnp.sum(alpha * jnp.abs(flat - 1) * active) / jnp.maximum(jnp.sum(alpha), 1e-300)
    separating = scale > 0
    out = jnp.where(separating, residual, jnp.nan), jnp.where(separating, slackness, jnp.nan)
    return (*out, step <= threshold) if return_converged else out
