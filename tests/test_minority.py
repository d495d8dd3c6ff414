"""Minority collapse with weight decay, c = sqrt(wd_W wd_H), N = sum n_k, d >= K, float64.

UFM-MSE without bias (Dang et al., ICML 2023, arXiv 2301.00437): with X = D^{1/2} M W^T the
problem is (1/(2N)) ||X - D^{1/2}||^2 + c ||X||_*, so X = diag(sigma), sigma_k = (sqrt(n_k) -
N c)_+, W W^T = sqrt(wd_H/wd_W) diag(sigma), M M^T = sqrt(wd_W/wd_H) diag(sigma/n) and
F* = sum_k (sqrt(n_k) - sigma_k)^2/(2N) + c sigma_k: class k dies iff n_k <= N^2 c^2.

UFM-CE (convex reduction, Hong & Ling, arXiv 2309.09725):
F* = min_{X,b} (1/N) sum_k n_k CE(X_k/sqrt(n_k) + b, k) + c ||X||_* + wd_b/2 ||b||^2; equal-size
classes of n_B samples share one mean and one classifier iff sqrt(n_B)/N <= c.
Both sides of each threshold are checked against the gradient flow run to convergence.
"""

import math

import numpy as np
import pytest
import xarray as xr

import gflow
from gflow import config, results, simulation, theory

MSE_COUNTS = (20, 10, 5, 2)
MSE_CRITICAL = math.sqrt(2) / 37  # the smallest class dies at wd_W = wd_H = sqrt(n_4)/N
CE_COUNTS = (30, 30, 4, 4)
CE_CRITICAL = 2 / 68  # sqrt(4)/68: the two minority classes merge
CE_COUNTS_B = (40, 5, 5, 5)
CE_CRITICAL_B = math.sqrt(5) / 55  # three minority classes of 5 merge


def _cfg(model):
    cfg = {
        "model": model,
        "dynamics": {"kind": "flow", "t1": 20_000.0, "rtol": 1e-10, "atol": 1e-12, "saves": 6,
                     "max_steps": 100_000},
        "init": {"count": 3, "seed": 0, "scale": 0.1},
        "run": {"precision": "float64"},
    }  # fmt: skip
    return cfg


def _final(ds):
    """Per init: W (K, d), the class means M (K, d) and the final loss."""
    labels = ds.labels.values
    K = ds.sizes["class"]
    for W, H, loss in zip(ds.W.values, ds.H.values, ds.loss.values[:, -1], strict=True):
        yield W, np.stack([H[labels == k].mean(0) for k in range(K)]), loss


def test_mse_worked_numbers():
    opt = theory.ufm_mse_imbalanced_optimum(MSE_COUNTS, 5e-3, 5e-3)
    np.testing.assert_allclose(opt.sigma, [4.2871359550, 2.9772776602, 2.0510679775, 1.2292135624],
                               rtol=0, atol=1e-10)  # fmt: skip
    assert opt.loss == pytest.approx(0.054573475775, abs=1e-12)
    opt = theory.ufm_mse_imbalanced_optimum((8, 4, 2, 1), 1e-2, 4e-3)
    np.testing.assert_allclose(opt.sigma, [2.7335587949, 1.9051316702, 1.3193452326, 0.9051316702],
                               rtol=0, atol=1e-10)  # fmt: skip
    assert opt.loss == pytest.approx(0.044606481691, abs=1e-12)
    np.testing.assert_allclose(np.diag(opt.W_gram), math.sqrt(0.4) * opt.sigma, rtol=1e-14)
    np.testing.assert_allclose(opt.critical_c[-1] ** 2 * 15**2, 1.0, rtol=1e-14)  # n_4 = N^2 c^2
    below = theory.ufm_mse_imbalanced_optimum(MSE_COUNTS, 0.9 * MSE_CRITICAL, 0.9 * MSE_CRITICAL)
    above = theory.ufm_mse_imbalanced_optimum(MSE_COUNTS, 1.1 * MSE_CRITICAL, 1.1 * MSE_CRITICAL)
    assert below.sigma[3] == pytest.approx(0.1414214, abs=1e-7)
    assert below.loss == pytest.approx(0.300623568701, abs=1e-12)
    assert above.sigma[3] == 0 and list(above.alive) == [True] * 3 + [False]
    assert above.loss == pytest.approx(0.343915292677, abs=1e-12)


