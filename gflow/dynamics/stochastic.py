"""Noisy gradient flow, an SDE with its own Brownian path per initialization:

    d theta = -grad L(theta) dt + sigma dW_t    (or drift(theta) dt + sigma dW_t),

additive noise of size ``noise`` = sigma on every parameter (the continuous-time picture of
SGD noise). The parameter pytree is flattened to one vector so that the diffusion is a diagonal
``lineax`` operator against a ``diffrax.VirtualBrownianTree``; each init gets its own key, so
under vmap every init has an independent path, and the same key reproduces the same path.
Fixed-step solvers (Euler-Maruyama, Heun) with step ``dt0``.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import lineax
import numpy as np
from jax.flatten_util import ravel_pytree

from gflow.dynamics.flow import integrate, state_dtype, velocity
from gflow.dynamics.trajectory import Trajectory

SDE_SOLVERS: dict[str, type[diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,  # Euler-Maruyama (Itô)
    "heun": diffrax.Heun,  # Stratonovich; equal to Itô for additive noise
}


def noisy_gradient_flow(
    loss: Callable,
    params0,
    save_ts: np.ndarray,
    observe: Callable,
    key: jax.Array,
    *,
    noise: float,
    dt0: float,
    solver: str = "euler",
    max_steps: int = 100_000,
    progress: bool = False,
    drift: Callable | None = None,
    observe_after: bool = False,
) -> Trajectory:
    """Solve the SDE d theta = -grad L dt + noise dW from ``params0`` with fixed steps ``dt0``.

    The drift is -grad ``loss`` unless ``drift`` is given; each init has its own Brownian path,
    drawn from ``key``.

    Args:
        loss: a scalar function of the parameter pytree.
        params0: the initial parameter pytree.
        save_ts: the T times to observe at, increasing, in [0, t1]; the last is t1.
        observe: ``observe(params) -> dict`` of scalars, evaluated at each of ``save_ts``.
        key: the key of the Brownian path.
        noise: sigma >= 0, the diffusion's scale.
        dt0: the fixed step.
        solver: "euler" (Euler-Maruyama) or "heun".
        max_steps: the most steps; reaching it marks the status ``max_steps``.
        progress: show diffrax's progress meter.
        drift: the model's own drift ``drift(params) -> params``, in place of -grad loss.
        observe_after: see :func:`gflow.dynamics.flow.integrate`.

    Returns:
        The trajectory: observations (T,), the final state, the status and the steps taken.
    """
    dtype = state_dtype(params0)
    flat0, unravel = ravel_pytree(params0)
    save_ts = jnp.asarray(save_ts, dtype)
    move = velocity(loss, drift)
    flat_move = lambda flat: ravel_pytree(move(unravel(flat)))[0]  # noqa: E731
    brownian = diffrax.VirtualBrownianTree(
        jnp.zeros((), dtype),
        save_ts[-1],
        tol=jnp.asarray(dt0, dtype) / 2,
        shape=jax.ShapeDtypeStruct(flat0.shape, dtype),
        key=key,
    )
    diagonal = jnp.full(flat0.shape, noise, dtype)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: flat_move(y)),
        diffrax.ControlTerm(lambda t, y, args: lineax.DiagonalLinearOperator(diagonal), brownian),
    )
    traj = integrate(
        terms,
        SDE_SOLVERS[solver](),
        flat0,
        save_ts,
        lambda y: observe(unravel(y)),
        controller=diffrax.ConstantStepSize(),
        dt0=jnp.asarray(dt0, dtype),
        max_steps=max_steps,
        progress=progress,
        nan_probe=flat_move,
        observe_after=observe_after,
    )
    return traj._replace(final=unravel(traj.final))
