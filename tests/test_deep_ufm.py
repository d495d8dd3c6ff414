"""Deep linear UFM with cross-entropy: the low-rank bias of depth (Garrod & Keating 2024, arXiv
2410.23169; Súkeník et al. 2024), in float64.

With L weight layers, n per class and d >= K the loss reduces to the class means' logits Zbar:
min (1/K) sum_k CE(Zbar_k, k) + (L+1)/2 c sum_i sigma_i(Zbar)^{2/(L+1)}, c = (n lam_H
lam_W^L)^{1/(L+1)}. At depth 1 the simplex ETF is optimal (Zhu et al. 2021); from depth 2 on,
lower-rank class means (the octahedron, rank 3, for K = 6) beat it, and the ETF stays a local
minimum. K = 6, n = 5, d = 8, lam_W = lam_H = 5e-3 throughout.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gflow
from gflow import metrics, results, theory
from gflow.batch import init_batch
from gflow.config import ConfigError, from_dict
from gflow.models.deep import deep_ufm

K, N_PER, DIM, WD = 6, 5, 8, 5e-3

# candidate losses with the scale optimized (Garrod & Keating 2024, their candidate shapes);
# n = 5, lam_W = lam_H = 5e-3, d = 8
TABLE = [
    (6, 1, "etf", 0.3055090295),
    (6, 2, "etf", 0.2195778989),
    (6, 2, "octahedron", 0.2050853584),
    (6, 2, "polygon", 0.2494012437),
    (6, 3, "etf", 0.1950744281),
    (6, 3, "octahedron", 0.1647723558),
    (6, 3, "polygon", 0.1768147961),
    (6, 4, "etf", 0.1888844577),
    (6, 4, "octahedron", 0.1496541683),
    (6, 4, "polygon", 0.1475469987),
    (4, 2, "etf", 0.1318198602),
    (4, 2, "polygon", 0.1322490403),  # the square
    (4, 3, "etf", 0.1170740228),
    (4, 3, "polygon", 0.1072964608),
    (4, 4, "etf", 0.1133472533),
    (4, 4, "polygon", 0.0979802035),
]
BEST = {(6, 1): "etf", (6, 2): "octahedron", (6, 3): "octahedron", (6, 4): "polygon",
        (4, 2): "etf", (4, 3): "polygon", (4, 4): "polygon"}  # fmt: skip
RANKS = {"etf": K - 1, "octahedron": 3, "polygon": 2}
ACTS = ("relu", "linear")


@pytest.mark.parametrize("K, L, name, value", TABLE, ids=lambda v: str(v))
def test_candidate_losses(K, L, name, value):
    found = theory.deep_ce_candidates(K, N_PER, WD, WD, L)
    assert found[name].loss == pytest.approx(value, abs=2e-10)
    assert found[name].rank == (K - 1 if name == "etf" else RANKS[name])
    assert theory.deep_ce_optimum(K, N_PER, WD, WD, L).name == BEST[(K, L)]


def test_depth_one_is_the_plain_ufm():
    """L = 1: the ETF candidate is Zhu et al.'s optimum (its bias is 0 there anyway), and the
    MSE optimum is Tirer & Bruna's orthogonal frame without bias, s = 1 - K sqrt(n lam^2)."""
    for K_ in (4, 6):
        etf = theory.deep_ce_candidates(K_, N_PER, WD, 2 * WD, 1)["etf"]
        zhu = theory.ufm_ce_optimum(K_, N_PER, WD, 2 * WD)
        assert etf.loss == pytest.approx(zhu.loss, rel=1e-12)
        assert etf.scale == pytest.approx(zhu.c * zhu.rho / (K_ - 1), rel=1e-9)  # the gap
        mse = theory.deep_mse_optimum(K_, N_PER, WD, 2 * WD, 1)
        tb = theory.ufm_mse_optimum(K_, N_PER, WD, 2 * WD, bias=False)
        assert mse.loss == pytest.approx(tb.loss, rel=1e-12) and mse.scale == pytest.approx(tb.s)


