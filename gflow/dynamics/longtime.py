"""Gradient flow to astronomically long times by reparametrizing the same path.

The ULPM's normalized margin approaches its limit only like 1/log t (Ji et al. 2022), so flow
time must reach 1e24 and beyond. Both options integrate the exact gradient-flow trajectory; only
the clock changes:

- ``reparam = "log"``: s = log(1 + t), d theta/ds = e^s (-grad L). Valid for any loss; the
  saved times are the same flow times t.
- ``reparam = "loss"``: u = -log L, for losses that tend to 0 (the unregularized ULPM). After a
  short plain flow to t = ``switch``, integrate

      d theta/du = -g/||g||^2,   d(log t)/du = e^{u - log t}/||g||^2,   g = grad log L,

  carrying log t as a state (so t = 1e100 is representable) and stopping exactly at
  log t = log t1 by a diffrax ``Event`` with root finding. Along the late flow the direction
  varies smoothly in u, so the adaptive solver takes few steps. Observations are recorded at
  every solver step and interpolated to the requested save times: as a power of t for positive
  quantities, linearly in log t for the others. The final state is exact at t1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from gflow.dynamics.flow import (
    SOLVERS,
    _progress_meter,
    gradient_flow,
    state_dtype,
    step_controller,
)
from gflow.dynamics.trajectory import (
    FAILED,
    MAX_STEPS,
    OK,
    Trajectory,
    mark_nan,
    nan_after_failure,
)

REPARAMS = ("none", "log", "loss")


def _tree_dot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def log_time_flow(loss: Callable, params0, save_ts: np.ndarray, observe: Callable, **options):
    """Gradient flow in s = log(1 + t): d theta/ds = e^s (-grad L), saving at the flow times.

    Args:
        loss: a scalar function of the parameter pytree.
        params0: the initial parameter pytree.
        save_ts: the flow times t to observe at.
        observe: ``observe(params) -> dict`` of scalars.
        **options: the options of :func:`gflow.dynamics.gradient_flow`.

    Returns:
        The trajectory, observed at ``save_ts``.
    """
    return gradient_flow(loss, params0, save_ts, observe, clock="log", **options)


def loss_time_flow(
    loss: Callable,
    params0,
    save_ts: np.ndarray,
    observe: Callable,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 20_000,
    switch: float = 1.0,
    progress: bool = False,
) -> Trajectory:
    """Plain flow to t = ``switch``, then the flow in u = -log L up to t = save_ts[-1].

    Needs L > 0 tending to 0 along the flow (the ULPM without weight decay): the loss clock
    reaches t = 1e100 in a few hundred steps.

    Args:
        loss: a scalar function of the parameter pytree, positive.
        params0: the initial parameter pytree.
        save_ts: the flow times t to observe at.
        observe: ``observe(params) -> dict`` of scalars.
        solver: a diffrax solver's name (both phases).
        rtol: relative tolerance of the step-size control.
        atol: absolute tolerance of the step-size control.
        max_steps: the most steps of each phase.
        switch: the flow time where the loss clock takes over.
        progress: show diffrax's progress meter.

    Returns:
        The trajectory; ``num_steps`` counts the steps of both phases.
    """
    dtype = state_dtype(params0)
    save_ts = np.asarray(save_ts, float)
    early = save_ts <= switch
    phase1_ts = np.unique(np.concatenate([save_ts[early], [switch]]))
    first = gradient_flow(
        loss, params0, phase1_ts, observe,
        solver=solver, rtol=rtol, atol=atol, max_steps=max_steps,
    )  # fmt: skip
    log_loss = lambda theta: jnp.log(loss(theta))  # noqa: E731
    grad_log = jax.grad(log_loss)

    def field(u, y, args):
        theta, log_t = y
        g = grad_log(theta)
        g_sq = _tree_dot(g, g)
        return jax.tree.map(lambda x: -x / g_sq, g), jnp.exp(u - log_t) / g_sq

    log_t0 = jnp.asarray(math.log(switch), dtype)
    log_t1 = jnp.asarray(math.log(save_ts[-1]), dtype)
    u0 = -log_loss(first.final)
    # log t grows like u - log(u): this bound on u is never reached before the event fires
    u_max = u0 + 2.0 * (log_t1 - log_t0) + 100.0
    event = diffrax.Event(
        lambda t, y, args, **kwargs: y[1] - log_t1, root_finder=optx.Newton(rtol=rtol, atol=atol)
    )
    saveat = diffrax.SaveAt(
        subs=[
            diffrax.SubSaveAt(steps=True, fn=lambda u, y, args: (y[1], observe(y[0]))),
            diffrax.SubSaveAt(t1=True),
        ]
    )
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        SOLVERS[solver](),
        t0=u0,
        t1=u_max,
        dt0=None,
        y0=(first.final, log_t0),
        saveat=saveat,
        stepsize_controller=step_controller(solver, rtol, atol),
        event=event,
        max_steps=max_steps,
        throw=False,
        progress_meter=_progress_meter(progress),
    )
    (step_log_t, step_obs), (final, final_log_t) = sol.ys
    final, final_log_t = jax.tree.map(lambda x: x[0], (final, final_log_t))

    # observations at the late save times: linear in log t between solver steps. Entries of
    # unreached steps hold log t = +inf (they sort last); their values are set to the final
    # observation so that interpolating onto the last step gives no inf - inf.
    start_obs = jax.tree.map(lambda v: v[-1], first.observed)
    end_obs = observe(final)
    reached_step = jnp.isfinite(step_log_t)
    xs = jnp.concatenate([log_t0[None], step_log_t])
    targets = jnp.asarray(np.log(save_ts[~early]), dtype)

    def late(start, along, end):
        values = jnp.concatenate([start[None], jnp.where(reached_step, along, end)])
        # power law in t between steps for positive quantities (loss, NC metrics), linear in
        # log t otherwise (margins change sign early on)
        positive = jnp.all(values > 0)
        logs = jnp.log(jnp.where(positive, values, 1.0))
        return jnp.where(
            positive, jnp.exp(jnp.interp(targets, xs, logs)), jnp.interp(targets, xs, values)
        )

    late_obs = jax.tree.map(late, start_obs, step_obs, end_obs)
    keep = np.isin(phase1_ts, save_ts[early])
    observed = jax.tree.map(lambda a, b: jnp.concatenate([a[keep], b]), first.observed, late_obs)

    reached = jnp.abs(final_log_t - log_t1) <= 1e-6 * jnp.maximum(1.0, jnp.abs(log_t1))
    status = jnp.where(
        sol.result == diffrax.RESULTS.max_steps_reached,
        MAX_STEPS,
        jnp.where(reached & (sol.result == diffrax.RESULTS.event_occurred), OK, FAILED),
    )
    status = jnp.where(first.status == OK, status, first.status)
    status = mark_nan(status, (final, grad_log(final)), observed["loss"])
    steps = first.num_steps + sol.stats["num_accepted_steps"]
    # a failed init's late saves past the log t it reached (interpolation would hold the last
    # value there) are NaN, as are all of them if the plain flow stopped short of ``switch``
    late_reached = (first.status == OK) & (targets <= final_log_t)
    reached = jnp.concatenate([jnp.ones(int(keep.sum()), bool), late_reached])
    traj = Trajectory(observed, final, status, steps, jnp.exp(final_log_t))
    return nan_after_failure(traj, reached)
