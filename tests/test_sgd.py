"""Mini-batch SGD (``dynamics.kind = "sgd"``): at batch_size = N it is gd bit for bit; each init
reshuffles its samples every epoch from its own key (the same bits on a rerun); at smaller
batches its end point approaches gd's as the learning rate shrinks at equal flow time; the
models whose loss is a mean over samples expose it with per-sample weights, and bad input gets
a one-line ConfigError."""

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from gflow import cli, config, models, simulation
from gflow.batch import noise_keys, solver_for
from gflow.config import ConfigError
from gflow.dynamics import STATUS, gradient_descent, stochastic_gradient_descent
from gflow.dynamics.minibatch import batch_weights
from gflow.models import registry

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "ufm-ce-sgd.toml"
TINY = {"name": "ufm-ce", "classes": 3, "dim": 3, "per_class": 2}  # N = 6


def tiny(kind: str, **dynamics):
    return {
        "model": TINY,
        "dynamics": {"kind": kind, "lr": 0.2, "steps": 24, "saves": 4, **dynamics},
        "init": {"count": 2, "seed": 3, "scale": 0.5},
        "run": {"precision": "float64"},
    }


def test_full_batch_is_gd_bit_for_bit():
    """Through gflow's solve (batch.solver_for), for a deterministic and a stochastic optimizer:
    at batch_size = N every step is a gd step, and the optimizer's noise is gd's."""
    cfg = config.from_dict(tiny("gd"))
    model = simulation.build_model(cfg)
    params0 = simulation.block_initializer(cfg, model, jnp.float64)(0, 2)
    keys = noise_keys(cfg.init.seed, 2)

    def observe(params):
        return {"loss": model.loss(params)}

    def both(params0, keys):
        out = {}
        for optimizer in ("sgd", "noisy_sgd"):
            for kind, extra in (("gd", {}), ("sgd", {"batch_size": model.num_samples})):
                d = dataclasses.replace(cfg.dynamics, kind=kind, optimizer=optimizer, **extra)
                out[optimizer, kind] = jax.vmap(solver_for(model, d, observe=observe))(
                    params0, keys
                )
        wild = dataclasses.replace(cfg.dynamics, kind="sgd", lr=1e3, batch_size=2)
        out["wild", "sgd"] = jax.vmap(solver_for(model, wild, observe=observe))(params0, keys)
        return out

    out = jax.jit(both)(params0, keys)
    for optimizer in ("sgd", "noisy_sgd"):
        gd, sgd = out[optimizer, "gd"], out[optimizer, "sgd"]
        assert np.all(np.asarray(gd.status) == 0)
        for a, b in zip(jax.tree.leaves(gd), jax.tree.leaves(sgd), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=optimizer)
    noisy = jax.tree.leaves(out["noisy_sgd", "gd"].final)[0]
    assert not np.array_equal(noisy, jax.tree.leaves(out["sgd", "gd"].final)[0])
    # a run that blows up is marked as gd marks it
    wild = out["wild", "sgd"]
    assert set(np.asarray(wild.status)) <= {STATUS.index("nan"), STATUS.index("diverged")}


