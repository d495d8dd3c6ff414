"""Many initializations at once: one solve vmapped over a leading ``init`` axis (in vectors of
a few inits, mapped in sequence, where that keeps them in cache).

Each initialization is solved independently (its own adaptive step sizes and its own status), so a
NaN or a max-steps failure in one is recorded for that one only.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from gflow import metrics
from gflow.config import STEPPED_KINDS, DynamicsConfig, root_finding
from gflow.dynamics import gradient_descent, gradient_flow, stochastic_gradient_descent
from gflow.dynamics.descent import advance_steps, descent_stepper, stepped_trajectory
from gflow.dynamics.flow import (
    FIXED_STEP_SOLVERS,
    fixed_step_segment,
    flow_segment,
    flow_segment_carry,
)
from gflow.dynamics.longtime import loss_time_flow
from gflow.dynamics.minibatch import minibatch_stepper
from gflow.dynamics.stochastic import noisy_gradient_flow, noisy_segment, segment_carry
from gflow.dynamics.trajectory import Trajectory, nan_after_failure
from gflow.hessian import extreme_eigenvalues
from gflow.models.base import Model, split_hyperparameters
from gflow.progress import METER


def save_grid(dynamics: DynamicsConfig) -> np.ndarray:
    """Saved times: flow time in [0, t1] (float) or step counts in [0, steps] (int).

    ``saves`` points, the first at 0 and the last at the end; ``log`` spacing puts the others
    geometrically from min(t1 * 1e-4, 1) (flow, sde) or step 1 (gd, sgd) to the end,
    ``linear`` evenly.

    Args:
        dynamics: the ``[dynamics]`` section (kind, saves, save_spacing, t1 or steps).

    Returns:
        The ``saves`` times, (T,): float64 flow times or int64 step counts, increasing.
    """
    n = dynamics.saves
    if dynamics.kind in STEPPED_KINDS:
        end = dynamics.steps
        if dynamics.save_spacing == "log":
            raw = np.geomspace(1, end, n - 1)
            raw[-1] = end  # geomspace(a, b, 1) is [a]: the last save is always the end
        else:
            raw = np.linspace(0, end, n)[1:]
        steps = np.zeros(n, np.int64)
        for k, x in enumerate(np.rint(raw).astype(np.int64), start=1):
            steps[k] = min(max(steps[k - 1] + 1, x), end - (n - 1 - k))
        return steps
    end = dynamics.t1
    if dynamics.save_spacing == "log":
        times = np.concatenate([[0.0], np.geomspace(min(end * 1e-4, 1.0), end, n - 1)])
        times[-1] = end  # geomspace(a, b, 1) is [a]: the last save is always the end
        return times
    return np.linspace(0.0, end, n)


def observer(
    model: Model, hessian: str = "none", hessian_iters: int = 60, geometry: bool = False
) -> Callable:
    """What is saved at each time, as a function of the parameters.

    Args:
        model: the model (its loss, readout and own observables).
        hessian: "none", "dense" or "lanczos": add ``hessian_min_eig`` and ``hessian_max_eig``,
            the extreme eigenvalues of the loss's Hessian (:mod:`gflow.hessian`).
        hessian_iters: the Lanczos iterations.
        geometry: add the classifier ``W_path`` and the class means ``means_path``, each (K, d).

    Returns:
        ``observe(params) -> dict``: "loss", every metric of :func:`gflow.metrics.evaluate` and
        the model's own observables (scalars), plus what the options add.
    """

    def observe(params):
        W, H, b, labels = model.readout(params)
        values = {
            "loss": model.loss(params),
            **metrics.evaluate(W, H, b, labels, model.num_classes),
        }
        if geometry:
            values.update(W_path=W, means_path=metrics.class_means(H, labels, model.num_classes))
        if model.observables is not None:
            values.update(model.observables(params))
        if hessian != "none":
            low, high = extreme_eigenvalues(model.loss, params, hessian, hessian_iters)
            values.update(hessian_min_eig=low, hessian_max_eig=high)
        return values

    return observe


class Settings(eqx.Module):
    """The dynamics settings that do not change shapes: values of a compiled solve's inputs,
    not constants of its program, so one compilation serves every value. Settings a dynamics
    kind does not use are carried and ignored (0 where unset).

    Attributes:
        times: the save times in the solver's clock (log(1 + t) for reparam "log"), (T,).
        lr: the learning rate (gd, sgd), 0-d.
        noise: the SDE's noise scale, 0-d.
        rtol: the flow's relative tolerance, 0-d.
        atol: the flow's absolute tolerance, 0-d.
        dt0: the initial (or fixed) step, 0-d.
        stop_grad_tol: the flow's stopping gradient norm, 0-d.
    """

    times: Array
    lr: Array
    noise: Array
    rtol: Array
    atol: Array
    dt0: Array
    stop_grad_tol: Array


def settings_for(dynamics: DynamicsConfig, dtype) -> Settings:
    """The traced settings of ``dynamics``; the save grid is computed on the host in float64.

    Args:
        dynamics: the ``[dynamics]`` section.
        dtype: the state's dtype (float64 settings would promote a float32 state).

    Returns:
        The :class:`Settings`, each array of ``dtype``.
    """
    d = dynamics
    grid = np.asarray(save_grid(d), float)
    if d.kind == "flow" and d.reparam == "log":
        grid = np.log1p(grid)
    value = lambda v: jnp.asarray(0.0 if v is None else v, dtype)  # noqa: E731
    return Settings(
        times=jnp.asarray(grid, dtype), lr=value(d.lr), noise=value(d.noise), rtol=value(d.rtol),
        atol=value(d.atol), dt0=value(d.dt0), stop_grad_tol=value(d.stop_grad_tol),
    )  # fmt: skip


# Dynamics fields that are traced (values of Settings), per kind; the rest fix the program.
TRACED_DYNAMICS = {
    "flow": ("t1", "rtol", "atol", "dt0", "stop_grad_tol"),
    "gd": ("lr",),
    "sde": ("t1", "noise", "dt0"),
    "sgd": ("lr",),  # batch_size changes shapes: structural
}


def structural_dynamics(dynamics: DynamicsConfig) -> DynamicsConfig:
    """``dynamics`` with its traced fields (:data:`TRACED_DYNAMICS`) set to neutral values:
    two configs with the same result compile to the same program.

    Args:
        dynamics: the ``[dynamics]`` section.

    Returns:
        The section with each given traced field at 1.0 (whether dt0 and stop_grad_tol are
        given still counts); the loss clock (reparam "loss") keeps every value, as its save
        split depends on t1.
    """
    if dynamics.kind == "flow" and dynamics.reparam == "loss":
        return dynamics
    neutral = {}
    for name in TRACED_DYNAMICS[dynamics.kind]:
        if getattr(dynamics, name) is not None:
            neutral[name] = 1.0
    return dataclasses.replace(dynamics, **neutral)


def solver_for(
    model: Model,
    dynamics: DynamicsConfig,
    progress: bool = False,
    observe: Callable | None = None,
    settings: Settings | None = None,
    observe_after: bool = False,
) -> Callable:
    """One initialization's solve for the configured dynamics.

    Args:
        model: the model.
        dynamics: the ``[dynamics]`` section.
        progress: report progress (diffrax's meter, or :data:`gflow.progress.METER`).
        observe: ``observe(params) -> dict`` at each save; None: :func:`observer` of ``model``.
        settings: traced values of the settings that do not change shapes; None: those of
            ``dynamics`` (:func:`settings_for`).
        observe_after: (flows and SDEs) observe the saved states after the solve instead of
            inside the solver loop (see :func:`observes_after`).

    Returns:
        ``solve(params0, key) -> Trajectory``; ``key`` drives the Brownian path of ``sde``, the
        shuffles of ``sgd`` and the noise of a stochastic optimizer (gd, sgd); ``flow``
        ignores it.

    Raises:
        ValueError: kind "sgd" for a model whose loss is not a mean over samples.
    """
    observe = observer(model) if observe is None else observe
    d = dynamics
    s = settings_for(d, model.dtype) if settings is None else settings
    if d.kind == "sde":
        options = dict(
            noise=s.noise, dt0=s.dt0, solver=d.solver, max_steps=d.max_steps,
            observe_after=observe_after,
        )  # fmt: skip
        return lambda p0, key: noisy_gradient_flow(
            model.loss, p0, s.times, observe, key, progress=progress, drift=model.drift,
            **options,
        )  # fmt: skip
    if d.kind == "gd":
        grid = save_grid(d)
        options = dict(optimizer=d.optimizer, lr=s.lr)
        return lambda p0, key: gradient_descent(
            model.loss, p0, grid, observe, key, progress=progress, **options
        )
    if d.kind == "sgd":
        if model.weighted_loss is None:
            raise ValueError(f"{model.name}: kind 'sgd' needs a loss that is a mean over samples")
        grid = save_grid(d)
        options = dict(
            optimizer=d.optimizer, lr=s.lr, batch_size=d.batch_size,
            num_samples=model.num_samples,
        )  # fmt: skip
        return lambda p0, key: stochastic_gradient_descent(
            model.weighted_loss, p0, grid, observe, key, progress=progress, **options
        )
    if d.reparam == "loss":  # every value static (see structural_dynamics)
        options = dict(solver=d.solver, rtol=d.rtol, atol=d.atol, max_steps=d.max_steps)
        grid = save_grid(d)
        return lambda p0, key: loss_time_flow(
            model.loss, p0, grid, observe, progress=progress, **options
        )
    options = dict(
        solver=d.solver, rtol=s.rtol, atol=s.atol, max_steps=d.max_steps,
        dt0=None if d.dt0 is None else s.dt0,
        stop_grad_tol=None if d.stop_grad_tol is None else s.stop_grad_tol,
        drift=model.drift, clock="log" if d.reparam == "log" else "plain",
        observe_after=observe_after,
    )  # fmt: skip
    return lambda p0, key: gradient_flow(
        model.loss, p0, s.times, observe, progress=progress, clock_times=True, **options
    )


TRACES = {"solve": 0}  # times batch_solve's per-init solve was traced in this process


def batch_solve(
    dynamics: DynamicsConfig,
    progress: bool = False,
    hessian: str = "none",
    hessian_iters: int = 60,
    geometry: bool = False,
    observe_after: bool = False,
) -> Callable:
    """The per-init solve as a function of everything that may vary between inits.

    vmap it with in_axes (None, 0, 0, 0, 0) and the inits of a batch may differ in every
    hyperparameter and traced setting.

    Args:
        dynamics: the ``[dynamics]`` section (its structural fields fix the program).
        progress: report progress.
        hessian: "none", "dense" or "lanczos" (see :func:`observer`).
        hessian_iters: the Lanczos iterations.
        geometry: save ``W_path`` and ``means_path`` (see :func:`observer`).
        observe_after: observe the saved states after the solve (:func:`observes_after`).

    Returns:
        ``solve(data, hyper, settings, params0, key) -> Trajectory``: the model is
        ``eqx.combine(hyper, data)`` (its scalar hyperparameters and its data leaves, see
        :func:`gflow.models.split_hyperparameters`).
    """

    def solve(data, hyper, settings, params0, key):
        TRACES["solve"] += 1  # runs when traced, never when a compiled solve runs
        model = eqx.combine(hyper, data)
        observe = observer(model, hessian, hessian_iters, geometry)
        return solver_for(model, dynamics, progress, observe, settings, observe_after)(params0, key)

    return solve


def _stepper(model: Model, dynamics: DynamicsConfig, settings: Settings, params0, key):
    """(step, carry0) of a stepped dynamics (gd, sgd) for one init."""
    d = dynamics
    if d.kind == "gd":
        return descent_stepper(model.loss, params0, key, optimizer=d.optimizer, lr=settings.lr)
    if model.weighted_loss is None:
        raise ValueError(f"{model.name}: kind 'sgd' needs a loss that is a mean over samples")
    return minibatch_stepper(
        model.weighted_loss, params0, key, optimizer=d.optimizer, lr=settings.lr,
        batch_size=d.batch_size, num_samples=model.num_samples,
    )  # fmt: skip


def segment_solve(
    dynamics: DynamicsConfig,
    progress: bool = False,
    hessian: str = "none",
    hessian_iters: int = 60,
    geometry: bool = False,
) -> tuple[Callable, Callable]:
    """A stepped solve (gd, sgd), an SDE or a plain-clock flow cut in segments: its start and
    its advance by one segment, the per-init functions of two compiled programs
    (:func:`batch_solve`'s arguments).

    Args:
        dynamics: the ``[dynamics]`` section, kind gd, sgd, sde or flow (plain clock:
            :func:`gflow.checkpoint.plan`).
        progress: report the steps taken (:data:`gflow.progress.METER`).
        hessian: see :func:`observer`.
        hessian_iters: see :func:`observer`.
        geometry: see :func:`observer`.

    Returns:
        ``(begin, advance)``: ``begin(data, hyper, settings, params0, key) -> (carry,
        observations at step 0)`` and ``advance((data, lengths), hyper, settings, carry, key)
        -> (carry, observations (S,))``: ``lengths`` (S,) the steps of the segment's
        intervals, the same for every init (data, not program: one program serves every
        segment). The carry is what the stepping needs (parameters, optimizer state, step
        index); the batches of sgd and a stochastic optimizer's noise follow from the key.
        An SDE's segment is ``(start, ends, dt)`` in place of ``lengths`` (its start time, its
        (S,) interval ends and its step, :class:`gflow.checkpoint.SegmentPlan`) and its carry
        (parameters, status, steps, end time)
        (:func:`gflow.dynamics.stochastic.noisy_segment`); a flow's that and its solver's
        and controller's states (:func:`gflow.dynamics.flow.flow_segment`).
    """
    if dynamics.kind == "sde":
        return _sde_segments(dynamics, hessian, hessian_iters, geometry)
    if dynamics.kind == "flow":
        return _flow_segments(dynamics, hessian, hessian_iters, geometry)

    def begin(data, hyper, settings, params0, key):
        model = eqx.combine(hyper, data)
        observe = observer(model, hessian, hessian_iters, geometry)
        _, carry0 = _stepper(model, dynamics, settings, params0, key)
        return carry0, observe(params0)

    def advance(shared, hyper, settings, carry, key):
        TRACES["solve"] += 1
        data, lengths = shared
        model = eqx.combine(hyper, data)
        observe = observer(model, hessian, hessian_iters, geometry)
        step, _ = _stepper(model, dynamics, settings, carry[0], key)
        return advance_steps(step, carry, lengths, observe, total=dynamics.steps, progress=progress)

    return begin, advance


def _timed_segments(dynamics, hessian, hessian_iters, geometry, segment: Callable):
    """:func:`segment_solve` of a solve cut in time whose carry is (parameters, status, steps,
    end time): an SDE or a fixed-step flow. ``segment(model, carry, key, settings, start, ends,
    step, observe) -> (carry, observations)`` solves one segment."""

    def begin(data, hyper, settings, params0, key):
        model = eqx.combine(hyper, data)
        return segment_carry(params0), observer(model, hessian, hessian_iters, geometry)(params0)

    def advance(shared, hyper, settings, carry, key):
        TRACES["solve"] += 1
        data, (start, ends, dt) = shared
        model = eqx.combine(hyper, data)
        observe = observer(model, hessian, hessian_iters, geometry)
        return segment(model, carry, key, settings, start, ends, dt, observe)

    return begin, advance


def _sde_segments(dynamics: DynamicsConfig, hessian: str, hessian_iters: int, geometry: bool):
    """:func:`segment_solve` of an SDE."""
    d = dynamics

    def segment(model, carry, key, settings, start, ends, dt, observe):
        return noisy_segment(
            model.loss, carry, key, start, ends, observe, t1=settings.times[-1],
            noise=settings.noise, dt0=settings.dt0, step=dt, solver=d.solver,
            max_steps=d.max_steps, drift=model.drift,
        )  # fmt: skip

    return _timed_segments(dynamics, hessian, hessian_iters, geometry, segment)


def _flow_segments(dynamics: DynamicsConfig, hessian: str, hessian_iters: int, geometry: bool):
    """:func:`segment_solve` of a plain-clock flow (an adaptive solver)."""
    d = dynamics
    if d.solver in FIXED_STEP_SOLVERS:
        return _fixed_step_segments(dynamics, hessian, hessian_iters, geometry)

    def options(settings):
        return dict(
            solver=d.solver, rtol=settings.rtol, atol=settings.atol,
        )  # fmt: skip

    def begin(data, hyper, settings, params0, key):
        model = eqx.combine(hyper, data)
        carry = flow_segment_carry(
            model.loss, params0, settings.times[-1], dt0=None if d.dt0 is None else settings.dt0,
            drift=model.drift, **options(settings),
        )  # fmt: skip
        return carry, observer(model, hessian, hessian_iters, geometry)(params0)

    def advance(shared, hyper, settings, carry, key):
        TRACES["solve"] += 1
        data, (start, ends, _) = shared
        model = eqx.combine(hyper, data)
        observe = observer(model, hessian, hessian_iters, geometry)
        return flow_segment(
            model.loss, carry, start, ends, observe, max_steps=d.max_steps,
            stop_grad_tol=None if d.stop_grad_tol is None else settings.stop_grad_tol,
            drift=model.drift, **options(settings),
        )  # fmt: skip

    return begin, advance


def _fixed_step_segments(
    dynamics: DynamicsConfig, hessian: str, hessian_iters: int, geometry: bool
):
    """:func:`segment_solve` of a fixed-step flow: an SDE's segments of time, without noise."""
    d = dynamics

    def segment(model, carry, key, settings, start, ends, dt, observe):
        return fixed_step_segment(
            model.loss, carry, start, ends, observe, solver=d.solver, step=dt,
            max_steps=d.max_steps, drift=model.drift,
        )  # fmt: skip

    return _timed_segments(dynamics, hessian, hessian_iters, geometry, segment)


def finish_timed(observed: dict, carry) -> Trajectory:
    """The Trajectory of an SDE or a flow solved in segments (:func:`segment_solve`), on the
    host.

    Args:
        observed: the observations at every save, each (inits, T).
        carry: the last segment's carry (parameters, status, steps, end time, ...), batched.

    Returns:
        The batched Trajectory; a failed init's observations NaN from its first bad save on.
    """
    final, status, steps, end, *_ = carry
    traj = Trajectory(observed, final, status, steps, end)
    return jax.tree.map(np.asarray, jax.vmap(nan_after_failure)(traj))


def finish_segments(observed: dict, final, save_steps: np.ndarray) -> Trajectory:
    """The Trajectory of inits solved in segments (:func:`segment_solve`), on the host.

    Args:
        observed: the observations at every save, each (inits, T).
        final: the final parameter pytree, each leaf with a leading init axis.
        save_steps: the T step counts of the saves.

    Returns:
        The batched Trajectory (:func:`gflow.dynamics.descent.stepped_trajectory` per init).
    """
    per_init = lambda obs, fin: stepped_trajectory(obs, fin, save_steps)  # noqa: E731
    return jax.tree.map(np.asarray, jax.vmap(per_init)(observed, final))


def state_bytes(model: Model) -> int:
    """Bytes of one initialization's parameters (nothing is computed).

    Args:
        model: the model.

    Returns:
        The sum of size x itemsize over the leaves of ``model.init``'s pytree.
    """
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(shapes))


