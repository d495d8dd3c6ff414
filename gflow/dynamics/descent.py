"""Gradient descent (or any optax optimizer) on any loss, stepped inside ``lax.scan``.

The scan runs over the segments between saved steps; each segment is a ``fori_loop`` of optimizer
steps, and ``observe`` is evaluated at the end of each. Progress is reported once per segment
through ``jax.debug.callback`` on the (unbatched) segment index, so under vmap it prints once.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gflow.dynamics.trajectory import DIVERGED, OK, Trajectory, mark_nan, nan_after_failure
from gflow.progress import METER

# Optax optimizers that are built from a learning rate alone (other arguments keep defaults).
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    name: getattr(optax, name)
    for name in (
        "sgd",
        "adam",
        "adamw",
        "adamax",
        "adagrad",
        "adabelief",
        "adadelta",
        "amsgrad",
        "lamb",
        "lion",
        "nadam",
        "novograd",
        "radam",
        "rmsprop",
        "yogi",
        "sm3",
        "fromage",
        "lars",
        "polyak_sgd",
        "noisy_sgd",
    )
    if hasattr(optax, name)
}


def gradient_descent(
    loss: Callable,
    params0,
    save_steps: np.ndarray,
    observe: Callable,
    *,
    optimizer: str = "sgd",
    lr: float = 0.5,
    progress: bool = False,
    unroll: int = 2,
) -> Trajectory:
    """Run ``save_steps[-1]`` optimizer steps from ``params0``.

    ``save_steps`` are increasing step counts starting at 0; ``observe(params)`` is evaluated at
    each. Status is "nan" if the final state or loss is non-finite, "diverged" if the final loss
    exceeds the initial one; a failed run's observations are NaN from the first save whose
    loss is not finite on (:func:`gflow.dynamics.trajectory.nan_after_failure`). ``unroll``
    steps are traced per loop iteration (2 measured 1.1-1.4x faster than 1 on CPU; the numbers
    do not change).
    """
    opt = OPTIMIZERS[optimizer](learning_rate=lr)
    lengths = jnp.asarray(np.diff(save_steps), jnp.int32)
    grad = jax.grad(loss)

    def step(_, carry):
        params, state = carry
        updates, state = opt.update(grad(params), state, params)
        return optax.apply_updates(params, updates), state

    def unrolled(_, carry):
        for _ in range(unroll):
            carry = step(0, carry)
        return carry

    def take_steps(carry, length):
        carry = jax.lax.fori_loop(0, length // unroll, unrolled, carry)
        return jax.lax.fori_loop(0, length % unroll, step, carry)

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

    first = observe(params0)
    (final, _), rest = jax.lax.scan(
        segment, (params0, opt.init(params0)), (jnp.arange(len(lengths)), lengths)
    )
    observed = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
    final_loss = observed["loss"][-1]
    status = jnp.where((final_loss > observed["loss"][0]) | jnp.isinf(final_loss), DIVERGED, OK)
    status = mark_nan(status, final, observed["loss"])
    steps = jnp.asarray(int(save_steps[-1]), jnp.int32)
    return nan_after_failure(Trajectory(observed, final, status, steps, steps))