def _point(model, name, scale, depth, loss="ce"):
    """The full model's parameters at a candidate: balanced factors of its Zbar, h_i = mu_{y_i}."""
    Zbar = theory.candidate_logits(name, K, scale)
    means, weights = theory.balanced_factors(Zbar, N_PER, WD, WD, depth, DIM)
    return {"H": jnp.asarray(means[model.labels]), "W": [jnp.asarray(W) for W in weights]}


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_candidates_are_critical_points_of_the_full_model(loss):
    """At depth 3 each candidate, built as balanced factors of its Zbar, is a critical point of
    the full (H, W_1, W_2, W_3) loss with the closed-form value: this checks the reduction, c
    and the 1-d scale minimizations."""
    model = deep_ufm(K, DIM, N_PER, depth=3, loss=loss, dtype=jnp.float64)
    value_and_grad = jax.jit(jax.value_and_grad(model.loss))
    if loss == "ce":
        found = theory.deep_ce_candidates(K, N_PER, WD, WD, 3)
        found.pop("zero")
    else:
        found = {"orthogonal": theory.deep_mse_optimum(K, N_PER, WD, WD, 3)}
    for name, cand in found.items():
        params = _point(model, name, cand.scale, 3)
        value, grad = value_and_grad(params)
        assert float(value) == pytest.approx(cand.loss, rel=1e-12), name
        grad_norm = math.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grad)))
        assert grad_norm < 1e-12, name  # measured ~1e-16
        W, H, _, labels = model.readout(params)
        rank = theory.numerical_rank(np.asarray(metrics.class_means(H, labels, K)))
        assert rank == cand.rank, name


def test_relu_and_mse_losses_are_the_formula():
    """relu(.) after each hidden layer (not on H, not on the logits); MSE against one-hot."""
    model = deep_ufm(3, 4, 2, depth=3, activation="relu", loss="mse", wd_W=0.1, wd_H=0.2,
                     dtype=jnp.float64)  # fmt: skip
    rng = np.random.default_rng(0)
    p = {
        "H": rng.standard_normal((6, 4)),
        "W": [rng.standard_normal(s) for s in [(4, 4)] * 2 + [(3, 4)]],
    }
    H, (W1, W2, W3) = p["H"], p["W"]
    A = np.maximum(np.maximum(H @ W1.T, 0) @ W2.T, 0)
    Y = np.eye(3)[model.labels]
    expected = 0.5 * np.sum((A @ W3.T - Y) ** 2) / 6 + 0.05 * sum(np.sum(W**2) for W in p["W"])
    expected += 0.1 * np.sum(H**2)
    assert float(jax.jit(type(model).loss)(model, p)) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(jax.jit(type(model).readout)(model, p).H, A, rtol=1e-12)
    assert np.any(A > 0) and np.any(A == 0) and np.any(H < 0)  # H itself is not rectified
    # depth 1 has no hidden layer: relu or not, the plain UFM without bias
    q = {"H": H, "W": [W3]}
    relu1, lin1 = (deep_ufm(3, 4, 2, depth=1, activation=a, dtype=jnp.float64) for a in ACTS)
    assert float(relu1.loss(q)) == float(lin1.loss(q))


FLOW = {"kind": "flow", "t1": 20000.0, "rtol": 1e-9, "atol": 1e-11, "saves": 8,
        "max_steps": 100_000}  # fmt: skip


def _simulate(depth, init):
    model = {"name": "deep-ufm", "classes": K, "dim": DIM, "per_class": N_PER, "depth": depth}
    return gflow.simulate(
        {"model": model, "dynamics": FLOW, "init": init, "run": {"precision": "float64"}}
    )


def _reached(ds, depth) -> list[str]:
    found = theory.deep_ce_candidates(K, N_PER, WD, WD, depth)
    last = ds.isel(time=-1)
    return [
        theory.nearest_candidate(float(loss), int(rank), found)
        for loss, rank in zip(last.loss.values, last.class_mean_rank.values, strict=True)
    ]


def test_depth_one_ends_at_the_etf_from_every_init():
    ds = _simulate(1, {"count": 8, "scale": 1.0, "seed": 0})
    assert list(ds.status.values) == ["ok"] * 8
    last = ds.isel(time=-1)
    np.testing.assert_allclose(last.loss, 0.3055090295, atol=1e-9)
    assert ds.attrs["theory_loss"] == pytest.approx(0.3055090295386779, rel=1e-12)
    assert ds.attrs["theory_candidate"] == "etf"
    assert _reached(ds, 1) == ["etf"] * 8
    assert np.all(last.class_mean_rank == K - 1) and np.all(last.sv4_layer0 > 0.999)
    assert np.all(results.collapsed(ds))  # NC1-NC3 < 1e-3, NC4 = 0: a simplex ETF
    assert float(last.nc2.max()) < 1e-6