def init_batch(model: Model, seed: int, count: int):
    """``count`` random initializations of ``model``.

    Args:
        model: the model.
        seed: the seed; one key per init is split from ``PRNGKey(seed)``.
        count: the number of inits.

    Returns:
        The parameter pytree, each leaf with a leading init axis of ``count``.
    """
    return draw_inits(model, jax.random.split(jax.random.PRNGKey(seed), count))


@eqx.filter_jit
def draw_inits(model: Model, keys: jax.Array, hyper: Model | None = None):
    """``model.init`` of every key, as one compiled program per structure (the draws of one
    op at a time, bit for bit: see :func:`gflow.models.base.standard_normal`).

    Args:
        model: the model; with ``hyper``, its data (``split_hyperparameters``).
        keys: one PRNG key per init, (B, 2).
        hyper: None, or the inits' own hyperparameters, each leaf (B,).

    Returns:
        The parameter pytree, each leaf with a leading init axis B.
    """
    if hyper is None:
        return jax.vmap(model.init)(keys)
    return jax.vmap(lambda h, k: eqx.combine(h, model).init(k))(hyper, keys)


def noise_keys(seed: int, count: int) -> jax.Array:
    """One key per init for its noise (Brownian path, shuffles), from a stream apart from the
    init keys.

    Args:
        seed: the init seed.
        count: the number of inits.

    Returns:
        The keys, (count, 2).
    """
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 1), count)


