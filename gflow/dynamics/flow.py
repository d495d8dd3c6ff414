"""Gradient flow d theta/dt = -grad L(theta) as a diffrax ODE, for any loss and any solver (or the
flow of a model's own ``drift`` where it is not a gradient system).

Adaptive solvers run under a ``PIDController`` (rtol, atol); fixed-step ones take ``dt0``. Loss and
metrics are reduced at the saved times, either inside the solver loop through
``SubSaveAt(fn=...)`` (no trajectory of full states is stored) or, where the saved states fit in
memory, on the saved states after the solve (a smaller loop to compile); the final state is
saved once. ``throw=False``: a failed solve (max steps,
non-finite values) is reported in ``Trajectory.status`` instead of raising, so under vmap one bad
initialization never spoils the others; its observations are NaN from the first save it did not
reach (diffrax leaves +inf there) or whose loss is not finite.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx

from gflow.dynamics.trajectory import (
    FAILED,
    MAX_STEPS,
    OK,
    Trajectory,
    mark_nan,
    nan_after_failure,
)

SOLVERS: dict[str, type[diffrax.AbstractSolver]] = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "implicit_euler": diffrax.ImplicitEuler,
    "kvaerno3": diffrax.Kvaerno3,
    "kvaerno4": diffrax.Kvaerno4,
    "kvaerno5": diffrax.Kvaerno5,
}
IMPLICIT_SOLVERS = frozenset(
    name for name, cls in SOLVERS.items() if issubclass(cls, diffrax.AbstractImplicitSolver)
)
FIXED_STEP_SOLVERS = frozenset(
    name for name, cls in SOLVERS.items() if not issubclass(cls, diffrax.AbstractAdaptiveSolver)
)


def _progress_meter(enabled: bool) -> diffrax.AbstractProgressMeter:
    """diffrax's tqdm bar on a terminal (if tqdm is installed), its text meter otherwise."""
    if not enabled:
        return diffrax.NoProgressMeter()
    if sys.stderr.isatty():
        try:
            import tqdm  # noqa: F401  (diffrax's tqdm meter needs it)

            return diffrax.TqdmProgressMeter(refresh_steps=20)
        except ImportError:
            pass
    return diffrax.TextProgressMeter(minimum_increase=0.1)


def integrate(
    terms: diffrax.AbstractTerm,
    solver: diffrax.AbstractSolver,
    y0,
    save_ts,
    observe: Callable,
    *,
    controller: diffrax.AbstractStepSizeController,
    dt0,
    max_steps: int,
    progress: bool,
    nan_probe: Callable,
    stop_when: Callable | None = None,
    flow_time: Callable = lambda s: s,
    observe_after: bool = False,
) -> Trajectory:
    """One diffrax solve over [0, save_ts[-1]] with ``observe`` reduced at ``save_ts``.

    ``nan_probe(y)`` is a pytree (e.g. the vector field at y) checked for non-finite values at
    the final state: a NaN vector field makes every step fail, so nothing may have been saved.
    ``stop_when(y) -> scalar`` ends the solve (a diffrax ``Event``, its crossing located by a
    Newton root find) where it changes sign; saves after the stop then hold the final
    observation, and ``end_time`` the stop time.
    ``flow_time`` maps the integration variable to flow time (for reparametrized clocks).
    ``observe_after``: save the states and observe them after the solve (same values; the
    solver loop then compiles without the metrics: ~1 s less tracing on the reference problem),
    at the cost of holding T states; otherwise ``observe`` runs inside the loop at each save.
    """
    at_saves = (lambda t, y, args: y) if observe_after else (lambda t, y, args: observe(y))
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=save_ts, fn=at_saves), diffrax.SubSaveAt(t1=True)]
    )
    sol = diffrax.diffeqsolve(
        terms,
        solver,
        t0=jnp.zeros((), save_ts.dtype),
        t1=save_ts[-1],
        dt0=dt0,
        y0=y0,
        saveat=saveat,
        stepsize_controller=controller,
        max_steps=max_steps,
        throw=False,
        progress_meter=_progress_meter(progress),
        event=None
        if stop_when is None
        else diffrax.Event(
            lambda t, y, args, **kw: stop_when(y),
            root_finder=optx.Newton(rtol=1e-10, atol=1e-12),
        ),
    )
    observed, final = sol.ys
    if observe_after:
        observed = observe_saved(observe, observed)
    final = jax.tree.map(lambda x: x[0], final)
    end = sol.ts[1][0]
    stopped = sol.result == diffrax.RESULTS.event_occurred
    if stop_when is not None:
        # an event fires on a sign change only: an init already past the tolerance at t0
        # stops there (both are computed under vmap; the select keeps the right one)
        at_start = stop_when(y0) <= 0
        final = jax.tree.map(lambda a, b: jnp.where(at_start, a, b), y0, final)
        end = jnp.where(at_start, jnp.zeros_like(end), end)
        stopped = stopped | at_start
        observed = jax.tree.map(
            lambda v, e: jnp.where(stopped & (save_ts > end), e, v), observed, observe(final)
        )
    status = jnp.where(
        (sol.result == diffrax.RESULTS.successful) | stopped,
        OK,
        jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, MAX_STEPS, FAILED),
    )
    status = mark_nan(status, (final, nan_probe(final)), observed["loss"])
    traj = Trajectory(observed, final, status, sol.stats["num_accepted_steps"], flow_time(end))
    return nan_after_failure(traj)