@pytest.mark.parametrize("factor", [0.9, 1.1, 5e-3 / MSE_CRITICAL], ids=["0.9", "1.1", "5e-3"])
def test_mse_flow_reaches_the_per_class_optimum(factor, tmp_path):
    """The flow's X = D^{1/2} M W^T is diag(sigma) (measured to 5e-10), each ||w_k||^2 and
    ||mu_k||^2 and F* match; past the threshold the smallest class is 0 (w_4 = mu_4 = 0), below
    it lives. The results file (written and read back) carries the per-class predictions."""
    wd = factor * MSE_CRITICAL
    model = {"name": "ufm-mse", "classes": 4, "dim": 8, "per_class": list(MSE_COUNTS),
             "bias": False, "wd_W": wd, "wd_H": wd}  # fmt: skip
    _, path = simulation.run({**_cfg(model), "run": {"precision": "float64", "out": str(tmp_path)}})
    ds = xr.open_dataset(path)
    assert list(ds.status.values) == ["ok"] * 3
    opt = theory.ufm_mse_imbalanced_optimum(MSE_COUNTS, wd, wd)
    root = np.sqrt(MSE_COUNTS)
    for W, M, loss in _final(ds):
        np.testing.assert_allclose(root[:, None] * (M @ W.T), np.diag(opt.sigma), atol=1e-8)
        np.testing.assert_allclose(np.sum(W**2, 1), np.diag(opt.W_gram), atol=1e-8)
        np.testing.assert_allclose(np.sum(M**2, 1), np.diag(opt.means_gram), atol=1e-8)
        assert loss == pytest.approx(opt.loss, rel=1e-10)
        if factor > 1:
            assert np.sum(W[3] ** 2) < 1e-20 and np.sum(M[3] ** 2) < 1e-20  # dead
        else:
            assert np.sum(W[3] ** 2) > 0.1 and np.sum(M[3] ** 2) > 0.03  # alive
    np.testing.assert_allclose(ds.attrs["theory_sigma"], opt.sigma, rtol=1e-14)
    np.testing.assert_allclose(ds.attrs["theory_W_row_norm_sq"], np.diag(opt.W_gram), rtol=1e-14)
    np.testing.assert_allclose(ds.attrs["theory_mean_norm_sq"], np.diag(opt.means_gram), rtol=1e-14)
    assert list(ds.attrs["theory_alive"]) == [1, 1, 1, int(factor < 1)]
    np.testing.assert_allclose(ds.attrs["theory_death_wd"], root / 37, rtol=1e-14)
    assert ds.attrs["theory_loss"] == pytest.approx(opt.loss, rel=1e-14)


def test_ce_convex_reduction_worked_values():
    """F* (all wd = 5e-3; wd_b = 0 with wd_W = 1e-2, wd_H = 2e-3) and the threshold values."""
    for counts, wd, ref in [
        ((20, 20, 5, 5), (5e-3, 5e-3, 5e-3), 0.242968346889),
        ((30, 10, 10, 2), (1e-2, 2e-3, 0.0), 0.203294338986),
        (CE_COUNTS, (0.9 * CE_CRITICAL,) * 3, 0.808864615601),
        (CE_COUNTS, (1.1 * CE_CRITICAL,) * 3, 0.892278091355),
    ]:
        opt = theory.ufm_ce_imbalanced_optimum(counts, *wd)
        assert opt.converged and opt.loss == pytest.approx(ref, abs=1e-12)
    assert theory.minority_merge_threshold(CE_COUNTS) == pytest.approx(0.0294117647, abs=1e-10)
    assert theory.minority_merge_threshold(CE_COUNTS_B) == pytest.approx(0.0406557814, abs=1e-10)
    assert theory.minority_merge_threshold((20, 6, 6, 6, 1), group=(1, 2, 3)) == pytest.approx(
        math.sqrt(6) / 39
    )
    with pytest.raises(ValueError, match="two classes of equal size"):
        theory.minority_merge_threshold((20, 6, 1))


def _ce_model(counts, factor, critical, ratio=1.0):
    """wd_W = ratio wd_H with sqrt(wd_W wd_H) = factor * critical; wd_b = sqrt(wd_W wd_H)
    (the geometric mean: all equal when ratio = 1)."""
    c = factor * critical
    return {"name": "ufm-ce", "classes": 4, "dim": 4, "per_class": list(counts),
            "wd_W": c * math.sqrt(ratio), "wd_H": c / math.sqrt(ratio), "wd_b": c}  # fmt: skip


