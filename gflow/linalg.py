"""LAPACK-backed linear algebra that is safe to batch over inits on several CPU devices.

Under ``vmap``, ``jnp.linalg.svd``/``eigvalsh`` become one batched LAPACK call that jaxlib spreads
over the CPU thread pool and then waits on. With the init axis sharded over several host devices
those waits can take every pool thread and the run deadlocks (seen with JAX 0.10.2 and 2 forced
host devices: NC1's pseudo-inverse at K=10 never returned). ``sequential_vmap`` turns the batch
into a loop of single calls, which run inline; the matrices here are K x d, so nothing is lost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


@jax.custom_batching.sequential_vmap
def pinv(a: Float[Array, "m n"]) -> Float[Array, "n m"]:
    """Moore-Penrose pseudo-inverse (``jnp.linalg.pinv``), one matrix per LAPACK call."""
    return jnp.linalg.pinv(a)


@jax.custom_batching.sequential_vmap
def singular_values(a: Float[Array, "m n"]) -> Float[Array, " k"]:
    """Singular values in descending order, one matrix per LAPACK call."""
    return jnp.linalg.svd(a, compute_uv=False)


@jax.custom_batching.sequential_vmap
def eigvalsh(a: Float[Array, "n n"]) -> Float[Array, " n"]:
    """Eigenvalues of a symmetric matrix in ascending order, one matrix per LAPACK call."""
    return jnp.linalg.eigvalsh(a)
