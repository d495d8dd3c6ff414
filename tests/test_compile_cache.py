"""Hyperparameters are data: one compiled solve per model structure.

A model's hyperparameters (weight decays, impacts, the init scale) are array leaves, and so are
the dynamics settings that do not change shapes (save times, rtol/atol, dt0, lr, noise). These
tests check that the traced values are the values used (each agrees with the same model solved
with its values as compile-time constants), that a second run with other values neither retraces
nor recompiles, and that a sweep's points solved in one batch equal each point solved alone.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow import batch, models, simulation, sweep, theory
from gflow.config import DynamicsConfig

SMALL = {
    "model": {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2},
    "dynamics": {"t1": 200.0, "saves": 5, "rtol": 1e-9, "atol": 1e-11},
    "init": {"count": 3},
    "run": {"precision": "float64"},
}


def _config(**changes):
    raw = {section: dict(values) for section, values in SMALL.items()}
    for section, values in changes.items():
        raw.setdefault(section, {}).update(values)
    return simulation.as_config(raw)


def test_another_value_neither_retraces_nor_recompiles():
    first = simulation.simulate(_config())
    before = simulation.cache_info()
    changed = [
        {"model": {"wd_W": 2e-3, "wd_H": 1e-2}},
        {"dynamics": {"t1": 900.0, "rtol": 1e-7}},
        {"init": {"seed": 4, "scale": 0.3}},
    ]
    runs = [simulation.simulate(_config(**c)) for c in changed]
    after = simulation.cache_info()
    assert after["traces"] == before["traces"] and after["compiles"] == before["compiles"]
    assert after["hits"] == before["hits"] + len(changed)
    for ds in runs:  # the new values were used: other numbers, and compile_seconds 0
        assert not np.array_equal(ds.loss.values, first.loss.values)
        assert ds.attrs["compile_seconds"] == 0.0
    assert runs[1].time.values[-1] == 900.0 and float(runs[1].stop_time.max()) == 900.0


def test_a_structural_change_compiles_again():
    simulation.simulate(_config())
    before = simulation.cache_info()
    simulation.simulate(_config(model={"classes": 4}))
    assert simulation.cache_info()["compiles"] == before["compiles"] + 1


def test_models_of_one_structure_share_a_treedef():
    a = models.ufm_ce(4, 8, 5, wd_W=1e-3, dtype=jnp.float64)
    b = models.ufm_ce(4, 8, 5, wd_W=7e-3, init_scale=0.5, dtype=jnp.float64)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.structure(a) != jax.tree.structure(models.ufm_ce(4, 8, 6))
    assert (
        models.hyperparameters(b)["wd_W"] == 7e-3 and models.hyperparameters(b)["init_scale"] == 0.5
    )


@pytest.mark.parametrize(
    "dyn",
    [
        DynamicsConfig(t1=300.0, saves=4, rtol=1e-10, atol=1e-12),
        DynamicsConfig(t1=300.0, saves=4, rtol=1e-10, atol=1e-12, reparam="log"),
        DynamicsConfig(kind="gd", lr=0.3, steps=200, saves=4),
        DynamicsConfig(kind="sde", solver="euler", t1=5.0, dt0=0.01, noise=0.05, saves=4),
    ],
    ids=["flow", "log-clock", "gd", "sde"],
)
def test_traced_values_agree_with_constants(dyn):
    """The cached solve (values as inputs) against a solve compiled with the same values as
    constants (a custom observer takes that path): the same accepted steps, equal to rounding
    in float64 (measured: bit-identical for flow and gd, 1e-15 for the SDE)."""
    model = models.ufm_ce(3, 4, 2, wd_W=3e-3, wd_H=8e-3, dtype=jnp.float64)
    params0 = batch.init_batch(model, seed=1, count=2)
    keys = batch.noise_keys(0, 2)
    traced = batch.batched_solver(model, dyn)(params0, keys)
    constant = batch.batched_solver(model, dyn, observe=batch.observer(model))(params0, keys)
    np.testing.assert_array_equal(traced.num_steps, constant.num_steps)
    for name in ("loss", "nc1", "nc3"):
        np.testing.assert_allclose(traced.observed[name], constant.observed[name], rtol=1e-13)
    np.testing.assert_allclose(traced.final["H"], constant.final["H"], rtol=1e-13, atol=1e-15)


def test_stacked_hyperparameters_vmap_like_inits():
    """Models of one structure with their hyperparameters stacked vmap like a batch of inits:
    at each weight decay's closed-form optimum (W = sqrt(rho/K) x simplex ETF, h_i = c w_{y_i}),
    one vmapped loss gives that decay's closed-form loss (Zhu et al. 2021)."""
    K, n, d = 3, 2, 4
    decays = (1e-3, 5e-3, 2e-2)
    many = [models.ufm_ce(K, d, n, wd_W=w, wd_H=w, bias=False, dtype=jnp.float64) for w in decays]
    labels = many[0].labels
    optima = [theory.ufm_ce_optimum(K, n, w, w) for w in decays]
    assert all(opt.collapsed for opt in optima)
    params = []
    for opt in optima:
        W = np.sqrt(opt.rho / K) * theory.simplex_etf(K, d)
        params.append({"W": jnp.asarray(W), "H": jnp.asarray(opt.c * W[labels])})
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *params)
    hyper = models.stack_hyperparameters(many)
    data = models.split_hyperparameters(many[0])[1]
    losses = jax.vmap(lambda h, p: eqx.combine(h, data).loss(p))(hyper, stacked)
    np.testing.assert_allclose(losses, [opt.loss for opt in optima], rtol=1e-12)
    np.testing.assert_allclose(losses, [m.loss(p) for m, p in zip(many, params, strict=True)],
                               rtol=1e-14)  # fmt: skip