def integrate_segment(
    terms: diffrax.AbstractTerm,
    solver: diffrax.AbstractSolver,
    y,
    start,
    ends,
    observe: Callable,
    *,
    controller: diffrax.AbstractStepSizeController,
    dt0,
    max_steps: int,
    nan_probe: Callable,
):
    """One segment of a solve cut in time (:mod:`gflow.checkpoint`): a diffrax solve from
    ``start`` to ``ends[-1]`` with ``observe`` at each of ``ends`` (S,) (padded by repeating
    the end), for solvers that carry no state across steps (the SDEs' and the fixed-step
    flows').

    Returns:
        ``(y at ends[-1], observations (S,), status, accepted steps, end time)``: the status as
        :func:`integrate` gives it (``mark_nan`` of this segment's final state and losses).
    """
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=ends, fn=lambda t, y, args: observe(y)),
              diffrax.SubSaveAt(t1=True)]
    )  # fmt: skip
    sol = diffrax.diffeqsolve(
        terms, solver, t0=start, t1=ends[-1], dt0=dt0, y0=y, saveat=saveat,
        stepsize_controller=controller, max_steps=max_steps, throw=False,
    )  # fmt: skip
    observed, final = sol.ys
    final = jax.tree.map(lambda x: x[0], final)
    status = jnp.where(
        sol.result == diffrax.RESULTS.successful,
        OK,
        jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, MAX_STEPS, FAILED),
    )
    status = mark_nan(status, (final, nan_probe(final)), observed["loss"])
    return final, observed, status, sol.stats["num_accepted_steps"], sol.ts[1][0]


def fixed_step_segment(
    loss: Callable,
    carry,
    start,
    ends,
    observe: Callable,
    *,
    solver: str,
    step,
    max_steps: int,
    drift: Callable | None = None,
):
    """One segment of a fixed-step :func:`gradient_flow` (euler, heun, midpoint, ralston: no
    state carried across steps) from ``start`` to ``ends[-1]`` in steps of ``step``, which put
    them on the one solve's grid (:class:`gflow.checkpoint.SegmentPlan`).

    Args:
        loss: the loss (see :func:`gradient_flow`).
        carry: ``(parameters, status, steps, end time)``
            (:func:`gflow.dynamics.stochastic.segment_carry` at t = 0).
        start: the segment's start time, 0-d.
        ends: its interval ends, (S,) (padded by repeating the end).
        observe: ``observe(params) -> dict`` of scalars, at each of ``ends``.
        solver: a fixed-step solver of :data:`SOLVERS`.
        step: the segment's step.
        max_steps: the most steps of one segment's solve.
        drift: the model's own vector field, in place of -grad loss.

    Returns:
        ``(carry at ends[-1], observations (S,))``: the status is the first that is not ok,
        the steps are summed.
    """
    params, status, steps, _ = carry
    dtype = state_dtype(params)
    move = velocity(loss, drift)
    final, observed, now, taken, end = integrate_segment(
        diffrax.ODETerm(lambda t, y, args: move(y)), SOLVERS[solver](), params,
        jnp.asarray(start, dtype), jnp.asarray(ends, dtype), observe,
        controller=diffrax.ConstantStepSize(), dt0=jnp.asarray(step, dtype),
        max_steps=max_steps, nan_probe=move,
    )  # fmt: skip
    status = jnp.where(status == OK, now, status)
    return (final, status, steps + taken, end), observed


