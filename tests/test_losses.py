"""Other losses on the UFM, in float64.

Label smoothing and focal loss (Zhou et al., NeurIPS 2022, arXiv 2210.02192): balanced, d >= K-1,
the optimum is a simplex ETF with b = 0 whose scale t = ||w_k|| ||mu_k|| minimizes
phi(tK/(K-1)) + K sqrt(n wd_W wd_H) t, with W = H = 0 from K sqrt(n wd_W wd_H) = kappa on.
Supervised contrastive loss on features of norm rho: the simplex ETF (signed, balanced; Graf et
al., ICML 2021, arXiv 2102.08817) or the orthogonal frame (non-negative, any counts; Kini et al.,
ICLR 2024, arXiv 2306.07960), each with its loss in closed form.

The simulations use gradient descent (its fixed points are the flow's): each model structure
compiles once and serves every hyperparameter value (they are traced leaves).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import log_softmax

import gflow
from gflow import config, results, simulation, theory
from gflow.config import ConfigError
from gflow.models.losses import ufm_focal, ufm_ls
from gflow.models.supcon import ufm_supcon
from gflow.models.ufm import ufm_ce

# S1: K=4, d=8, n=5, every weight decay 5e-3; S2: K=3, d=5, n=4, wd (W, H, b) = (1e-2, 2e-3, 1e-3)
S1 = {"classes": 4, "dim": 8, "per_class": 5, "wd_W": 5e-3, "wd_H": 5e-3, "wd_b": 5e-3}
S2 = {"classes": 3, "dim": 5, "per_class": 4, "wd_W": 1e-2, "wd_H": 2e-3, "wd_b": 1e-3}
NAMES = {"ls": "ufm-ls", "focal": "ufm-focal"}
HYPER = {"ls": {"smoothing": 0.1}, "focal": {"focal_gamma": 2.0}}
GD = {"kind": "gd", "lr": 1.0, "steps": 20_000, "saves": 4}


def _simulate(name, model, dynamics=GD, count=3, seed=0):
    return gflow.simulate({
        "model": {"name": name, **model},
        "dynamics": dynamics,
        "init": {"count": count, "seed": seed},
        "run": {"precision": "float64"},
    })  # fmt: skip


# --------------------------------------------------------------------------- LS and focal


def test_worked_values():
    """F* of the 1-d reduction at S1 and S2 (CE, LS alpha = 0.1, FL gamma = 2), worked out
    numerically from Zhou et al.'s ETF result; CE agrees with Zhu et al.'s closed form."""
    expected = {
        "S1": {"ce": 0.183691995718, "ls": 0.462698570965, "focal": 0.091202717714},
        "S2": {"ce": 0.102103226407, "ls": 0.348365393101, "focal": 0.045926168116},
    }
    for label, s in (("S1", S1), ("S2", S2)):
        K, n, wd_W, wd_H = s["classes"], s["per_class"], s["wd_W"], s["wd_H"]
        for kind, value in expected[label].items():
            opt = theory.ufm_loss_optimum(kind, K, n, wd_W, wd_H, **HYPER.get(kind, {}))
            assert opt.collapsed and opt.loss == pytest.approx(value, rel=1e-11, abs=0), kind
        ce = theory.ufm_ce_optimum(K, n, wd_W, wd_H)
        opt = theory.ufm_loss_optimum("ce", K, n, wd_W, wd_H)
        assert opt.loss == pytest.approx(ce.loss, rel=1e-13)
        assert opt.W_norm_sq == pytest.approx(ce.rho, rel=1e-11)
        assert opt.H_norm_sq == pytest.approx(ce.H_norm_sq, rel=1e-11)
        # alpha = 0 and gamma = 0 are CE
        assert theory.ufm_loss_optimum("ls", K, n, wd_W, wd_H).loss == pytest.approx(ce.loss)
        assert theory.ufm_loss_optimum("focal", K, n, wd_W, wd_H).loss == pytest.approx(ce.loss)
    ce = theory.ufm_loss_optimum("ce", 4, 5, 5e-3, 5e-3)
    assert ce.t == pytest.approx(3.34461149, abs=1e-8)
    assert ce.W_norm_sq / 4 == pytest.approx(7.47877865, abs=1e-8)  # ||w_k||^2 = t sqrt(n)


def test_zero_thresholds():
    """kappa_CE = 1, kappa_LS = 1 - alpha, kappa_FL = ((K-1)/K)^gamma (1 + gamma ln K/(K-1));
    in S1 (every wd equal) lambda_c = kappa/(K sqrt n): at 0.9 lambda_c the ETF (t*, F*), at
    1.1 lambda_c W = H = 0 with F = ln K (FL ((K-1)/K)^gamma ln K)."""
    for K, alpha, gamma in ((4, 0.1, 2.0), (7, 0.55, 0.5), (3, 0.0, 5.0)):
        assert theory.zero_stability_kappa("ce", K) == pytest.approx(1.0, rel=1e-14)
        assert theory.zero_stability_kappa("ls", K, smoothing=alpha) == pytest.approx(1 - alpha)
        focal = ((K - 1) / K) ** gamma * (1 + gamma * math.log(K) / (K - 1))
        assert theory.zero_stability_kappa("focal", K, focal_gamma=gamma) == pytest.approx(focal)
        assert theory.zero_loss("focal", K, focal_gamma=gamma) == pytest.approx(
            ((K - 1) / K) ** gamma * math.log(K), rel=1e-14
        )
    worked = {  # lambda_c, then t* and F* at 0.9 lambda_c, F at 1.1 lambda_c
        "ce": (0.1118033989, 0.27579355, 1.372144323237, 1.386294361120),
        "ls": (0.1006230590, 0.24999570, 1.374773533960, 1.386294361120),
        "focal": (0.1210115699, 0.13526003, 0.772366767410, 0.779790578130),
    }
    for kind, (threshold, t, below, above) in worked.items():
        hyper = HYPER.get(kind, {})
        lam = theory.zero_threshold_wd(kind, 4, 5, **hyper)
        assert lam == pytest.approx(threshold, abs=1e-10)
        assert theory.zero_global_threshold_wd(kind, 4, 5, **hyper) == pytest.approx(lam)
        inside = theory.ufm_loss_optimum(kind, 4, 5, 0.9 * lam, 0.9 * lam, **hyper)
        assert inside.collapsed and inside.t == pytest.approx(t, abs=1e-7)
        assert inside.loss == pytest.approx(below, abs=1e-11)
        outside = theory.ufm_loss_optimum(kind, 4, 5, 1.1 * lam, 1.1 * lam, **hyper)
        assert not outside.collapsed and outside.W_norm_sq == 0 and outside.H_norm_sq == 0
        assert outside.loss == pytest.approx(above, abs=1e-11)


def test_focal_jump_at_large_k():
    """K = 30, n = 2, gamma = 2: phi_FL is not convex near 0, so W = H = 0 is locally stable
    from lambda = 0.0271913840 but the global minimizer only from 0.0274333800; in between
    (lambda = 0.0273123820) the ETF's 3.173846154 is below zero's 3.178229998."""
    assert theory.zero_threshold_wd("focal", 30, 2, focal_gamma=2) == pytest.approx(
        0.0271913840, abs=1e-10
    )
    assert theory.zero_global_threshold_wd("focal", 30, 2, focal_gamma=2) == pytest.approx(
        0.0274333800, abs=1e-10
    )
    lam = 0.0273123820
    opt = theory.ufm_loss_optimum("focal", 30, 2, lam, lam, focal_gamma=2)
    assert opt.collapsed and opt.loss == pytest.approx(3.173846154, abs=1e-9)
    assert opt.zero_loss == pytest.approx(3.178229998, abs=1e-9)
    assert 30 * math.sqrt(2) * lam > theory.zero_stability_kappa("focal", 30, focal_gamma=2)


def test_losses_are_the_textbook_formulas():
    """The models' data terms against -sum_j q_j log p_j and -(1 - p_y)^gamma log p_y; at
    alpha = 0 and gamma = 0 both are the UFM-CE loss."""
    K, d, n = 4, 6, 3
    params = jax.tree.map(lambda x: 20 * x, ufm_ce(K, d, n, dtype=jnp.float64).init(
        jax.random.PRNGKey(0)))  # fmt: skip
    W, H, b = (np.asarray(params[k]) for k in "WHb")
    labels = np.repeat(np.arange(K), n)
    logp = log_softmax(H @ W.T + b, axis=1)
    decay = 0.5 * 5e-3 * (np.sum(W**2) + np.sum(H**2) + np.sum(b**2))
    alpha, gamma = 0.3, 1.5
    q = (1 - alpha) * np.eye(K)[labels] + alpha / K
    ls = ufm_ls(K, d, n, smoothing=alpha, dtype=jnp.float64)
    assert float(ls.loss(params)) == pytest.approx(np.mean(-np.sum(q * logp, 1)) + decay, rel=1e-13)
    p_y = np.exp(logp[np.arange(K * n), labels])
    focal = np.mean(-((1 - p_y) ** gamma) * np.log(p_y)) + decay
    fl = ufm_focal(K, d, n, focal_gamma=gamma, dtype=jnp.float64)
    assert float(fl.loss(params)) == pytest.approx(focal, rel=1e-12)
    ce = float(ufm_ce(K, d, n, dtype=jnp.float64).loss(params))
    assert float(ufm_ls(K, d, n, smoothing=0.0, dtype=jnp.float64).loss(params)) == pytest.approx(
        ce, rel=1e-14
    )
    assert float(ufm_focal(K, d, n, focal_gamma=0.0, dtype=jnp.float64).loss(params)) == (
        pytest.approx(ce, rel=1e-14)
    )


@functools.cache
def _full_problem(K, d, n):
    """(model, x) -> (F, dF/dx) of the full UFM, x = (W, H, b) flattened."""

    def unflatten(x):
        W, H = x[: K * d].reshape(K, d), x[K * d : K * d + K * n * d].reshape(K * n, d)
        return {"W": W, "H": H, "b": x[K * d + K * n * d :]}

    return jax.jit(lambda model, x: jax.value_and_grad(lambda x: model.loss(unflatten(x)))(x))


@pytest.mark.parametrize(
    "kind, hyper",
    [("ls", {"smoothing": 0.1}), ("ls", {"smoothing": 0.45}), ("focal", {"focal_gamma": 2.0}),
     ("focal", {"focal_gamma": 0.7})],
    ids=["ls-0.1", "ls-0.45", "focal-2", "focal-0.7"],
)  # fmt: skip
def test_reduction_is_the_minimum_of_the_full_problem(kind, hyper):
    """L-BFGS over (W, H, b) from random starts (S2) never goes below F* and reaches it; the
    ETF built from the reduction's t* (b = 0) has the model's loss F*."""
    K, d, n = S2["classes"], S2["dim"], S2["per_class"]
    build = ufm_ls if kind == "ls" else ufm_focal
    wd = {k: S2[k] for k in ("wd_W", "wd_H", "wd_b")}
    model = build(K, d, n, **hyper, **wd, dtype=jnp.float64)
    opt = theory.ufm_loss_optimum(kind, K, n, S2["wd_W"], S2["wd_H"], **hyper)
    etf = theory.simplex_etf(K, d)
    W = math.sqrt(opt.W_norm_sq / K) * etf
    H = math.sqrt(opt.H_norm_sq / (K * n)) * np.repeat(etf, n, axis=0)
    at_etf = {"W": jnp.asarray(W), "H": jnp.asarray(H), "b": jnp.zeros(K)}
    assert float(model.loss(at_etf)) == pytest.approx(opt.loss, rel=1e-13)
    F = _full_problem(K, d, n)
    rng = np.random.default_rng(1)
    found = []
    for _ in range(3):
        res = minimize(
            lambda x: tuple(np.asarray(v, float) for v in F(model, x)),
            rng.normal(scale=0.5, size=K * d + K * n * d + K), jac=True, method="L-BFGS-B",
            options={"maxiter": 20_000, "ftol": 1e-16, "gtol": 1e-12},
        )  # fmt: skip
        found.append(res.fun)
    assert min(found) >= opt.loss * (1 - 1e-12)
    assert min(found) == pytest.approx(opt.loss, rel=1e-10)


def _check_etf(ds, kind):
    """Every init at the closed form: loss, norms, an ETF with b = 0."""
    last = ds.isel(time=-1)
    assert list(ds.status.values) == ["ok"] * ds.sizes["init"]
    assert ds.attrs["theory_collapsed"] == 1
    np.testing.assert_allclose(last.loss, ds.attrs["theory_loss"], rtol=1e-10)
    np.testing.assert_allclose(last.W_norm_sq, ds.attrs["theory_W_norm_sq"], rtol=1e-8)
    np.testing.assert_allclose(last.H_norm_sq, ds.attrs["theory_H_norm_sq"], rtol=1e-8)
    for name in ("nc1", "nc2", "nc3"):
        assert float(last[name].max()) < 1e-8, (kind, name)
    assert float(np.abs(last.b).max()) < 1e-8
    assert results.target_metrics(ds) == ("nc1", "nc2", "nc3", "nc4")


@pytest.mark.parametrize("kind", ["ls", "focal"])
def test_descent_reaches_the_optimum_and_both_sides_of_the_threshold(kind):
    """S1 and S2 end at the 1-d reduction's ETF; in S1 with every wd at 0.9 lambda_c the ETF
    of the small t*, at 1.1 lambda_c W = H = b = 0 at the loss of zero logits."""
    hyper = HYPER[kind]
    for s, value in ((S1, {"ls": 0.462698570965, "focal": 0.091202717714}),
                     (S2, {"ls": 0.348365393101, "focal": 0.045926168116})):  # fmt: skip
        ds = _simulate(NAMES[kind], {**s, **hyper})
        assert ds.attrs["theory_loss"] == pytest.approx(value[kind], rel=1e-11)
        _check_etf(ds, kind)
    lam = theory.zero_threshold_wd(kind, 4, 5, **hyper)
    shape = {"classes": 4, "dim": 8, "per_class": 5, **hyper}
    below = _simulate(
        NAMES[kind], {**shape, "wd_W": 0.9 * lam, "wd_H": 0.9 * lam, "wd_b": 0.9 * lam}
    )
    assert below.attrs["theory_zero_threshold_wd"] == pytest.approx(lam, rel=1e-14)
    _check_etf(below, kind)
    above = _simulate(
        NAMES[kind], {**shape, "wd_W": 1.1 * lam, "wd_H": 1.1 * lam, "wd_b": 1.1 * lam}
    )
    last = above.isel(time=-1)
    assert above.attrs["theory_collapsed"] == 0 and above.attrs["theory_W_norm_sq"] == 0
    zero = theory.zero_loss(kind, 4, **hyper)
    assert above.attrs["theory_loss"] == pytest.approx(zero, rel=1e-14)
    np.testing.assert_allclose(last.loss, zero, rtol=1e-12)
    assert float(last.W_norm_sq.max()) < 1e-20 and float(last.H_norm_sq.max()) < 1e-20
    assert float(np.abs(last.b).max()) < 1e-10


# --------------------------------------------------------------------------- SupCon


def test_supcon_worked_values():
    """The closed forms at the worked points, and each equals the SupCon loss of its geometry
    (every feature its class's vertex)."""
    cases = [  # counts, d, rho, tau, non-negative, F*
        ((5,) * 4, 8, 1.0, 0.5, False, 1.617852761740),
        ((4,) * 3, 4, 2.0, 1.0, False, 1.105200544178),
        ((8, 4, 2, 2), 8, 1.0, 0.5, True, 1.693398036931),
        ((10, 3, 3, 2), 6, 1.5, 0.5, True, 1.502042274288),
    ]
    for counts, d, rho, tau, nonnegative, value in cases:
        opt = theory.supcon_optimum(counts, d, rho, tau, nonnegative)
        assert opt.loss == pytest.approx(value, rel=1e-11)
        labels = np.repeat(np.arange(len(counts)), counts)
        assert theory.supcon_loss(opt.means[labels], labels, tau) == pytest.approx(value, rel=1e-12)
        np.testing.assert_allclose(np.linalg.norm(opt.means, axis=1), rho, rtol=1e-14)
        assert (opt.means >= 0).all() or not nonnegative
    assert theory.supcon_optimum((5, 4), 3, 1.0, 0.5, False) is None  # signed, imbalanced
    assert theory.supcon_optimum((5, 5, 5), 2, 1.0, 0.5, True) is None  # non-negative, d < K


@functools.cache
def _supcon_problem(N, d):
    return jax.jit(
        lambda model, x: jax.value_and_grad(lambda x: model.loss({"V": x.reshape(N, d)}))(x)
    )


@pytest.mark.parametrize(
    "counts, d, rho, tau, nonnegative",
    [((4,) * 3, 4, 2.0, 1.0, False), ((10, 3, 3, 2), 6, 1.5, 0.5, True)],
    ids=["signed-etf", "nonnegative-frame"],
)
def test_supcon_closed_form_is_the_numerical_minimum(counts, d, rho, tau, nonnegative):
    """L-BFGS over the free V (the model's parametrization) never goes below F* and reaches it."""
    model = ufm_supcon(len(counts), d, counts, feature_norm=rho, temperature=tau,
                       nonnegative=nonnegative, dtype=jnp.float64)  # fmt: skip
    expected = theory.supcon_optimum(counts, d, rho, tau, nonnegative).loss
    N, F = sum(counts), _supcon_problem(sum(counts), d)
    rng = np.random.default_rng(2)
    found = []
    for _ in range(3):
        res = minimize(
            lambda x: tuple(np.asarray(v, float) for v in F(model, x)), rng.normal(size=N * d),
            jac=True, method="L-BFGS-B", options={"maxiter": 20_000, "ftol": 1e-16, "gtol": 1e-11},
        )  # fmt: skip
        found.append(res.fun)
    assert min(found) >= expected * (1 - 1e-12)
    assert min(found) == pytest.approx(expected, rel=1e-8)


def test_supcon_descent_reaches_the_etf():
    """Signed, K = 4, n = 5, d = 8: every init ends on the simplex ETF of radius rho (W, the
    class means, too), within-class cosine 1 and between-class cosine -1/(K-1), at F*."""
    model = {"classes": 4, "dim": 8, "per_class": 5}
    dynamics = {"kind": "gd", "lr": 0.2, "steps": 5_000, "saves": 4}
    for rho, tau, value in ((1.0, 0.5, 1.617852761740), (1.4, 0.8, None)):
        ds = _simulate("ufm-supcon", {**model, "feature_norm": rho, "temperature": tau},
                       dynamics, count=4)  # fmt: skip
        expected = theory.supcon_etf_loss(4, 5, rho, tau)
        assert ds.attrs["theory_loss"] == pytest.approx(value or expected, rel=1e-11)
        last = ds.isel(time=-1)
        np.testing.assert_allclose(last.loss, expected, rtol=1e-11)
        for name in ("nc1", "nc2", "nc3"):
            assert float(last[name].max()) < 1e-8, name
        np.testing.assert_allclose(last.within_cosine, 1.0, atol=1e-10)
        np.testing.assert_allclose(last.between_cosine, -1 / 3, atol=1e-10)
        np.testing.assert_allclose(np.linalg.norm(last.W, axis=-1), rho, rtol=1e-10)
        assert results.target_metrics(ds) == ("nc1", "nc2", "nc3", "nc4")


def test_supcon_nonnegative_descent_reaches_the_orthogonal_frame():
    """Non-negative, counts (8, 4, 2, 2), d = 8: the orthogonal frame of radius rho at every
    imbalance (class means orthogonal, of equal norm rho; features >= 0), at F*."""
    model = {"classes": 4, "dim": 8, "per_class": [8, 4, 2, 2], "nonnegative": True}
    dynamics = {"kind": "gd", "lr": 0.2, "steps": 30_000, "saves": 4}
    for rho, tau, value in ((1.0, 0.5, 1.693398036931), (1.5, 0.5, None)):
        ds = _simulate("ufm-supcon", {**model, "feature_norm": rho, "temperature": tau},
                       dynamics, count=4)  # fmt: skip
        expected = theory.supcon_orthogonal_loss((8, 4, 2, 2), rho, tau)
        assert ds.attrs["theory_loss"] == pytest.approx(value or expected, rel=1e-11)
        last = ds.isel(time=-1)
        np.testing.assert_allclose(last.loss, expected, rtol=1e-7)
        assert float(last.nc1.max()) < 1e-8
        assert float(last.orthogonal_classifier.max()) < 1e-5
        np.testing.assert_allclose(last.between_cosine, 0.0, atol=1e-6)
        assert float(last.H.min()) >= 0
        assert results.target_metrics(ds) == ("nc1", "orthogonal_classifier", "nc4")


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "model, message",
    [
        ({"name": "ufm-ls", "smoothing": 1.0}, r"^model\.smoothing: must be in \[0, 1\), got 1$"),
        ({"name": "ufm-ls", "smoothing": -0.1}, r"^model\.smoothing: must be >= 0, got -0\.1$"),
        ({"name": "ufm-focal", "focal_gamma": -1}, r"^model\.focal_gamma: must be >= 0, got -1$"),
        ({"name": "ufm-supcon", "temperature": 0}, r"^model\.temperature: must be > 0, got 0$"),
        ({"name": "ufm-supcon", "feature_norm": -1.0}, r"^model\.feature_norm: must be > 0"),
        ({"name": "ufm-supcon", "per_class": [3, 1, 2, 2]},
         r"^model\.per_class: ufm-supcon needs >= 2 samples per class .*got 1$"),
        ({"name": "ufm-ce", "smoothing": 0.2}, r"^model\.smoothing: ufm-ce has no option smoothing"),
        ({"name": "ufm-supcon", "bias": True}, r"^model\.bias: ufm-supcon has no bias"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_errors(model, message):
    with pytest.raises(ConfigError, match=message) as info:
        config.from_dict({"model": model})
    assert "\n" not in str(info.value)


def test_closed_form_attributes_apply_where_known():
    def attrs(**model):
        cfg = config.from_dict({"model": model})
        return results.theory_attrs(simulation.build_model(cfg), cfg)

    ls = attrs(name="ufm-ls", **S1)
    assert ls["theory_loss"] == pytest.approx(0.462698570965, rel=1e-11)
    assert ls["theory_metrics"] == "nc1 nc2 nc3 nc4" and ls["theory_collapsed"] == 1
    focal = attrs(name="ufm-focal", **S2)
    assert focal["theory_loss"] == pytest.approx(0.045926168116, rel=1e-11)
    assert focal["theory_zero_global_threshold_wd"] == pytest.approx(
        focal["theory_zero_threshold_wd"]
    )
    imbalanced = attrs(name="ufm-ls", classes=3, per_class=[4, 2, 2])
    assert "theory_loss" not in imbalanced and imbalanced["theory_metrics"] == "nc1"
    supcon = attrs(name="ufm-supcon", classes=4, per_class=[4, 3, 2, 2], nonnegative=True)
    assert supcon["theory_loss"] == pytest.approx(
        theory.supcon_orthogonal_loss((4, 3, 2, 2), 1.0, 0.5), rel=1e-14
    )
    assert "orthogonal frame" in supcon["theory_geometry"]
    assert "theory_loss" not in attrs(name="ufm-supcon", classes=4, per_class=[4, 3, 2, 2])
