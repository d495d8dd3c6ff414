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
    """Weights (N,) of step ``step`` (a traced int): N/B on the samples of its batch, 0
    elsewhere (the module docstring gives the order); all 1 (a constant) when B = N."""
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

    ``weighted_loss(params, weights (N,))`` is the loss with per-sample weights;
    ``save_steps`` are increasing step counts from 0, ``observe(params)`` is evaluated at each.
    ``key`` (this init's raw key) seeds the shuffles and a stochastic optimizer's noise
    (independent streams, :func:`gflow.dynamics.descent.key_streams`). Statuses as gd
    (:func:`gflow.dynamics.descent.stepped_trajectory`).
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

    carry0 = (params0, opt.init(params0), jnp.asarray(0, jnp.int32))
    (final, _, _), observed = run_steps(
        step, carry0, save_steps, observe, progress=progress, unroll=unroll
    )
    return stepped_trajectory(observed, final, save_steps)
