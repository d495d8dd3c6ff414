"""Gradient descent (or any optax optimizer) on any loss, stepped inside ``lax.scan``.

The scan runs over the segments between saved steps; each segment is a ``fori_loop`` of optimizer
steps, and ``observe`` is evaluated at the end of each. Progress is reported once per segment
through ``jax.debug.callback`` on the (unbatched) segment index, so under vmap it prints once.
:func:`run_steps` and :func:`stepped_trajectory` are the loop and the statuses that mini-batch
SGD (:mod:`gflow.dynamics.minibatch`) shares.

Optimizers (:data:`OPTIMIZERS`) are optax's that are built from a learning rate alone. Those with
a decoupled weight decay of their own (adamw, lamb, lion, lars, novograd, adadelta) are built
with ``weight_decay = 0``: the model's loss carries the decay (its lambda/2 ||.||^2 terms), so a
run minimizes the loss it reports and the closed forms apply. Stochastic ones (noisy_sgd) draw
their noise from the init's key. polyak_sgd is not offered: it needs the loss value at every
update, not a learning rate.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gflow.dynamics.trajectory import DIVERGED, OK, Trajectory, mark_nan, nan_after_failure
from gflow.progress import METER

OPTIMIZER_NAMES = (
    "sgd", "adam", "adamw", "adamax", "adagrad", "adabelief", "adadelta", "amsgrad", "lamb",
    "lion", "nadam", "novograd", "radam", "rmsprop", "yogi", "sm3", "fromage", "lars",
    "noisy_sgd",
)  # fmt: skip
# name -> optax's factory, for those this optax has (learning_rate its only required argument)
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    name: getattr(optax, name) for name in OPTIMIZER_NAMES if hasattr(optax, name)
}


def _parameters(name: str) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(OPTIMIZERS[name]).parameters)


def decoupled_decay(name: str) -> bool:
    """Whether optax's ``name`` has a decoupled weight decay of its own (built at 0 here)."""
    return "weight_decay" in _parameters(name)


def stochastic(name: str) -> bool:
    """Whether optax's ``name`` draws random numbers (it takes a key: seeded per init here)."""
    return "key" in _parameters(name)


def make_optimizer(name: str, lr, key: jax.Array | None = None) -> optax.GradientTransformation:
    """Optax's ``name`` at learning rate ``lr`` (a float or a traced 0-d array), its decoupled
    weight decay 0 (the model's loss carries the decay) and, if it is stochastic, its noise
    drawn from ``key`` (one per init, raw uint32 or typed; required then)."""
    kwargs: dict = {"weight_decay": 0.0} if decoupled_decay(name) else {}
    if stochastic(name):
        if key is None:
            raise ValueError(f"optimizer {name!r} draws noise: it needs a key (one per init)")
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        kwargs["key"] = key if typed else jax.random.wrap_key_data(key)
    return OPTIMIZERS[name](learning_rate=lr, **kwargs)


def key_streams(key: jax.Array | None) -> tuple[jax.Array | None, jax.Array | None]:
    """(optimizer key, shuffle key) of an init's key: independent streams for a stochastic
    optimizer's noise and for mini-batch SGD's permutations (gd uses the first, so at a full
    batch SGD draws the same noise as gd)."""
    if key is None:
        return None, None
    optimizer_key, shuffle_key = jax.random.split(key)
    return optimizer_key, shuffle_key


def run_steps(
    step: Callable,
    carry0,
    save_steps: np.ndarray,
    observe: Callable,
    *,
    progress: bool = False,
    unroll: int = 2,
):
    """Apply ``step(carry) -> carry`` ``save_steps[-1]`` times from ``carry0`` (a tuple whose
    first item is the parameters) and observe the parameters at every step count of
    ``save_steps`` (increasing, from 0). Returns (final carry, observations with a leading
    save axis). ``unroll`` steps are traced per loop iteration (2 measured 1.1-1.4x faster than
    1 on CPU; the numbers do not change)."""
    lengths = jnp.asarray(np.diff(save_steps), jnp.int32)

    def one(_, carry):
        return step(carry)

    def unrolled(_, carry):
        for _ in range(unroll):
            carry = step(carry)
        return carry

    def take_steps(carry, length):
        carry = jax.lax.fori_loop(0, length // unroll, unrolled, carry)
        return jax.lax.fori_loop(0, length % unroll, one, carry)

    # progress: blocks of about 5% of the steps, each reported when done (gflow.progress), so
    # that the long last segment of a log-spaced grid is followed too; the same steps are taken
    block = max(unroll, int(save_steps[-1]) // 20 // unroll * unroll)

    def per_init(units, carry):
        """``units`` made to depend on this init's state, so that under vmap the callback
        runs once per init (an unbatched argument would run it once per batch)."""
        probe = jax.tree.leaves(carry[0])[0].ravel()[0]
        return units + 0 * jnp.isnan(probe).astype(jnp.int32)

    def one_block(_, carry):
        carry = jax.lax.fori_loop(0, block // unroll, unrolled, carry)
        jax.debug.callback(METER.add, per_init(jnp.int32(block), carry))
        return carry

    def segment(carry, xs):
        _, length = xs
        if progress:
            carry = jax.lax.fori_loop(0, length // block, one_block, carry)
            carry = take_steps(carry, length % block)
            jax.debug.callback(METER.add, per_init(length % block, carry))
        else:
            carry = take_steps(carry, length)
        return carry, observe(carry[0])

    first = observe(carry0[0])
    final, rest = jax.lax.scan(segment, carry0, (jnp.arange(len(lengths)), lengths))
    observed = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return final, observed


def stepped_trajectory(observed: dict, final, save_steps: np.ndarray) -> Trajectory:
    """The Trajectory of a stepped run: status "nan" if the final state or a saved loss is
    non-finite, "diverged" if the final loss exceeds the initial one (or is infinite); a failed
    run's observations are NaN from the first save whose loss is not finite on
    (:func:`gflow.dynamics.trajectory.nan_after_failure`)."""
    final_loss = observed["loss"][-1]
    status = jnp.where((final_loss > observed["loss"][0]) | jnp.isinf(final_loss), DIVERGED, OK)
    status = mark_nan(status, final, observed["loss"])
    steps = jnp.asarray(int(save_steps[-1]), jnp.int32)
    return nan_after_failure(Trajectory(observed, final, status, steps, steps))


def gradient_descent(
    loss: Callable,
    params0,
    save_steps: np.ndarray,
    observe: Callable,
    key: jax.Array | None = None,
    *,
    optimizer: str = "sgd",
    lr: float = 0.5,
    progress: bool = False,
    unroll: int = 2,
) -> Trajectory:
    """Run ``save_steps[-1]`` optimizer steps from ``params0``.

    ``save_steps`` are increasing step counts starting at 0; ``observe(params)`` is evaluated at
    each. ``key`` (this init's raw key) seeds a stochastic optimizer (:func:`make_optimizer`,
    its first stream of :func:`key_streams`); the others ignore it. Statuses:
    :func:`stepped_trajectory`.
    """
    opt = make_optimizer(optimizer, lr, key_streams(key)[0])
    grad = jax.grad(loss)

    def step(carry):
        params, state = carry
        updates, state = opt.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    (final, _), observed = run_steps(
        step, (params0, opt.init(params0)), save_steps, observe, progress=progress, unroll=unroll
    )
    return stepped_trajectory(observed, final, save_steps)
