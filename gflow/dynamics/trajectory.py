"""What every dynamics returns for one initialization (a pytree, so vmap batches it)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

# Status codes of a run, in the order of ``STATUS``; results.nc stores the names.
STATUS = ("ok", "max_steps", "nan", "diverged", "failed")
OK, MAX_STEPS, NAN, DIVERGED, FAILED = range(len(STATUS))


class Trajectory(NamedTuple):
    """Observations at the saved times, the final parameters, and how the run ended."""

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

    (Saved points a failed solve never reached hold +inf, not NaN: they keep their own status.)
    """
    healthy = all_finite(final) & ~jnp.any(jnp.isnan(loss_along))
    return jnp.where(healthy, status, NAN)
