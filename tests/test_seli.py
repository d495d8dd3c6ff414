"""SELI (Thrampoulidis, Kini, Vakilian & Behnia, NeurIPS 2022, arXiv 2208.05512): unregularized
cross-entropy without bias (the ULPM) with imbalanced counts converges in direction to the
UFM-SVM min 1/2 (||W||^2 + ||H||^2) s.t. z_{i,y_i} - z_{i,j} >= 1, whose minimizers have
H W^T = Zhat = Y - 11^T/K, W W^T = (P D P)^{1/2}, M M^T = D^{-1/2}(D^{1/2} P D^{1/2})^{1/2}D^{-1/2}
and value ||Zhat||_*; the max normalized margin is 1/||Zhat||_*. The direction converges only
like 1/log t, so the flow test runs on the loss clock to t = 1e60."""

import math

import numpy as np
import pytest
import scipy.optimize

import gflow
from gflow import config, results, simulation, theory

MAJ_MIN = (10, 10, 2, 2)  # two majority classes of 10, two minority classes of 2


def test_worked_numbers():
    """n = (10, 10, 2, 2): P D P has eigenvalues 10, 6, 2, 0 with eigenvectors
    a = (1, -1, 0, 0)/sqrt(2), v = (1, 1, -1, -1)/2, c = (0, 0, 1, -1)/sqrt(2), so
    W W^T = sqrt(10) aa^T + sqrt(6) vv^T + sqrt(2) cc^T and M M^T (the pseudo-inverse root)
    = aa^T/sqrt(10) + vv^T/sqrt(6) + cc^T/sqrt(2); ||Zhat||_* = sqrt(10) + sqrt(6) + sqrt(2).
    The worked decimals (||Zhat||_* = 7.025980965, margin 0.1423288798, W W^T diagonal
    2.19351128 / 1.31947923, off -0.96876638 / -0.61237242 / -0.09473433, M M^T diagonal
    0.26017596 / 0.45561547, off -0.05605181 / -0.10206207 / -0.25149131) agree to 2e-8."""
    g = theory.seli(MAJ_MIN)
    r2, r6, r10 = math.sqrt(2), math.sqrt(6), math.sqrt(10)
    assert g.nuclear_norm == pytest.approx(r10 + r6 + r2, rel=1e-13)
    assert g.nuclear_norm == pytest.approx(7.025980965, abs=1e-9)
    assert g.margin == pytest.approx(0.1423288798, abs=1e-10)
    a = np.array([1, -1, 0, 0]) / r2
    v = np.array([1, 1, -1, -1]) / 2
    c = np.array([0, 0, 1, -1]) / r2
    outer = lambda x: np.outer(x, x)  # noqa: E731
    np.testing.assert_allclose(g.W_gram, r10 * outer(a) + r6 * outer(v) + r2 * outer(c),
                               rtol=0, atol=1e-13)  # fmt: skip
    np.testing.assert_allclose(g.means_gram, outer(a) / r10 + outer(v) / r6 + outer(c) / r2,
                               rtol=0, atol=1e-13)  # fmt: skip
    worked_W = {(0, 0): 2.1935112773, (2, 2): 1.3194792284, (0, 1): -0.9687663828,
                (0, 2): -0.6123724241, (2, 3): -0.0947343339}  # fmt: skip
    worked_M = {(0, 0): 0.2601759560, (2, 2): 0.4556154720, (0, 1): -0.0560518100,
                (0, 2): -0.1020620709, (2, 3): -0.2514913092}  # fmt: skip
    for (k, l), value in worked_W.items():
        assert g.W_gram[k, l] == pytest.approx(value, abs=2e-8)
    for (k, l), value in worked_M.items():
        assert g.means_gram[k, l] == pytest.approx(value, abs=2e-8)
    assert g.Z.shape == (24, 4) and np.allclose(g.Z.sum(1), 0)
    assert np.linalg.svd(g.Z, compute_uv=False).sum() == pytest.approx(g.nuclear_norm, rel=1e-12)
    assert theory.seli((6, 3, 1)).nuclear_norm == pytest.approx(3.559026084, abs=1e-9)
    # W W^T M M^T = P for any counts (the two roots are pseudo-inverse to each other)
    for counts in (MAJ_MIN, (6, 3, 1), (7, 1, 4, 2, 9)):
        g, K = theory.seli(counts), len(counts)
        np.testing.assert_allclose(g.W_gram @ g.means_gram, np.eye(K) - 1 / K, atol=1e-12)


def test_balanced_counts_give_the_simplex_etf():
    K, n = 4, 5
    g = theory.seli((n,) * K)
    assert g.margin == pytest.approx(theory.ulpm_max_margin(K, n), rel=1e-12)
    np.testing.assert_allclose(g.W_gram, math.sqrt(n) * (np.eye(K) - 1 / K), atol=1e-12)
    np.testing.assert_allclose(g.means_gram, (np.eye(K) - 1 / K) / math.sqrt(n), atol=1e-12)


def _svm(counts, dim, seed):
    """min 1/2 (||W||^2 + ||H||^2) s.t. (w_{y_i} - w_j) . h_i >= 1 (j != y_i), by SLSQP."""
    K, N = len(counts), sum(counts)
    labels = np.repeat(np.arange(K), counts)
    others = np.ones((N, K), bool)
    others[np.arange(N), labels] = False

    def split(x):
        return x[: K * dim].reshape(K, dim), x[K * dim :].reshape(N, dim)

    def margins(x):
        W, H = split(x)
        Z = H @ W.T
        return (Z[np.arange(N), labels][:, None] - Z)[others] - 1.0

    x0 = np.random.default_rng(seed).standard_normal(K * dim + N * dim)
    sol = scipy.optimize.minimize(
        lambda x: 0.5 * x @ x, x0, jac=lambda x: x, method="SLSQP",
        constraints=[{"type": "ineq", "fun": margins}], options={"maxiter": 3000, "ftol": 1e-15},
    )  # fmt: skip
    W, H = split(sol.x)
    means = np.stack([H[labels == k].mean(0) for k in range(K)])
    return sol.fun, W, H, means


