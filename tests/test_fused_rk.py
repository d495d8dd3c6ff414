"""The fused Tsit5 and Bosh3 steps take diffrax's steps: same accepted and rejected steps, the
same values to rounding at the saves and in the dense output, FSAL restarted after a jump."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow.dynamics.flow import velocity
from gflow.dynamics.fused import FusedBosh3, FusedTsit5
from gflow.models import ufm_ce

# solver pairs and their PID tolerances (rtol, atol)
PAIRS = {
    "tsit5": (diffrax.Tsit5, FusedTsit5, 1e-8, 1e-10),
    "bosh3": (diffrax.Bosh3, FusedBosh3, 1e-6, 1e-8),
}
MAX_STEPS = 256  # the reference solves take about 90 (Tsit5) and 160 (Bosh3) steps
T1 = 500.0
SAVES = np.linspace(0.0, T1, 20)
OFF_GRID = np.linspace(1.7, T1 - 3.1, 23)  # between the saves and the steps


def solve(term, solver, y0, t1, saves, controller, max_steps, dense=True):
    """One diffeqsolve: states at ``saves``, (accepted, rejected) steps and, with ``dense``, the
    dense output at OFF_GRID (else None)."""
    sol = diffrax.diffeqsolve(
        term, solver, 0.0, t1, None, y0,
        saveat=diffrax.SaveAt(ts=saves, dense=dense),
        stepsize_controller=controller, max_steps=max_steps,
    )  # fmt: skip
    dense = jax.vmap(sol.evaluate)(jnp.asarray(OFF_GRID)) if dense else None
    steps = (sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"])
    return sol.ys, dense, steps


def assert_same_solve(stock, fused, rtol=1e-12):
    (ys_a, dense_a, steps_a), (ys_b, dense_b, steps_b) = stock, fused
    np.testing.assert_array_equal(steps_b[0], steps_a[0])  # accepted
    np.testing.assert_array_equal(steps_b[1], steps_a[1])  # rejected
    for a, b in zip(
        jax.tree.leaves((ys_a, dense_a)), jax.tree.leaves((ys_b, dense_b)), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * np.abs(a).max())


@pytest.mark.parametrize("name", PAIRS)
def test_fused_takes_diffrax_steps_on_the_reference_problem(name):
    """UFM-CE K=10, d=32, n=20 (Zhu et al. 2021), float64, two inits under vmap, flow to 500."""
    stock_cls, fused_cls, rtol, atol = PAIRS[name]
    model = ufm_ce(10, 32, 20, dtype=jnp.float64)
    inits = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(3), 2))
    move = velocity(model.loss)
    term = diffrax.ODETerm(lambda t, y, args: move(y))
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    run = lambda solver: jax.jit(  # noqa: E731
        jax.vmap(lambda y0: solve(term, solver, y0, T1, jnp.asarray(SAVES), controller, MAX_STEPS))
    )(inits)
    stock, fused = run(stock_cls()), run(fused_cls())
    accepted, rejected = stock[2]
    assert np.all(accepted > 20) and np.all(accepted < MAX_STEPS)  # a real adaptive solve
    assert_same_solve(stock, fused)


def rate(t):
    """The decay rate of the test ODE: 1 before t = 0.7, 3 after (a jump in the field)."""
    return jnp.where(t < 0.7, 1.0, 3.0)


def decay(t, y, args):
    return jax.tree.map(lambda v: -rate(t) * v, y)


def test_fused_on_a_pytree_restarts_fsal_after_a_jump():
    """y' = -r(t) y on a pytree of several leaves and shapes, r jumping from 1 to 3 at 0.7:
    y(t) = y0 exp(-t) before, y0 exp(-0.7 - 3 (t - 0.7)) after. diffrax steps to the jump and
    flags it; reusing the last stage's f (from before the jump) would change the steps.
    (Tsit5 only: the FSAL logic is shared; a second pair of compilations costs ~7 s.)"""
    stock_cls, fused_cls, rtol, atol = PAIRS["tsit5"]
    y0 = {
        "W": jnp.arange(1.0, 7.0).reshape(3, 2),
        "H": jnp.array([0.5, -2.0, 4.0, 1e-3]),
        "b": {"c": jnp.array(-1.5)},
    }
    t1, saves = 2.0, np.array([0.0, 0.3, 0.7, 1.1, 2.0])
    controller = diffrax.ClipStepSizeController(
        diffrax.PIDController(rtol=rtol, atol=atol), jump_ts=jnp.array([0.7])
    )
    term = diffrax.ODETerm(decay)
    run = lambda solver: jax.jit(  # noqa: E731
        lambda y: solve(term, solver, y, t1, jnp.asarray(saves), controller, MAX_STEPS, False)
    )(y0)
    stock, fused = run(stock_cls()), run(fused_cls())
    assert_same_solve(stock, fused)
    exact = np.where(saves < 0.7, np.exp(-saves), np.exp(-0.7 - 3.0 * (saves - 0.7)))
    for leaf, start in zip(jax.tree.leaves(fused[0]), jax.tree.leaves(y0), strict=True):
        expected = np.multiply.outer(exact, np.asarray(start))
        # global error: about 3e-10 of the largest value here
        np.testing.assert_allclose(leaf, expected, rtol=0, atol=100 * rtol * np.abs(expected).max())


@pytest.mark.parametrize("name", PAIRS)
def test_fused_step_evaluates_the_field_as_often_as_diffrax(name):
    """s evaluations on the first step, s - 1 after (FSAL), counted at run time; the step
    returns diffrax's structures (y1, y_error, dense info, solver state, result)."""
    stock_cls, fused_cls, *_ = PAIRS[name]
    calls = []

    def field(t, y, args):
        jax.debug.callback(lambda: calls.append(1))
        return decay(t, y, args)

    term, y0 = diffrax.ODETerm(field), {"W": jnp.ones((2, 3)), "b": jnp.ones(2)}

    def run(solver):
        """Two steps (the first, then one reusing its last stage): outputs and evaluations."""
        step = jax.jit(lambda y, state: solver.step(term, 0.0, 0.1, y, None, state, False))
        counts, state = [], solver.init(term, 0.0, 0.1, y0, None)
        for _ in range(2):
            calls.clear()
            out = jax.block_until_ready(step(y0, state))
            counts.append(len(calls))
            state = out[3]
        return out, counts

    (stock, stock_counts), (fused, fused_counts) = run(stock_cls()), run(fused_cls())
    stages = stock_cls.tableau.num_stages
    assert stock_counts == fused_counts == [stages, stages - 1]
    assert jax.tree.structure(fused) == jax.tree.structure(stock)
    for a, b in zip(jax.tree.leaves(stock), jax.tree.leaves(fused), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(b, a, rtol=1e-14, atol=1e-15)
