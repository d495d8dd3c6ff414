"""What every dynamics returns for one initialization (a pytree, so vmap batches it)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

# Status codes of a run, in the order of ``STATUS``; results.nc stores the names.
STATUS = ("ok", "max_steps", "nan", "diverged", "failed")
"""How a run ended, by index: ``Trajectory.status`` and the saved ``status`` (as names)."""
OK, MAX_STEPS, NAN, DIVERGED, FAILED = range(len(STATUS))


class Trajectory(NamedTuple):
    """What a dynamics returns for one initialization: observations, final state, how it ended.

    A pytree (a NamedTuple), so ``vmap`` batches it: every field gains a leading init axis.

    Attributes:
        observed: the observations by name (e.g. loss and metrics), each (T,) at the saved times.
        final: the parameter pytree at the end.
        status: an index into :data:`STATUS`.
        num_steps: the solver steps (flow, sde) or optimizer steps (gd) taken.
        end_time: the flow time (or step) of ``final``: t1 unless the run stopped; None where a
            dynamics does not record it.
    """

    observed: dict[str, Float[Array, " T"]]  # e.g. loss and metrics at each saved time
    final: Any  # parameter pytree at the end
    status: Int[Array, ""]  # index into STATUS
    num_steps: Int[Array, ""]  # solver steps (flow) or optimizer steps (gd) taken
    end_time: Float[Array, ""] | None = None  # flow time (or step) of ``final``: t1 unless stopped


def all_finite(tree) -> jax.Array:
    """True when every leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves))


def mark_nan(status, final, loss_along) -> jax.Array:
    """Status NAN if the final state is non-finite or the loss was NaN at any saved point.

    (Saved points a failed solve never reached hold +inf, not NaN: they keep their own status;
    :func:`nan_after_failure` then turns them to NaN.)
    """
    healthy = all_finite(final) & ~jnp.any(jnp.isnan(loss_along))
    return jnp.where(healthy, status, NAN)


def nan_after_failure(traj: Trajectory, reached=None) -> Trajectory:
    """``traj`` with a failed init's observations NaN from its first save whose loss is not
    finite (or that ``reached``, a bool per save, says the solve never got to) on: every
    observation of those saves, also those that come out finite from a non-finite state (NC4).

    Diffrax fills the saves a failed solve never reached with +inf; gradient descent and SDEs
    turn NaN or inf where they diverge. An ok init's observations are returned bit for bit.
    """
    loss = traj.observed["loss"]
    bad = ~jnp.isfinite(loss) if reached is None else ~jnp.isfinite(loss) | ~reached
    failed = (traj.status != OK)[..., None] & (jnp.cumsum(bad, axis=-1) > 0)

    def mask(values):
        if not jnp.issubdtype(values.dtype, jnp.inexact):
            return values
        where = failed.reshape(failed.shape + (1,) * (values.ndim - failed.ndim))
        return jnp.where(where, jnp.asarray(jnp.nan, values.dtype), values)

    return traj._replace(observed=jax.tree.map(mask, traj.observed))
