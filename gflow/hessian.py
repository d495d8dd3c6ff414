"""Extreme eigenvalues of the Hessian of any loss at a parameter pytree: strict saddles.

Zhu et al. (2021) and Ji et al. (2022): with weight decay every critical point other than the
collapsed global minimizers is a strict saddle, i.e. the Hessian there has a negative
eigenvalue. Two estimators, both jit- and vmap-able:

- ``dense``: the full (P, P) Hessian and ``eigvalsh``; exact, for P <= DENSE_LIMIT parameters;
- ``lanczos``: Hessian-vector products (forward-over-reverse) and ``iters`` Lanczos steps with
  full re-orthogonalization; the extreme Ritz values converge first. Exact when iters >= P.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from gflow import linalg

DENSE_LIMIT = 4096
METHODS = ("dense", "lanczos")


def num_params(params) -> int:
    """P, the number of scalar parameters of a pytree.

    Args:
        params: a parameter pytree.

    Returns:
        The total size of its leaves.
    """
    return sum(x.size for x in jax.tree.leaves(params))


def _flat(loss: Callable, params):
    flat, unravel = ravel_pytree(params)
    return flat, lambda v: loss(unravel(v))


def dense_extreme_eigenvalues(loss: Callable, params) -> tuple[jax.Array, jax.Array]:
    """(smallest, largest) eigenvalue of the full (P, P) Hessian, by ``eigvalsh``: exact.

    Args:
        loss: a scalar function of the parameter pytree.
        params: the point, a pytree of P <= DENSE_LIMIT scalars.

    Returns:
        (smallest, largest), scalars.

    Raises:
        ValueError: P > DENSE_LIMIT.
    """
    flat, f = _flat(loss, params)
    if flat.size > DENSE_LIMIT:
        raise ValueError(
            f"hessian: dense needs <= {DENSE_LIMIT} parameters, this point has {flat.size}; "
            "use method='lanczos'"
        )
    eig = linalg.eigvalsh(jax.hessian(f)(flat))
    return eig[0], eig[-1]


def lanczos_extreme_eigenvalues(
    loss: Callable, params, iters: int = 60, key: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """(smallest, largest) Ritz value after ``iters`` Lanczos steps on v -> Hess(loss) v.

    Hessian-vector products forward-over-reverse, full re-orthogonalization; the extreme Ritz
    values converge first, and they are exact when iters >= P.

    Args:
        loss: a scalar function of the parameter pytree.
        params: the point, a pytree.
        iters: the Lanczos steps (at most P are taken).
        key: the random start vector's key (default ``PRNGKey(0)``).

    Returns:
        (smallest, largest), scalars.
    """
    flat, f = _flat(loss, params)
    m = min(iters, flat.size)
    grad = jax.grad(f)

    def hvp(v):
        return jax.jvp(grad, (flat,), (v,))[1]

    key = jax.random.PRNGKey(0) if key is None else key
    v0 = jax.random.normal(key, flat.shape, flat.dtype)
    v0 = v0 / jnp.linalg.norm(v0)
    basis = jnp.zeros((m, flat.size), flat.dtype).at[0].set(v0)

    def step(k, state):
        basis, alphas, betas = state
        w = hvp(basis[k])
        alpha = w @ basis[k]
        # full re-orthogonalization against every previous vector, twice for stability
        mask = (jnp.arange(m) <= k).astype(flat.dtype)[:, None]
        for _ in range(2):
            w = w - (basis * mask).T @ ((basis * mask) @ w)
        beta = jnp.linalg.norm(w)
        nxt = jnp.where(beta > 1e-12 * jnp.abs(alpha) + 1e-300, w / beta, 0.0)
        basis = jnp.where(k + 1 < m, basis.at[jnp.minimum(k + 1, m - 1)].set(nxt), basis)
        return basis, alphas.at[k].set(alpha), betas.at[k].set(beta)

    zeros = jnp.zeros((m,), flat.dtype)
    _, alphas, betas = jax.lax.fori_loop(0, m, step, (basis, zeros, zeros))
    T = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    ritz = linalg.eigvalsh(T)
    return ritz[0], ritz[-1]


def extreme_eigenvalues(loss: Callable, params, method: str = "dense", iters: int = 60):
    """(smallest, largest) Hessian eigenvalue of ``loss`` at ``params``.

    Args:
        loss: a scalar function of the parameter pytree.
        params: the point, a pytree.
        method: "dense" (exact, P <= DENSE_LIMIT) or "lanczos".
        iters: the Lanczos steps.

    Returns:
        (smallest, largest), scalars.

    Raises:
        ValueError: an unknown method, or "dense" beyond DENSE_LIMIT parameters.
    """
    if method == "dense":
        return dense_extreme_eigenvalues(loss, params)
    if method == "lanczos":
        return lanczos_extreme_eigenvalues(loss, params, iters)
    raise ValueError(f"hessian: unknown method {method!r}; valid: {', '.join(METHODS)}")
