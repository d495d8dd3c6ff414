"""Noisy gradient flow, an SDE with its own Brownian path per initialization:

    d theta = -grad L(theta) dt + sigma dW_t    (or drift(theta) dt + sigma dW_t),

additive noise of size ``noise`` = sigma on every parameter (the continuous-time picture of
SGD noise). The parameter pytree is flattened to one vector so that the diffusion is a diagonal
``lineax`` operator against a ``diffrax.VirtualBrownianTree``; each init gets its own key, so
under vmap every init has an independent path, and the same key reproduces the same path.
Fixed-step solvers (Euler-Maruyama, Heun) with step ``dt0``. A long solve runs in segments of
time (:func:`noisy_segment`), each over the same Brownian path.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import lineax
import numpy as np
from jax.flatten_util import ravel_pytree

from gflow.dynamics.flow import integrate, integrate_segment, state_dtype, velocity
from gflow.dynamics.trajectory import OK, Trajectory

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
    save_ts = jnp.asarray(save_ts, dtype)
    terms, flat0, unravel, flat_move = _sde(loss, params0, key, save_ts[-1], noise, dt0, drift)
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


def _sde(loss, params0, key, t1, noise, dt0, drift):
    """(terms, flat state, unravel, flat vector field) of the SDE over [0, t1]: the Brownian
    path is a function of the key and of [0, t1] alone, so a segment sees the increments of
    the whole solve."""
    dtype = state_dtype(params0)
    flat0, unravel = ravel_pytree(params0)
    move = velocity(loss, drift)
    flat_move = lambda flat: ravel_pytree(move(unravel(flat)))[0]  # noqa: E731
    brownian = diffrax.VirtualBrownianTree(
        jnp.zeros((), dtype),
        t1,
        tol=jnp.asarray(dt0, dtype) / 2,
        shape=jax.ShapeDtypeStruct(flat0.shape, dtype),
        key=key,
    )
    diagonal = jnp.full(flat0.shape, noise, dtype)
    terms = diffrax.MultiTerm(
        diffrax.ODETerm(lambda t, y, args: flat_move(y)),
        diffrax.ControlTerm(lambda t, y, args: lineax.DiagonalLinearOperator(diagonal), brownian),
    )
    return terms, flat0, unravel, flat_move


def segment_carry(params0):
    """The carry of an SDE cut in segments at t = 0: (parameters, status, steps, end time)."""
    dtype = state_dtype(params0)
    return params0, jnp.asarray(OK, jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((), dtype)


def noisy_segment(
    loss: Callable,
    carry,
    key: jax.Array,
    start,
    ends,
    observe: Callable,
    *,
    t1,
    noise,
    dt0,
    step=None,
    solver: str = "euler",
    max_steps: int = 100_000,
    drift: Callable | None = None,
):
    """One segment of :func:`noisy_gradient_flow`, from ``start`` to ``ends[-1]``, over the
    Brownian path of the whole solve over [0, ``t1``] (:mod:`gflow.checkpoint`).

    Args:
        loss: the loss (see :func:`noisy_gradient_flow`).
        carry: ``(parameters, status, steps, end time)`` (:func:`segment_carry` at t = 0).
        key: the key of the Brownian path.
        start: the segment's start time, 0-d.
        ends: the segment's interval ends, (S,), increasing (the last repeated as padding).
        observe: ``observe(params) -> dict`` of scalars, at each of ``ends``.
        t1: the end of the whole solve.
        noise: sigma.
        dt0: the whole solve's step (the Brownian tree's resolution is dt0 / 2).
        step: the segment's fixed step, that puts its steps on the whole solve's grid
            (:class:`gflow.checkpoint.SegmentPlan`); None: dt0.
        solver: "euler" or "heun".
        max_steps: the most steps of one segment.
        drift: the model's own drift, in place of -grad loss.

    Returns:
        ``(carry at ends[-1], observations (S,))``: the status is the first that is not ok,
        the steps are summed.
    """
    params, status, steps, _ = carry
    dtype = state_dtype(params)
    terms, flat, unravel, flat_move = _sde(loss, params, key, t1, noise, dt0, drift)
    final, observed, now, taken, end = integrate_segment(
        terms, SDE_SOLVERS[solver](), flat, jnp.asarray(start, dtype), jnp.asarray(ends, dtype),
        lambda y: observe(unravel(y)), controller=diffrax.ConstantStepSize(),
        dt0=jnp.asarray(dt0 if step is None else step, dtype), max_steps=max_steps,
        nan_probe=flat_move,
    )  # fmt: skip
    status = jnp.where(status == OK, now, status)
    return (unravel(final), status, steps + taken, end), observed
