"""Mini-batch SGD (any optax optimizer) on a per-sample-weighted loss, stepped like gd.

Each init shuffles its own N samples every epoch: epoch e is the permutation
``jax.random.permutation(fold_in(shuffle_key, e), N)`` of the init's key, cut into
nb = floor(N / B) batches of B consecutive indices; step t takes batch t mod nb of epoch
t div nb, and the last N mod B samples of each epoch's order are dropped (every step sees B
samples). A step's gradient is that of ``weighted_loss(params, w)`` with w = N/B on the batch
and 0 elsewhere: mean-one weights, so the data term is the batch's mean (an unbiased estimate of
the full one) and the regularizers stay whole. With B = N every step is a gd step (w = 1, the
same program as gd, bit for bit). The saved observations use the full loss (``observe``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gflow.dynamics.descent import key_streams, make_optimizer, run_steps, stepped_trajectory
from gflow.dynamics.trajectory import Trajectory


def batch_weights(shuffle_key, step, *, batch_size: int, num_samples: int, dtype):
    """The per-sample weights of one mini-batch step (the module docstring gives the order).

    Args:
        shuffle_key: the init's shuffle key (:func:`gflow.dynamics.descent.key_streams`).
        step: the step index t, a traced int.
        batch_size: B.
        num_samples: N.
        dtype: the weights' dtype.

    Returns:
        The weights, (N,): N/B on the samples of step t's batch, 0 elsewhere; all 1 (a
        constant) when B = N.
    """
    if batch_size == num_samples:
        return jnp.ones((num_samples,), dtype)
    per_epoch = num_samples // batch_size
    epoch, index = step // per_epoch, step % per_epoch
    order = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), num_samples)
    members = jax.lax.dynamic_slice(order, (index * batch_size,), (batch_size,))
    scale = jnp.asarray(num_samples / batch_size, dtype)
    return jnp.zeros((num_samples,), dtype).at[members].set(scale)


def stochastic_gradient_descent(
    weighted_loss: Callable,
    params0,
    save_steps: np.ndarray,
    observe: Callable,
    key: jax.Array,
    *,
    optimizer: str = "sgd",
    lr: float = 0.5,
    batch_size: int,
    num_samples: int,
    progress: bool = False,
    unroll: int = 2,
) -> Trajectory:
    """Run ``save_steps[-1]`` mini-batch steps of ``batch_size`` samples from ``params0``.

    Args:
        weighted_loss: ``weighted_loss(params, weights)``, the loss with per-sample weights
            (N,); all ones give the full loss.
        params0: the initial parameter pytree.
        save_steps: the T step counts to observe at, increasing, from 0.
        observe: ``observe(params) -> dict`` of scalars (of the full loss), at each save.
        key: this init's raw key; seeds the shuffles and a stochastic optimizer's noise
            (independent streams, :func:`gflow.dynamics.descent.key_streams`).
        optimizer: a name of :data:`gflow.dynamics.descent.OPTIMIZERS`.
        lr: the learning rate (a float or a traced 0-d array).
        batch_size: B, the samples of each step, in 1..N.
        num_samples: N.
        progress: add the steps taken to :data:`gflow.progress.METER`.
        unroll: steps traced per loop iteration
            (see :func:`gflow.dynamics.descent.run_steps`).

    Returns:
        The trajectory: observations (T,), the final parameters, the status as gd's
        (:func:`gflow.dynamics.descent.stepped_trajectory`) and the number of steps.

    Raises:
        ValueError: ``batch_size`` is not in 1..N.
    """
    step, carry0 = minibatch_stepper(
        weighted_loss, params0, key, optimizer=optimizer, lr=lr, batch_size=batch_size,
        num_samples=num_samples,
    )  # fmt: skip
    (final, _, _), observed = run_steps(
        step, carry0, save_steps, observe, progress=progress, unroll=unroll
    )
    return stepped_trajectory(observed, final, save_steps)


def minibatch_stepper(
    weighted_loss: Callable,
    params0,
    key: jax.Array,
    *,
    optimizer: str = "sgd",
    lr=0.5,
    batch_size: int,
    num_samples: int,
):
    """One mini-batch step and its initial carry (:func:`stochastic_gradient_descent`'s loop,
    for :func:`gflow.dynamics.descent.advance_steps`).

    Args:
        weighted_loss: ``weighted_loss(params, weights)``.
        params0: the initial parameter pytree.
        key: this init's raw key.
        optimizer: a name of :data:`gflow.dynamics.descent.OPTIMIZERS`.
        lr: the learning rate.
        batch_size: B, in 1..N.
        num_samples: N.

    Returns:
        ``(step, carry0)``: ``step(carry) -> carry`` on ``carry = (params, optimizer state,
        step index t)``; the batch of step t follows from the key and t alone, so a run cut
        in segments takes the same batches.

    Raises:
        ValueError: ``batch_size`` is not in 1..N.
    """
    if not 1 <= batch_size <= num_samples:
        raise ValueError(f"batch_size: must be in 1..{num_samples}, got {batch_size}")
    optimizer_key, shuffle_key = key_streams(key)
    opt = make_optimizer(optimizer, lr, optimizer_key)
    grad = jax.grad(weighted_loss)
    dtype = jax.tree.leaves(params0)[0].dtype

    def step(carry):
        params, state, t = carry
        weights = batch_weights(
            shuffle_key, t, batch_size=batch_size, num_samples=num_samples, dtype=dtype
        )
        updates, state = opt.update(grad(params, weights), state, params)
        return optax.apply_updates(params, updates), state, t + 1

    return step, (params0, opt.init(params0), jnp.asarray(0, jnp.int32))