# Inits vectorized together by default on a CPU, so that their working set stays in cache.
# GD: 8 states (K=10, d=32, n=20 on the 2-core dev box: 8 -> 2.6e5 init-steps/s, all 512 ->
# 1.3e5). Adaptive flows keep ~10 copies of the state (stages, error, saves) and a vmapped
# while loop also selects every buffer at every step, so a vector holds at most
# FLOW_VECTOR_BYTES of state: one init of the K=10 reference problem (54 kB in float64: 2.5x
# faster than one vmap of 32; 27 kB in float32: 0.61 s alone, 0.71 s in pairs), up to 8 small
# ones (UFM-MSE K=4, 1.6 kB: 2.0x faster than one at a time). An accelerator wants
# the whole batch in every kernel, and solves that find roots (implicit solvers, stop events)
# run as one vmap: vectors go through shard_map, under which those root finds fail.
GD_VECTOR_WIDTH = 8
FLOW_VECTOR_BYTES = 16 * 1024


def vector_width(
    dynamics: DynamicsConfig,
    requested: int = -1,
    platform: str | None = None,
    state_bytes: int = 0,
) -> int:
    """Inits solved together in one vmap (``run.vector_width``).

    Args:
        dynamics: the ``[dynamics]`` section.
        requested: the width asked for, if > 0; otherwise (-1) the default: 0 on an accelerator
            and for solves that find roots, :data:`GD_VECTOR_WIDTH` for GD and SGD, and as many
            states as fit :data:`FLOW_VECTOR_BYTES` (1 to 8) for flows and SDEs.
        platform: the platform the default is for; None: JAX's default backend.
        state_bytes: one init's state (:func:`state_bytes`), for the flows' default.

    Returns:
        The width; 0: all inits in one vmap.
    """
    if requested > 0:
        return requested
    platform = jax.default_backend() if platform is None else platform
    if platform != "cpu" or root_finding(dynamics):
        return 0
    if dynamics.kind in STEPPED_KINDS:
        return GD_VECTOR_WIDTH
    return int(np.clip(FLOW_VECTOR_BYTES // max(state_bytes, 1), 1, GD_VECTOR_WIDTH))


def vectorized(solve: Callable, width: int = 0, progress: bool = False):
    """A per-init solve made a batched one, in one vmap or in vectors of inits.

    Args:
        solve: ``solve(shared, *one_init) -> Trajectory``; ``shared`` is the same for every
            init (a model's data).
        width: 0: vmap(solve) over the whole batch; else ``lax.map`` over vectors of ``width``
            inits, vmapped within (the init count must then be a multiple of ``width``).
        progress: (with vectors) add each finished vector's inits to
            :data:`gflow.progress.METER` (a host callback; under ``shard_map`` every device
            runs its own vectors); the caller starts the meter with the number of inits.

    Returns:
        ``run(shared, *batched) -> Trajectory``, each of ``batched`` and of the Trajectory's
        leaves with a leading init axis.
    """

    def vmapped(shared, *batched):
        return jax.vmap(solve, in_axes=(None, *[0] * len(batched)))(shared, *batched)

    if width <= 0:
        return vmapped

    def run(shared, *batched):
        count = jax.tree.leaves(batched)[0].shape[0]

        def one_vector(args):
            traj = vmapped(shared, *args)
            if progress:  # a vector of inits is done (gflow.progress.METER counts inits)
                jax.debug.callback(lambda _: METER.add(width), traj.status)
            return traj

        split = jax.tree.map(lambda x: x.reshape(count // width, width, *x.shape[1:]), batched)
        stacked = jax.lax.map(one_vector, split)
        return jax.tree.map(lambda x: x.reshape(count, *x.shape[2:]), stacked)

    return run


def broadcast_hyperparameters(model: Model, count: int) -> tuple[Model, Model]:
    """The model split as :func:`batch_solve` takes it.

    Args:
        model: the model.
        count: the number of inits.

    Returns:
        ``(data, hyper)``: the model's data leaves, and its scalar hyperparameters repeated
        for ``count`` inits (each (count,)).
    """
    hyper, data = split_hyperparameters(model)
    return data, jax.tree.map(lambda x: jnp.broadcast_to(x, (count,)), hyper)


def broadcast_settings(settings: Settings, count: int) -> Settings:
    """The same settings for ``count`` inits.

    Args:
        settings: one init's settings.
        count: the number of inits.

    Returns:
        The settings, each with a leading init axis of ``count``.
    """
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (count, *x.shape)), settings)


# Observing the saved states after a flow's solve compiles a smaller solver loop (the reference
# problem, UFM-CE K=10, d=32, n=20, Tsit5: tracing 3.0 -> 1.9 s on the 2-core dev box) and gives
# the same bits, but holds every saved state of the inits vmapped together: up to this much.
OBSERVE_AFTER_BYTES = 256 * 2**20


def observes_after(dynamics: DynamicsConfig, saved_bytes: int) -> bool:
    """Whether a solve observes its saved states after the solve instead of in its loop.

    Args:
        dynamics: the ``[dynamics]`` section.
        saved_bytes: what the saved states would hold: saves x one state x the inits vmapped
            together.

    Returns:
        True for flows (except the loss clock) and SDEs whose ``saved_bytes`` are at most
        :data:`OBSERVE_AFTER_BYTES`.
    """
    loop_kind = dynamics.kind == "sde" or (dynamics.kind == "flow" and dynamics.reparam != "loss")
    return loop_kind and saved_bytes <= OBSERVE_AFTER_BYTES


@functools.cache
def _compiled_batch_solve(dynamics: DynamicsConfig, progress: bool, after: bool) -> Callable:
    """jit(vmap(batch_solve)) per structural dynamics config: jax.jit then keeps one compiled
    program per model structure and shapes, whatever the hyperparameter values."""
    return jax.jit(vectorized(batch_solve(dynamics, progress, observe_after=after)))


def batched_solver(
    model: Model, dynamics: DynamicsConfig, progress: bool = False, observe: Callable | None = None
) -> Callable:
    """A compiled batched solve of ``model`` under ``dynamics``.

    Args:
        model: the model.
        dynamics: the ``[dynamics]`` section.
        progress: report progress.
        observe: ``observe(params) -> dict``; None: :func:`observer`, and the solve is compiled
            once per model structure and structural dynamics (hyperparameters and traced
            settings are inputs); a custom closure compiles its own jit(vmap(solve)).

    Returns:
        ``solve(params0, keys) -> Trajectory``, with a leading init axis on all three.
    """
    if observe is not None:
        return jax.jit(jax.vmap(solver_for(model, dynamics, progress, observe)))
    settings = settings_for(dynamics, model.dtype)
    one = state_bytes(model)

    def solve(params0, keys):
        count = keys.shape[0]
        after = observes_after(dynamics, count * dynamics.saves * one)
        compiled = _compiled_batch_solve(structural_dynamics(dynamics), progress, after)
        if progress and dynamics.kind in STEPPED_KINDS:
            METER.start(count * dynamics.steps, "of the steps")
        data, hyper = broadcast_hyperparameters(model, count)
        return compiled(data, hyper, broadcast_settings(settings, count), params0, keys)

    return solve


def run_batch(
    model: Model, dynamics: DynamicsConfig, params0, progress: bool = False, seed: int = 0
) -> Trajectory:
    """Solve every initialization in ``params0``.

    Args:
        model: the model.
        dynamics: the ``[dynamics]`` section.
        params0: the initial parameter pytree, leading axis: init (:func:`init_batch`).
        progress: report progress.
        seed: picks the noise keys (:func:`noise_keys`): the Brownian paths of ``sde``, the
            shuffles of ``sgd``.

    Returns:
        The Trajectory, each leaf with a leading init axis.
    """
    count = len(jax.tree.leaves(params0)[0])
    return batched_solver(model, dynamics, progress)(params0, noise_keys(seed, count))
