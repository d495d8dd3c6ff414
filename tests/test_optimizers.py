"""Every offered optax optimizer steps a small UFM-CE from a learning rate alone: its loss falls,
its own decoupled weight decay is off (the model's loss carries the decay), and a stochastic
one draws its noise from the init's key (different inits, different noise; the same key, the
same bits)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gflow import batch, config, models
from gflow.config import ConfigError, DynamicsConfig
from gflow.dynamics import descent

LR = 0.05
STEPS = 10
# without weight decay in the model, any shrinking of the parameters beyond the loss's gradient
# would be the optimizer's own decoupled decay
MODEL = models.ufm_ce(3, 3, 2, wd_W=0.0, wd_H=0.0, wd_b=0.0, init_scale=0.5, dtype=jnp.float64)
NAMES = sorted(descent.OPTIMIZERS)


def observe(params):
    return {"loss": MODEL.loss(params)}


@pytest.fixture(scope="module")
def runs():
    """One program stepping every optimizer through gflow's gd solve (batch.solver_for), for
    two inits that start at the same point with different keys (gflow's per-init keys)."""
    start = MODEL.init(jax.random.PRNGKey(0))
    params0 = jax.tree.map(lambda x: jnp.stack([x, x]), start)
    keys = batch.noise_keys(0, 2)

    def every(params0, keys):
        out = {}
        for name in NAMES:
            dynamics = DynamicsConfig(kind="gd", optimizer=name, lr=LR, steps=STEPS, saves=2)
            solve = batch.solver_for(MODEL, dynamics, observe=observe)
            out[name] = jax.vmap(solve)(params0, keys)
        return out

    program = jax.jit(every)
    return start, keys, program, program(params0, keys), params0


def test_every_optimizer_is_built_from_a_learning_rate_alone():
    for name in NAMES:
        params = inspect.signature(descent.OPTIMIZERS[name]).parameters
        assert "learning_rate" in params, name
        required = [
            p for p in params.values()
            if p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
        ]  # fmt: skip
        assert [p.name for p in required] in ([], ["learning_rate"]), name
    assert "polyak_sgd" not in descent.OPTIMIZERS  # needs the loss value at every update
    assert {n for n in NAMES if descent.decoupled_decay(n)} >= {"adamw", "lion", "lamb"}
    assert [n for n in NAMES if descent.stochastic(n)] == ["noisy_sgd"]


def test_a_refused_optimizer_gets_a_one_line_error():
    with pytest.raises(ConfigError) as err:
        config.from_dict({"dynamics": {"kind": "gd", "optimizer": "polyak_sgd"}})
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("dynamics.optimizer: unknown value 'polyak_sgd'; valid: ")
    assert message.endswith(", ".join(NAMES))


def test_every_optimizer_lowers_the_loss(runs):
    *_, out, _ = runs
    for name in NAMES:
        loss = np.asarray(out[name].observed["loss"])
        assert loss.shape == (2, 2), name
        assert np.all(np.isfinite(loss)) and np.all(loss[:, 1] < loss[:, 0]), name
        assert list(out[name].status) == [0, 0], name
        if not descent.stochastic(name):  # the key is ignored: both inits take the same path
            final = jax.tree.leaves(out[name].final)
            assert all(np.array_equal(x[0], x[1]) for x in final), name


def test_decoupled_weight_decay_is_off(runs):
    """gflow's run equals optax's optimizer built with weight_decay = 0 explicitly, and differs
    from optax's own default decay where that is nonzero (so the check can fail)."""
    start, _, _, out, _ = runs
    decayed = [n for n in NAMES if descent.decoupled_decay(n)]
    nonzero = [
        n for n in decayed
        if inspect.signature(descent.OPTIMIZERS[n]).parameters["weight_decay"].default != 0
    ]  # fmt: skip

    grad = jax.jit(jax.grad(MODEL.loss))

    def reference(opt):  # eager optax steps on the same gradient
        params, state = start, opt.init(start)
        for _ in range(STEPS):
            updates, state = opt.update(grad(params), state, params)
            params = optax.apply_updates(params, updates)
        return params

    make = descent.OPTIMIZERS
    off = {n: reference(make[n](learning_rate=LR, weight_decay=0.0)) for n in decayed}
    own = {n: reference(make[n](learning_rate=LR)) for n in nonzero}
    for name in decayed:
        ours = jax.tree.map(lambda x: np.asarray(x[0]), out[name].final)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(off[name]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13, err_msg=name)
        if name in nonzero:
            gap = max(
                np.max(np.abs(a - b))
                for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(own[name]), strict=True)
            )
            assert gap > 1e-8, name
    assert {"adamw", "lion"} <= set(nonzero)


def test_stochastic_optimizer_is_seeded_per_init(runs):
    _, keys, program, out, params0 = runs
    for name in (n for n in NAMES if descent.stochastic(n)):
        final = jax.tree.leaves(out[name].final)
        # the same start, two keys: different noise
        assert all(np.max(np.abs(x[0] - x[1])) > 1e-6 for x in final), name
        # the same keys again: the same bits; the keys swapped: the inits' results swapped
        again = program(params0, keys)[name]
        swapped = program(params0, keys[::-1])[name]
        for x, y, z in zip(final, jax.tree.leaves(again.final), jax.tree.leaves(swapped.final),
                           strict=True):  # fmt: skip
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z[::-1])


def test_a_stochastic_optimizer_needs_a_key():
    with pytest.raises(ValueError, match="noisy_sgd.*needs a key"):
        descent.make_optimizer("noisy_sgd", LR)