class _Proposing(diffrax.AbstractAdaptiveStepSizeController):
    """An adaptive controller whose state also holds the step it proposes next: what a solve
    cut in segments passes the next segment as ``dt0`` (diffrax's ``SaveAt`` keeps the
    controller's state, not its proposal)."""

    inner: diffrax.AbstractAdaptiveStepSizeController

    @property
    def rtol(self):
        return self.inner.rtol

    @property
    def atol(self):
        return self.inner.atol

    @property
    def norm(self):
        return self.inner.norm

    def wrap(self, direction):
        return _Proposing(self.inner.wrap(direction))

    def init(self, terms, t0, t1, y0, dt0, args, func, error_order):
        tnext, state = self.inner.init(terms, t0, t1, y0, dt0, args, func, error_order)
        return tnext, (state, jnp.asarray(tnext - t0))

    def adapt_step_size(self, t0, t1, y0, y1_candidate, args, y_error, error_order, state):
        keep, next_t0, next_t1, jump, inner, result = self.inner.adapt_step_size(
            t0, t1, y0, y1_candidate, args, y_error, error_order, state[0]
        )
        return keep, next_t0, next_t1, jump, (inner, next_t1 - next_t0), result


def _flow_parts(loss, drift, solver: str, rtol, atol):
    """(terms, solver, controller, vector field) of the plain-clock flow."""
    move = velocity(loss, drift)
    terms = diffrax.ODETerm(lambda t, y, args: move(y))
    return terms, SOLVERS[solver](), _Proposing(step_controller(solver, rtol, atol)), move


def flow_segment_carry(loss, params0, t1, *, solver="tsit5", rtol, atol, dt0=None, drift=None):
    """The carry of a plain-clock flow cut in segments (:func:`flow_segment`) at t = 0.

    Returns:
        ``(parameters, status, steps, end time, (stopped, step proposed, solver state,
        controller state, made_jump))``: the step, solver and controller states as the one
        solve over [0, t1] starts them.
    """
    dtype = state_dtype(params0)
    terms, slv, controller, _ = _flow_parts(loss, drift, solver, rtol, atol)
    t0 = jnp.zeros((), dtype)
    dt0 = None if dt0 is None else jnp.asarray(dt0, dtype)
    tnext, state = controller.init(
        terms, t0, jnp.asarray(t1, dtype), params0, dt0, None, slv.func, slv.error_order(terms)
    )
    tnext = jnp.minimum(tnext, t1)
    solver_state = slv.init(terms, t0, tnext, params0, None)
    extra = (jnp.asarray(False), state[1], solver_state, state, jnp.asarray(False))
    return params0, jnp.asarray(OK, jnp.int32), jnp.zeros((), jnp.int32), t0, extra