def test_run_batch_traces_once_per_structure():
    dyn = DynamicsConfig(kind="gd", lr=0.2, steps=50, saves=3)
    params0 = batch.init_batch(models.ufm_mse(3, 4, 2, dtype=jnp.float64), seed=0, count=2)
    batch.run_batch(models.ufm_mse(3, 4, 2, dtype=jnp.float64), dyn, params0)
    traces = batch.TRACES["solve"]
    other = models.ufm_mse(3, 4, 2, wd_W=0.02, wd_H=0.03, dtype=jnp.float64)
    out = batch.run_batch(other, DynamicsConfig(kind="gd", lr=0.4, steps=50, saves=3), params0)
    assert batch.TRACES["solve"] == traces
    assert np.all(np.isfinite(out.observed["loss"]))


SWEEP = """\
[model]
name = "ufm-ce"
classes = 3
dim = 4
per_class = 2
wd_H = [1e-3, 5e-3, 2e-2]

[dynamics]
t1 = [150.0, 400.0]
saves = 4

[init]
count = 3
seed = [0, 1]

[run]
precision = "float64"
"""


def test_a_folded_sweep_equals_its_points_alone(tmp_path, monkeypatch):
    """12 points that differ in wd_H, t1 and the seed: one compilation, one batch; every
    point's results (written by writer processes) are bit-identical to solving that point
    alone."""
    monkeypatch.setattr(sweep, "PARALLEL_WRITES_FROM", 2)
    if sweep.writer_processes(12) == 0:
        monkeypatch.setattr(sweep, "writer_processes", lambda points: 2)
    config = tmp_path / "sweep.toml"
    config.write_text(SWEEP)
    before = simulation.cache_info()
    sweep.run(config, tmp_path / "out", progress=False)
    assert simulation.cache_info()["compiles"] <= before["compiles"] + 1
    import tomllib

    _, grid = sweep.points(tomllib.loads(SWEEP))
    whole = sweep.open_sweep(tmp_path / "out")
    assert dict(whole.sizes)["wd_H"] == 3 and whole.sizes["t1"] == 2 and whole.sizes["seed"] == 2
    for n, (_index, cfg) in enumerate(grid):
        alone = simulation.simulate(cfg)
        point = sweep.load_point(tmp_path / "out", **{
            "wd_H": cfg.model.wd_H, "t1": cfg.dynamics.t1, "seed": cfg.init.seed})  # fmt: skip
        for name in ("loss", "nc1", "nc2", "W", "H", "b", "num_steps", "time"):
            assert np.array_equal(alone[name].values, point[name].values), (n, name)
        sel = whole.sel(wd_H=cfg.model.wd_H, t1=cfg.dynamics.t1, seed=cfg.init.seed)
        np.testing.assert_array_equal(sel.loss.values, alone.loss.values)
        np.testing.assert_array_equal(sel.save_time.values, alone.time.values)


@pytest.mark.parametrize(
    "model",
    [
        {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2},
        {"name": "deep-ufm", "classes": 3, "dim": 4, "per_class": 2, "depth": 2},
        {"name": "le-ode", "classes": 3, "dim": 3, "per_class": 4},
    ],
    ids=lambda m: m["name"],
)
def test_a_batch_draws_its_points_inits_as_each_point_alone(model):
    """The initial parameters of a batch of points (other init.scale and seed, blocks of
    inits) are drawn in one vmapped call: bit-identical to each block drawn on its own."""
    cfgs = [
        _config(model=model, init={"seed": seed, "scale": scale, "count": 5})
        for seed, scale in ((0, 0.1), (3, 0.7), (3, 0.1))
    ]
    segments = [(cfgs[0], 0, 5), (cfgs[1], 1, 4), (cfgs[2], 2, 5)]
    together = simulation._InputCache().segments(segments)
    for (cfg, lo, hi), built in zip(segments, together, strict=True):
        model_alone = simulation.build_model(cfg, check=False)
        alone = simulation.block_initializer(cfg, model_alone, jnp.float64)(lo, hi)
        assert jax.tree.structure(alone) == jax.tree.structure(built[3])
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(built[3]), strict=True):
            np.testing.assert_array_equal(np.asarray(a), b)
    # the points differ: another seed or scale draws other values
    assert not np.array_equal(
        jax.tree.leaves(together[1][3])[0][1:], jax.tree.leaves(together[2][3])[0][:2]
    )