def test_each_epoch_is_a_permutation_cut_into_batches():
    """Every step weighs B samples by N/B (mean-one weights); over an epoch every sample is in
    one batch at most (exactly one when B divides N); each init's key gives its own order."""
    N = 7
    keys = noise_keys(0, 2)
    sizes = (1, 2, 3, 7)

    @jax.jit
    def weights(keys):
        def one(key, B):
            step = lambda t: batch_weights(key, t, batch_size=B, num_samples=N, dtype=jnp.float64)  # noqa: E731
            return jax.vmap(step)(jnp.arange(2 * N))

        return [one(keys[0], B) for B in sizes], one(keys[1], 1)

    every, second = weights(keys)
    for B, w in zip(sizes, every, strict=True):
        w = np.asarray(w)
        per_epoch = N // B
        assert set(np.unique(w)) <= {0.0, N / B}
        np.testing.assert_allclose(w.sum(axis=1), N)
        for epoch in range(len(w) // per_epoch):
            seen = (w[epoch * per_epoch : (epoch + 1) * per_epoch] > 0).sum(axis=0)
            assert seen.max() == 1 and seen.sum() == per_epoch * B
    first, second = np.asarray(every[0]), np.asarray(second)
    assert not np.array_equal(first, second)  # two inits, two orders
    assert not np.array_equal(first[:N], first[N : 2 * N])  # two epochs, two orders


@pytest.fixture(scope="module")
def trend():
    """gd and mini-batch SGD (B = 3 of N = 12, four keys) from one start at lr 0.2, 0.05,
    0.0125, each to flow time lr x steps = 100: one program."""
    model = models.ufm_ce(3, 3, 4, wd_W=0.05, wd_H=0.05, wd_b=0.05, init_scale=0.3,
                          dtype=jnp.float64)  # fmt: skip
    start = model.init(jax.random.PRNGKey(1))
    keys = noise_keys(0, 4)

    def observe(params):
        return {"loss": model.loss(params)}

    def run(start, keys):
        out = []
        for lr in (0.2, 0.05, 0.0125):
            grid = np.array([0, round(100 / lr)])
            gd = gradient_descent(model.loss, start, grid, observe, lr=lr)
            sgd = jax.vmap(
                lambda k, lr=lr, grid=grid: stochastic_gradient_descent(
                    model.weighted_loss,
                    start,
                    grid,
                    observe,
                    k,
                    lr=lr,
                    batch_size=3,
                    num_samples=model.num_samples,
                )  # fmt: skip
            )(keys)
            out.append((gd, sgd))
        return out

    return jax.jit(run)(start, keys)


def test_smaller_steps_bring_sgd_to_gd(trend):
    """With reshuffled batches the end point's distance to gd's falls like lr (measured: by
    4.5-5x for each 4x smaller lr); asserted: by more than 2x, for every key."""
    distances = []
    for gd, sgd in trend:
        assert np.all(np.asarray(sgd.status) == 0)
        squares = [
            np.sum((np.asarray(a)[None] - np.asarray(b)) ** 2, axis=tuple(range(1, np.ndim(b))))
            for a, b in zip(jax.tree.leaves(gd.final), jax.tree.leaves(sgd.final), strict=True)
        ]
        distances.append(np.sqrt(sum(squares)))
    for coarse, fine in zip(distances, distances[1:], strict=False):
        assert fine.max() < coarse.min() / 2, (coarse, fine)
    # the four keys shuffle differently: four end points
    assert np.min(np.abs(np.diff(distances[0]))) > 0


def test_rerun_gives_the_same_bits_and_the_cli_runs_the_example(tmp_path):
    overrides = ["init.count=2", "dynamics.steps=300", "dynamics.saves=6"]
    cfg = config.load(EXAMPLE, overrides)
    first = simulation.simulate(cfg)
    argv = ["run", str(EXAMPLE), *overrides, "--out", str(tmp_path), "--quiet", "--no-plots"]
    assert cli.main(argv) == 0
    again = xr.open_dataset(tmp_path / "results.nc")
    assert list(again.status.values) == ["ok", "ok"]
    assert again.time.attrs["long_name"] == "step" and again.time.values[-1] == 300
    np.testing.assert_allclose(again.flow_time.values[-1], 0.1 * 300)
    for name in ("loss", "nc1", "W", "H", "b"):
        np.testing.assert_array_equal(again[name].values, first[name].values, err_msg=name)
    assert np.all(np.diff(first.loss.values, axis=1) < 0)


def _sizes(name: str) -> dict:
    return {
        "ufm-regression": {"samples": 6, "targets": 2, "dim": 3},
        "wide-net": {"classes": 3, "per_class": 2, "width": 4, "depth": 2},
        "deep-ufm": {"classes": 3, "dim": 3, "per_class": 2, "depth": 2, "activation": "relu"},
        "extended-ufm": {"classes": 3, "dim": 3, "per_class": 2, "hidden": 4},
    }.get(name, {"classes": 3, "dim": 3, "per_class": 2})


@pytest.mark.parametrize("name", registry.MODEL_NAMES)
def test_weighted_loss_where_the_loss_is_a_mean_over_samples(name):
    """A model runs sgd exactly when it has weighted_loss; unit weights give the loss bit for
    bit, and the loss is the mean of its batch losses over a partition (regularizers whole)."""
    spec = registry.spec(name)
    cfg = config.from_dict(
        {"model": {"name": name, **_sizes(name)}, "run": {"precision": "float64"}}
    )
    model = spec.make(cfg.model, 0.5, jnp.float64)
    assert ("sgd" in spec.kinds) == (model.weighted_loss is not None), name
    if model.weighted_loss is None:
        return
    N = model.num_samples
    assert spec.num_samples(spec.values(cfg.model)) == N
    order = np.random.default_rng(0).permutation(N).reshape(3, N // 3)
    batches = np.zeros((3, N))
    for w, members in zip(batches, order, strict=True):
        w[members] = N / len(members)
    ones = jnp.ones(N, jnp.float64)

    @jax.jit
    def values(params, batches):
        each = jax.vmap(lambda w: model.weighted_loss(params, w))(batches)
        grad = jax.grad(model.weighted_loss)(params, batches[0])
        twice, none = (model.weighted_loss(params, c * ones) for c in (2.0, 0.0))
        return model.loss(params), model.weighted_loss(params, ones), each, twice, none, grad

    params = model.init(jax.random.PRNGKey(0))
    loss, unit, each, twice, none, grad = values(params, jnp.asarray(batches))
    assert unit == loss
    np.testing.assert_allclose(np.mean(each), loss, rtol=1e-13)
    # affine in the weights: the data term scales, the regularizers stay
    np.testing.assert_allclose(twice - loss, loss - none, rtol=1e-12)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))