def flow_segment(
    loss: Callable,
    carry,
    start,
    ends,
    observe: Callable,
    *,
    solver: str = "tsit5",
    rtol,
    atol,
    max_steps: int = 20_000,
    stop_grad_tol=None,
    drift: Callable | None = None,
):
    """One segment of :func:`gradient_flow` (plain clock, adaptive solver) from ``start`` to
    ``ends[-1]``: a diffrax solve that starts from the previous segment's solver and controller
    states, its first step the step the previous one proposed (the one solve's path but for the
    extra step boundary at each segment's end).

    An init that stopped (``stop_grad_tol``) or failed in an earlier segment takes no steps:
    its state, steps and end time are kept, its observations are the final one's (stopped) or
    +inf (failed: NaN once finished). ``max_steps`` bounds the whole run, checked at segment
    ends (it is static in diffrax: each segment's solve may take that many): an init whose
    summed steps pass it in a segment is marked max_steps, with that segment's final state,
    steps and end time and its observations from that segment on unreached (NaN).

    Args:
        loss: the loss (see :func:`gradient_flow`).
        carry: the carry (:func:`flow_segment_carry` at t = 0).
        start: the segment's start time, 0-d.
        ends: its interval ends, (S,) (padded by repeating the end).
        observe: ``observe(params) -> dict`` of scalars, at each of ``ends``.
        solver: an adaptive solver of :data:`SOLVERS`.
        rtol: the controller's relative tolerance.
        atol: its absolute tolerance.
        max_steps: the most accepted steps of the run (and of one segment's solve).
        stop_grad_tol: stop once the vector field's norm is below it; None: run to the end.
        drift: the model's own vector field, in place of -grad loss.

    Returns:
        ``(carry at ends[-1], observations (S,))``.
    """
    params, status, steps, end, (stopped, dt, solver_state, state, jump) = carry
    dtype = state_dtype(params)
    terms, slv, controller, move = _flow_parts(loss, drift, solver, rtol, atol)
    stop_when = gradient_norm_below(move, stop_grad_tol)
    start, ends = jnp.asarray(start, dtype), jnp.asarray(ends, dtype)
    saveat = diffrax.SaveAt(
        subs=[diffrax.SubSaveAt(ts=ends, fn=lambda t, y, args: observe(y)),
              diffrax.SubSaveAt(t1=True)],
        solver_state=True, controller_state=True, made_jump=True,
    )  # fmt: skip
    sol = diffrax.diffeqsolve(
        terms, slv, t0=start, t1=ends[-1], dt0=dt, y0=params, saveat=saveat,
        stepsize_controller=controller, max_steps=max_steps, throw=False,
        solver_state=solver_state, controller_state=state, made_jump=jump,
        event=None if stop_when is None else diffrax.Event(
            lambda t, y, args, **kw: stop_when(y),
            root_finder=optx.Newton(rtol=1e-10, atol=1e-12),
        ),
    )  # fmt: skip
    observed, final = sol.ys
    final = jax.tree.map(lambda x: x[0], final)
    now_end = sol.ts[1][0]
    now_stopped = sol.result == diffrax.RESULTS.event_occurred
    if stop_when is not None:  # as in integrate: already below the tolerance at the start
        at_start = stop_when(params) <= 0
        final = jax.tree.map(lambda a, b: jnp.where(at_start, a, b), params, final)
        now_end = jnp.where(at_start, start, now_end)
        now_stopped = now_stopped | at_start
        observed = jax.tree.map(
            lambda v, e: jnp.where(now_stopped & (ends > now_end), e, v), observed, observe(final)
        )
    taken = sol.stats["num_accepted_steps"]
    now = jnp.where(
        (sol.result == diffrax.RESULTS.successful) | now_stopped,
        OK,
        jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, MAX_STEPS, FAILED),
    )
    # the run's budget: passed by this segment's end (or this solve's own limit reached)
    over = (now == MAX_STEPS) | ((now == OK) & (steps + taken > max_steps))
    now = jnp.where(over, MAX_STEPS, now)
    now = mark_nan(now, (final, move(final)), jnp.where(over, 0.0, observed["loss"]))
    observed = jax.tree.map(lambda v: jnp.where(over, jnp.inf, v), observed)
    # an init stopped or failed before this segment keeps everything
    frozen = stopped | (status != OK)
    kept = observe(params)
    observed = jax.tree.map(
        lambda v, e: jnp.where(frozen, jnp.where(stopped, e, jnp.inf), v), observed, kept
    )
    pick = lambda old, new: jax.tree.map(lambda a, b: jnp.where(frozen, a, b), old, new)  # noqa: E731
    carry = (
        pick(params, final),
        jnp.where(frozen, status, now).astype(jnp.int32),
        jnp.where(frozen, steps, steps + taken).astype(jnp.int32),
        jnp.where(frozen, end, now_end),
        (
            jnp.where(frozen, stopped, now_stopped),
            pick(dt, sol.controller_state[1]),
            pick(solver_state, sol.solver_state),
            pick(state, sol.controller_state),
            pick(jump, jnp.asarray(sol.made_jump)),
        ),
    )
    return carry, observed


def observe_saved(observe: Callable, states) -> dict:
    """``observe`` at each saved state (a leading save axis), as diffrax would have saved it:
    +inf at the saves a failed solve never reached (diffrax fills those states with +inf)."""
    observed = jax.lax.map(observe, states)  # one save at a time: the bits of observing in-loop
    filled = [
        jnp.all(jnp.isposinf(x.reshape(x.shape[0], -1)), axis=1) for x in jax.tree.leaves(states)
    ]
    unreached = jnp.all(jnp.stack(filled), axis=0)
    return jax.tree.map(
        lambda v: jnp.where(unreached.reshape((-1,) + (1,) * (v.ndim - 1)), jnp.inf, v), observed
    )


