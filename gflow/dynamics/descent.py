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
    """Whether optax's ``name`` has a decoupled weight decay of its own (built at 0 here).

    Args:
        name: a name of :data:`OPTIMIZERS`.

    Returns:
        True when its factory takes ``weight_decay``.
    """
    return "weight_decay" in _parameters(name)


def stochastic(name: str) -> bool:
    """Whether optax's ``name`` draws random numbers (it takes a key: seeded per init here).

    Args:
        name: a name of :data:`OPTIMIZERS`.

    Returns:
        True when its factory takes ``key``.
    """
    return "key" in _parameters(name)


def make_optimizer(name: str, lr, key: jax.Array | None = None) -> optax.GradientTransformation:
    """Optax's optimizer ``name``, its decoupled weight decay 0 (the model's loss carries the
    decay).

    Args:
        name: a name of :data:`OPTIMIZERS`.
        lr: the learning rate, a float or a traced 0-d array.
        key: the noise key of a stochastic optimizer (:func:`stochastic`), one per init, raw
            uint32 or typed; required then, ignored otherwise.

    Returns:
        The optax ``GradientTransformation``.

    Raises:
        ValueError: a stochastic optimizer without ``key``.
    """
    kwargs: dict = {"weight_decay": 0.0} if decoupled_decay(name) else {}
    if stochastic(name):
        if key is None:
            raise ValueError(f"optimizer {name!r} draws noise: it needs a key (one per init)")
        typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        kwargs["key"] = key if typed else jax.random.wrap_key_data(key)
    return OPTIMIZERS[name](learning_rate=lr, **kwargs)


def key_streams(key: jax.Array | None) -> tuple[jax.Array | None, jax.Array | None]:
    """Independent streams of an init's key for a stochastic optimizer's noise and for
    mini-batch SGD's permutations (gd uses the first, so at a full batch SGD draws the same
    noise as gd).

    Args:
        key: the init's key, or None.

    Returns:
        ``(optimizer key, shuffle key)``, split from ``key``; ``(None, None)`` without one.
    """
    if key is None:
        return None, None
    optimizer_key, shuffle_key = jax.random.split(key)
    return optimizer_key, shuffle_key