def sgd_error(model: dict, **dynamics) -> str:
    with pytest.raises(ConfigError) as err:
        config.from_dict({"model": model, "dynamics": {"kind": "sgd", **dynamics}})
    message = str(err.value)
    assert "\n" not in message
    return message


def test_bad_batch_size_is_a_one_line_config_error():
    assert sgd_error(TINY, batch_size=0) == (
        "dynamics.batch_size: must be in 1..6 (the model's samples), got 0"
    )
    assert sgd_error(TINY, batch_size=7).endswith("must be in 1..6 (the model's samples), got 7")
    assert sgd_error(TINY) == 'dynamics.batch_size: required for kind = "sgd" (1..6)'
    regression = {"name": "ufm-regression", "samples": 9}
    assert "must be in 1..9" in sgd_error(regression, batch_size=10)
    assert (
        config.from_dict(
            {"model": regression, "dynamics": {"kind": "sgd", "batch_size": 9}}
        ).dynamics.batch_size
        == 9
    )
    with pytest.raises(
        ConfigError, match=r'^dynamics\.batch_size: applies to kind = "sgd", not "gd"$'
    ):
        config.from_dict({"dynamics": {"kind": "gd", "batch_size": 2}})
    with pytest.raises(ConfigError, match=r'^dynamics\.lr: applies to kind = "gd" or "sgd"'):
        config.from_dict({"dynamics": {"kind": "flow", "lr": 0.1}})


@pytest.mark.parametrize("name", ["ufm-supcon", "le-ode"])
def test_sgd_on_a_model_without_a_mean_loss_is_refused(name):
    message = sgd_error({"name": name}, batch_size=2)
    assert message.startswith(f"dynamics.kind: {name} needs kind = ")
    assert message.endswith("got 'sgd'")


def test_bad_batch_size_exits_2(tmp_path, capsys):
    argv = ["run", str(EXAMPLE), "dynamics.batch_size=31", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == "gflow: error: dynamics.batch_size: must be in 1..30 (the model's samples), got 31\n"
    )