@pytest.mark.parametrize(
    "counts, critical, ratio, factor, ref",
    [
        (CE_COUNTS, CE_CRITICAL, 1.0, 0.9, 0.808864615601),
        (CE_COUNTS, CE_CRITICAL, 1.0, 1.1, 0.892278091355),
        (CE_COUNTS_B, CE_CRITICAL_B, 4.0, 0.9, 0.831419167806),
        (CE_COUNTS_B, CE_CRITICAL_B, 4.0, 1.1, 0.889330433545),
    ],
    ids=["30-30-4-4-0.9", "30-30-4-4-1.1", "40-5-5-5-0.9", "40-5-5-5-1.1"],
)
def test_ce_minority_merge_on_both_sides(counts, critical, ratio, factor, ref):
    """Flow to t = 2e4 (converged: F* to 1e-12, the same as at 1e5). The (40, 5, 5, 5) values
    take wd_b = sqrt(wd_W wd_H) (with wd_W = 4 wd_H). Below the threshold the minority means
    stay apart (for (30, 30, 4, 4) ||mu_3 - mu_4|| = 0.99 ||mu_3||), above they merge and
    for (30, 30, 4, 4) ||w_B||^2 = 0.502037."""
    model = _ce_model(counts, factor, critical, ratio)
    ds = gflow.simulate(_cfg(model))
    assert list(ds.status.values) == ["ok"] * 3
    opt = theory.ufm_ce_imbalanced_optimum(counts, model["wd_W"], model["wd_H"], model["wd_b"])
    assert opt.loss == pytest.approx(ref, abs=1e-12)
    minority = [k for k, n in enumerate(counts) if n == min(counts)]
    for W, M, loss in _final(ds):
        assert loss == pytest.approx(ref, abs=1e-12)
        np.testing.assert_allclose(W @ W.T, opt.W_gram, atol=1e-6)
        np.testing.assert_allclose(M @ M.T, opt.means_gram, atol=1e-6)
        for k in minority[1:]:
            split = np.linalg.norm(M[k] - M[minority[0]]) / np.linalg.norm(M[k])
            w_split = np.linalg.norm(W[k] - W[minority[0]]) / np.linalg.norm(W[k])
            if factor < 1:
                assert split > 0.5 and w_split > 0.5
            else:
                assert split < 1e-6 and w_split < 1e-6 and np.sum(W[k] ** 2) > 0.1
        if counts == CE_COUNTS:
            if factor < 1:
                assert split == pytest.approx(0.99, abs=5e-3)
            else:
                assert np.sum(W[3] ** 2) == pytest.approx(0.502037, abs=1e-6)
    cfg = config.from_dict({"model": model})
    attrs = results.theory_attrs(simulation.build_model(cfg), cfg)
    assert attrs["theory_minority_merge_wd"] == pytest.approx(critical, rel=1e-14)
    assert attrs["theory_minority_merged"] == int(factor > 1)
    assert attrs["theory_loss"] == pytest.approx(ref, abs=1e-12)


def test_balanced_attrs_unchanged():
    def attrs(model):
        cfg = config.from_dict({"model": model})
        return results.theory_attrs(simulation.build_model(cfg), cfg)

    mse = attrs({"name": "ufm-mse", "classes": 4, "dim": 8, "per_class": 5, "bias": False})
    assert "theory_sigma" not in mse and mse["theory_W_norm_sq"] == pytest.approx(
        theory.ufm_mse_optimum(4, 5, 5e-3, 5e-3, False).W_norm_sq
    )
    ce = attrs({"name": "ufm-ce", "classes": 4, "dim": 4, "per_class": 5})
    assert "theory_minority_merge_wd" not in ce and "theory_W_norm_sq" in ce
    # imbalanced with a bias (MSE) or a unique smallest class (CE): no per-class closed form
    assert "theory_sigma" not in attrs({"name": "ufm-mse", "classes": 3, "per_class": [4, 2, 1]})
    assert "theory_minority_merge_wd" not in attrs(
        {"name": "ufm-ce", "classes": 3, "dim": 3, "per_class": [4, 2, 1]}
    )