def test_depth_three_prefers_the_octahedron_and_keeps_the_etf_a_local_minimum(tmp_path):
    """Six random inits (scale 1) and two starts near the ETF (relative perturbation 1e-2), in
    one vmapped solve: the lowest loss is the octahedron's (rank 3), below the ETF's, and the
    perturbed ETFs return to the ETF. The linear layers' balancedness decays like e^{-2 lam t}."""
    model = deep_ufm(K, DIM, N_PER, depth=3, init_scale=1.0, dtype=jnp.float64)
    random = init_batch(model, seed=0, count=6)
    etf = _point(model, "etf", theory.deep_ce_candidates(K, N_PER, WD, WD, 3)["etf"].scale, 3)
    rng = np.random.default_rng(1)
    near = jax.tree.map(lambda x: np.stack([x * (1 + 1e-2 * rng.standard_normal(x.shape))
                                            for _ in range(2)]), etf)  # fmt: skip
    starts = jax.tree.map(lambda a, b: np.concatenate([a, b]), random, near)
    arrays = {"H": starts["H"], **{f"W/{l}": W for l, W in enumerate(starts["W"])}}
    np.savez(tmp_path / "starts.npz", **arrays)
    ds = _simulate(3, {"count": 8, "from": str(tmp_path / "starts.npz")})
    assert list(ds.status.values) == ["ok"] * 8
    last = ds.isel(time=-1)
    loss, rank = last.loss.values, last.class_mean_rank.values
    best = int(np.argmin(loss))
    assert loss[best] == pytest.approx(0.1647723558, abs=1e-9) and rank[best] == 3
    assert loss[best] < 0.1950744281 - 0.03  # the ETF's loss
    reached = _reached(ds, 3)
    assert reached[best] == "octahedron" and reached[6:] == ["etf", "etf"]
    np.testing.assert_allclose(loss[6:], 0.1950744281, atol=1e-9)
    assert np.all(rank[6:] == K - 1) and float(last.nc2.values[6:].max()) < 1e-6
    # the target metrics (NC1, NC3 at every layer, NC4) vanish at both; NC2 only at the ETF
    assert bool(results.collapsed(ds)[best]) and np.all(results.collapsed(ds)[6:])
    assert float(last.nc2[best]) > 0.1
    assert ds.attrs["theory_candidate"] == "octahedron"
    assert ds.attrs["theory_loss"] == pytest.approx(0.1647723558, abs=1e-9)
    assert ds.attrs["theory_loss_etf"] == pytest.approx(0.1950744281, abs=1e-9)
    assert ds.attrs["theory_loss_polygon"] == pytest.approx(0.1768147961, abs=1e-9)
    early = ds.time.values <= 250
    balance = ds.balancedness.values[:, early]
    expected = balance[:, :1] * np.exp(-2 * WD * ds.time.values[early])
    np.testing.assert_allclose(balance, expected, rtol=1e-6)


@pytest.mark.parametrize(
    "model, message",
    [
        ({"depth": 0}, r"^model\.depth: must be >= 1, got 0$"),
        ({"activation": "tanh"}, r"^model\.activation: unknown value 'tanh'; valid: linear, relu$"),
        ({"loss": "hinge"}, r"^model\.loss: unknown value 'hinge'; valid: ce, mse$"),
        ({"name": "deep-linear", "depth": 1}, r"^model\.depth: must be >= 2, got 1$"),
        ({"name": "deep-linear", "activation": "relu"},
         r"^model\.activation: deep-linear has no option activation; it applies to deep-ufm$"),
        ({"name": "ufm-ce", "loss": "mse"}, r"^model\.loss: ufm-ce has no option loss"),
    ],
)  # fmt: skip
def test_bad_options_give_the_one_line_error(model, message):
    with pytest.raises(ConfigError, match=message):
        from_dict({"model": {"name": "deep-ufm", **model}})


def test_depth_one_is_accepted_and_defaults_are_the_models_own():
    cfg = from_dict({"model": {"name": "deep-ufm", "depth": 1, "activation": "relu"}})
    assert cfg.model.depth == 1 and cfg.model.activation == "relu" and cfg.model.loss == "ce"
    assert from_dict({"model": {"name": "deep-linear"}}).model.depth == 3
    assert from_dict({"model": {"name": "deep-ufm", "loss": "mse"}}).model.loss == "mse"


def test_nearest_candidate():
    found = theory.deep_ce_candidates(K, N_PER, WD, WD, 3)
    assert theory.nearest_candidate(0.16477235577, 3, found) == "octahedron"
    assert theory.nearest_candidate(0.16477235577, 5, found).startswith("other (rank 5")
    assert theory.nearest_candidate(0.1757219268, 3, found).startswith("other (rank 3")
    assert theory.nearest_candidate(math.log(K), 6, found) == "zero"  # no rank at W = H = 0