def velocity(loss: Callable, drift: Callable | None = None) -> Callable:
    """theta -> d theta/dt: ``drift(theta)`` when given, else -grad L(theta)."""
    if drift is not None:
        return drift
    grad = jax.grad(loss)
    return lambda y: jax.tree.map(jnp.negative, grad(y))


def gradient_norm_below(field: Callable, tol: float | None) -> Callable | None:
    """``y -> ||field(y)|| - tol`` (global 2-norm over the pytree, e.g. of the gradient): the
    event fires where it turns negative. None without a tol."""
    if tol is None:
        return None
    return lambda y: jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(field(y)))) - tol


def state_dtype(params0):
    """The floating dtype of a parameter pytree; solver times must use it too (float64 times
    would silently promote a float32 state)."""
    return jnp.result_type(*jax.tree.leaves(params0))


def step_controller(solver: str, rtol: float, atol: float) -> diffrax.AbstractStepSizeController:
    """PID control for adaptive solvers, constant steps for fixed-step ones."""
    if solver in FIXED_STEP_SOLVERS:
        return diffrax.ConstantStepSize()
    return diffrax.PIDController(rtol=rtol, atol=atol)


def gradient_flow(
    loss: Callable,
    params0,
    save_ts: np.ndarray,
    observe: Callable,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    dt0: float | None = None,
    max_steps: int = 20_000,
    progress: bool = False,
    stop_grad_tol: float | None = None,
    clock: str = "plain",
    drift: Callable | None = None,
    clock_times: bool = False,
    observe_after: bool = False,
) -> Trajectory:
    """Integrate -grad ``loss`` (or ``drift``) from ``params0`` with a diffrax ODE solver.

    The flow runs over [0, save_ts[-1]], or until the norm of the vector field falls below
    ``stop_grad_tol`` (a diffrax event). ``clock="log"`` integrates the same path in
    s = log(1 + t), d theta/ds = e^s (-grad L), for long horizons (``dt0`` is then in s). Every
    setting that does not change shapes (``save_ts``, rtol, atol, dt0, stop_grad_tol) may be a
    traced array: one compiled solve then serves all their values.

    Args:
        loss: a scalar function of the parameter pytree.
        params0: the initial parameter pytree.
        save_ts: the T times to observe at, increasing, in [0, t1]; the last is t1.
        observe: ``observe(params) -> dict`` of scalars, evaluated at each of ``save_ts``.
        solver: a name of :data:`SOLVERS` (fixed-step ones need ``dt0``).
        rtol: relative tolerance of the PID step-size controller.
        atol: absolute tolerance of the controller.
        dt0: the initial (or fixed) step; None: chosen by the solver.
        max_steps: the most accepted steps; reaching it marks the status ``max_steps``.
        progress: show diffrax's progress meter.
        stop_grad_tol: stop once ||grad L|| (or ||drift||) is below this; None: run to t1.
        clock: "plain" (t) or "log" (s = log(1 + t)).
        drift: the model's own vector field ``drift(params) -> params``, in place of -grad loss.
        clock_times: ``save_ts`` are in the solver's clock already (log(1 + t) for the log clock,
            computed on the host in float64; a traced array).
        observe_after: see :func:`integrate`.

    Returns:
        The trajectory: observations of shape (T,), the state at t1 (or where the solve stopped),
        the status (an index into ``STATUS``) and the number of accepted solver steps.
    """
    dtype = state_dtype(params0)
    move = velocity(loss, drift)
    if clock == "log":
        field = lambda s, y, args: jax.tree.map(lambda v: jnp.exp(s) * v, move(y))  # noqa: E731
        solver_times = save_ts if clock_times else np.log1p(np.asarray(save_ts, float))
        flow_time = jnp.expm1
    else:
        field = lambda t, y, args: move(y)  # noqa: E731
        solver_times, flow_time = save_ts, lambda t: t
    return integrate(
        diffrax.ODETerm(field),
        SOLVERS[solver](),
        params0,
        jnp.asarray(solver_times, dtype),
        observe,
        controller=step_controller(solver, rtol, atol),
        dt0=None if dt0 is None else jnp.asarray(dt0, dtype),
        max_steps=max_steps,
        progress=progress,
        nan_probe=move,
        stop_when=gradient_norm_below(move, stop_grad_tol),
        flow_time=flow_time,
        observe_after=observe_after,
    )