@pytest.mark.parametrize("counts, dim", [((6, 3, 1), 4), (MAJ_MIN, 4)])
def test_closed_form_solves_the_svm(counts, dim):
    """A direct solve of the (non-convex) UFM-SVM from two random starts lands on SELI."""
    g = theory.seli(counts)
    for seed in range(2):
        value, W, H, means = _svm(counts, dim, seed)
        assert value == pytest.approx(g.nuclear_norm, rel=1e-9)
        np.testing.assert_allclose(H @ W.T, g.Z, atol=1e-6)
        np.testing.assert_allclose(W @ W.T, g.W_gram, atol=1e-6)
        np.testing.assert_allclose(means @ means.T, g.means_gram, atol=1e-6)
        assert theory.seli_distance(H @ W.T, counts) < 1e-6


def test_attrs():
    """Imbalanced ULPM (and UFM-CE without bias or weight decay): SELI's margin; the balanced
    ULPM keeps 1/(sqrt(n)(K-1))."""

    def attrs(model):
        cfg = config.from_dict({"model": model})
        return results.theory_attrs(simulation.build_model(cfg), cfg)

    imbalanced = {"classes": 4, "dim": 4, "per_class": list(MAJ_MIN)}
    for model in ({"name": "ulpm"}, {"name": "ufm-ce", "wd_W": 0, "wd_H": 0, "bias": False}):
        a = attrs({**model, **imbalanced})
        assert a["theory_normalized_margin"] == pytest.approx(0.1423288798, abs=1e-10)
        assert a["theory_seli_nuclear_norm"] == pytest.approx(7.025980965, abs=1e-9)
    assert "SELI" in attrs({"name": "ulpm", **imbalanced})["theory_geometry"]
    assert "theory_normalized_margin" not in attrs({"name": "ufm-ce", **imbalanced, "wd_W": 0,
                                                    "wd_H": 0})  # fmt: skip  # a free bias
    balanced = attrs({"name": "ulpm", "classes": 4, "per_class": 5})
    assert balanced["theory_normalized_margin"] == pytest.approx(1 / (3 * math.sqrt(5)), rel=1e-12)
    assert "theory_seli_nuclear_norm" not in balanced


def test_flow_tends_to_seli_like_one_over_log_t():
    """Loss clock to t = 1e60, saves every 1e5 x. Measured (8 inits, seed 0) seli_distance:
    median 0.26 at t = 1e2, 0.083 at 1e6, 0.019 at 1e20, 0.0069 at 1e60 (max 0.0098): about
    1/ln t, while the normalized margin is within 0.7% of 1/||Zhat||_* at 1e60."""
    cfg = {
        "model": {"name": "ulpm", "classes": 4, "dim": 4, "per_class": list(MAJ_MIN)},
        "dynamics": {"kind": "flow", "t1": 1e60, "rtol": 1e-8, "atol": 1e-10, "reparam": "loss",
                     "saves": 14},
        "init": {"count": 4, "seed": 0, "scale": 0.1},
        "run": {"precision": "float64"},
    }  # fmt: skip
    ds = gflow.simulate(cfg)
    assert list(ds.status.values) == ["ok"] * 4
    g = theory.seli(MAJ_MIN)
    times = ds.time.values
    np.testing.assert_allclose(times[2:], 10.0 ** np.arange(5, 61, 5), rtol=1e-9)
    distance = ds.seli_distance.values  # (init, time)
    late = distance[:, 2:]  # t >= 1e5
    assert np.all(late[:, 1:] <= late[:, :-1] * (1 + 1e-3))  # decreasing along the flow
    assert np.all(late[:, -1] < 0.02)  # 0.006-0.010 measured at 1e60
    # slow: still clearly off at 1e20 and 1e60; median distance x ln t stays O(1) (0.8-1.0)
    scaled = np.median(distance, axis=0) * np.log(np.maximum(times, 1.0))
    assert np.all((scaled[[5, 7, 9, 13]] > 0.4) & (scaled[[5, 7, 9, 13]] < 2.5))
    # the observable equals the NumPy direction distance of the final logits
    Z = np.einsum("nsd,nkd->nsk", ds.H.values, ds.W.values)
    np.testing.assert_allclose(distance[:, -1], [theory.seli_distance(z, MAJ_MIN) for z in Z],
                               rtol=1e-6)  # fmt: skip
    # margin and Gram directions at 1e60
    margin = ds.normalized_margin.values[:, -1]
    assert np.all((margin < g.margin * (1 + 1e-9)) & (margin > 0.985 * g.margin))
    assert ds.attrs["theory_normalized_margin"] == pytest.approx(g.margin, rel=1e-12)
    labels = ds.labels.values

    def off(gram, target):  # direction distance of two Gram matrices
        return np.linalg.norm(gram / np.linalg.norm(gram) - target / np.linalg.norm(target))

    for W, H in zip(ds.W.values, ds.H.values, strict=True):  # measured 0.007-0.013 and 0.006
        means = np.stack([H[labels == k].mean(0) for k in range(4)])
        assert off(W @ W.T, g.W_gram) < 0.03 and off(means @ means.T, g.means_gram) < 0.03
