"""LAPACK-backed linear algebra that is safe to batch over inits on several CPU devices.

Under ``vmap``, ``jnp.linalg.svd``/``eigvalsh`` become one batched LAPACK call that jaxlib spreads
over the CPU thread pool and then waits on. With the init axis sharded over several host devices
those waits can take every pool thread and the run deadlocks (seen with JAX 0.10.2 and 2 forced
host devices: NC1's pseudo-inverse at K=10 never returned). ``sequential_vmap`` turns the batch
into a loop of single calls, which run inline; the matrices here are K x d, so nothing is lost.
On an accelerator the batched call is one library kernel (cuSOLVER) and a loop would be slow, so
there the plain batched function is used.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float


def _one_per_call_on_cpu(fn):
    """``fn`` that, batched on the CPU backend, calls LAPACK once per matrix; elsewhere ``fn``."""
    sequential = jax.custom_batching.sequential_vmap(fn)

    @functools.wraps(fn)
    def wrapped(a):
        return sequential(a) if jax.default_backend() == "cpu" else fn(a)

    return wrapped


@_one_per_call_on_cpu
def pinv(a: Float[Array, "m n"]) -> Float[Array, "n m"]:
    """Moore-Penrose pseudo-inverse (``jnp.linalg.pinv``)."""
    return jnp.linalg.pinv(a)


@_one_per_call_on_cpu
def singular_values(a: Float[Array, "m n"]) -> Float[Array, " k"]:
    """Singular values in descending order."""
    return jnp.linalg.svd(a, compute_uv=False)


@_one_per_call_on_cpu
def eigvalsh(a: Float[Array, "n n"]) -> Float[Array, " n"]:
    """Eigenvalues of a symmetric matrix in ascending order."""
    return jnp.linalg.eigvalsh(a)