def advance_steps(
    step: Callable,
    carry,
    lengths,
    observe: Callable,
    *,
    total: int,
    progress: bool = False,
    unroll: int = 2,
):
    """Take ``lengths[k]`` steps, then observe, for each k in turn: the loop of
    :func:`run_steps`, and one segment of a run cut in segments (``lengths`` then traced data,
    zero-length intervals padding the last segment; the same steps, bit for bit).

    Args:
        step: ``step(carry) -> carry``, one optimizer step.
        carry: the carry, a tuple whose first item is the parameters.
        lengths: the steps of each interval, (S,) int32 (a constant or traced).
        observe: ``observe(params) -> dict`` of scalars.
        total: the steps of the whole run: progress is reported in blocks of about 5% of it.
        progress: add the steps taken to :data:`gflow.progress.METER`.
        unroll: steps traced per loop iteration (2 measured 1.1-1.4x faster than 1 on CPU; the
            numbers do not change).

    Returns:
        ``(carry after the last interval, observations)``, each observation (S,).
    """

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
    block = max(unroll, int(total) // 20 // unroll * unroll)

    def per_init(units, carry):
        """``units`` made to depend on this init's state, so that under vmap the callback
        runs once per init (an unbatched argument would run it once per batch)."""
        probe = jax.tree.leaves(carry[0])[0].ravel()[0]
        return units + 0 * jnp.isnan(probe).astype(jnp.int32)

    def one_block(_, carry):
        carry = jax.lax.fori_loop(0, block // unroll, unrolled, carry)
        jax.debug.callback(METER.add, per_init(jnp.int32(block), carry))
        return carry

    def interval(carry, length):
        if progress:
            carry = jax.lax.fori_loop(0, length // block, one_block, carry)
            carry = take_steps(carry, length % block)
            jax.debug.callback(METER.add, per_init(length % block, carry))
        else:
            carry = take_steps(carry, length)
        return carry, observe(carry[0])

    return jax.lax.scan(interval, carry, jnp.asarray(lengths, jnp.int32))


def run_steps(
    step: Callable,
    carry0,
    save_steps: np.ndarray,
    observe: Callable,
    *,
    progress: bool = False,
    unroll: int = 2,
):
    """Apply ``step`` ``save_steps[-1]`` times and observe the parameters at every save.

    Args:
        step: ``step(carry) -> carry``, one optimizer step.
        carry0: the initial carry, a tuple whose first item is the parameters.
        save_steps: the T step counts to observe at, increasing, from 0.
        observe: ``observe(params) -> dict`` of scalars.
        progress: add the steps taken to :data:`gflow.progress.METER`, in blocks of about 5%
            (the same steps are taken).
        unroll: steps traced per loop iteration (see :func:`advance_steps`).

    Returns:
        ``(final carry, observations)``, each observation (T,).
    """
    lengths = np.diff(save_steps)
    first = observe(carry0[0])
    final, rest = advance_steps(
        step, carry0, lengths, observe, total=int(save_steps[-1]), progress=progress,
        unroll=unroll,
    )  # fmt: skip
    observed = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    return final, observed


def stepped_trajectory(observed: dict, final, save_steps: np.ndarray) -> Trajectory:
    """The Trajectory of a stepped run (gd, sgd).

    Args:
        observed: the observations by name, each (T,); ``observed["loss"]`` is required.
        final: the parameter pytree after the last step.
        save_steps: the T step counts of the saves.

    Returns:
        The Trajectory: status "nan" if the final state or a saved loss is non-finite,
        "diverged" if the final loss exceeds the initial one (or is infinite), else "ok"; a
        failed run's observations are NaN from the first save whose loss is not finite on
        (:func:`gflow.dynamics.trajectory.nan_after_failure`); ``num_steps`` and ``end_time``
        are ``save_steps[-1]``.
    """
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

    Args:
        loss: a scalar function of the parameter pytree.
        params0: the initial parameter pytree.
        save_steps: the T step counts to observe at, increasing, from 0.
        observe: ``observe(params) -> dict`` of scalars, evaluated at each of ``save_steps``.
        key: this init's raw key; seeds a stochastic optimizer (:func:`make_optimizer`, its
            first stream of :func:`key_streams`); the others ignore it.
        optimizer: a name of :data:`OPTIMIZERS`.
        lr: the learning rate (a float or a traced 0-d array).
        progress: add the steps taken to :data:`gflow.progress.METER`.
        unroll: steps traced per loop iteration (see :func:`run_steps`).

    Returns:
        The trajectory: observations (T,), the final parameters, the status
        (:func:`stepped_trajectory`) and the number of steps.
    """
    step, carry0 = descent_stepper(loss, params0, key, optimizer=optimizer, lr=lr)
    (final, _), observed = run_steps(
        step, carry0, save_steps, observe, progress=progress, unroll=unroll
    )
    return stepped_trajectory(observed, final, save_steps)


def descent_stepper(loss: Callable, params0, key=None, *, optimizer: str = "sgd", lr=0.5):
    """One gd step and its initial carry (:func:`gradient_descent`'s loop, for
    :func:`advance_steps`).

    Args:
        loss: a scalar function of the parameter pytree.
        params0: the initial parameter pytree.
        key: this init's raw key (a stochastic optimizer's noise), or None.
        optimizer: a name of :data:`OPTIMIZERS`.
        lr: the learning rate.

    Returns:
        ``(step, carry0)``: ``step(carry) -> carry`` on ``carry = (params, optimizer state)``.
    """
    opt = make_optimizer(optimizer, lr, key_streams(key)[0])
    grad = jax.grad(loss)

    def step(carry):
        params, state = carry
        updates, state = opt.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    return step, (params0, opt.init(params0))
