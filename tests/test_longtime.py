"""Long horizons: the reparametrized flows follow the same gradient-flow path (checked against a
tight plain-time reference at matching times) and take the ULPM normalized margin to within 1%
of 1/(sqrt(n)(K-1)) in a few hundred steps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow import simulation, theory
from gflow.batch import init_batch, observer, run_batch, save_grid
from gflow.config import DynamicsConfig
from gflow.dynamics import gradient_flow
from gflow.dynamics.longtime import log_time_flow, loss_time_flow
from gflow.models import ulpm

TS = np.array([0.0, 0.5, 1.0, 10.0, 300.0, 1e4])


@pytest.fixture(scope="module")
def small():
    """A small ULPM and its tight-tolerance plain-time reference, computed once."""
    model = ulpm(3, 3, 2, dtype=jnp.float64)
    params0 = init_batch(model, seed=0, count=2)
    reference = jax.jit(jax.vmap(
        lambda p: gradient_flow(model.loss, p, TS, observer(model), rtol=1e-12, atol=1e-14)
    ))(params0)  # fmt: skip
    return model, params0, reference


@pytest.mark.parametrize("flow", [log_time_flow, loss_time_flow], ids=["log", "loss"])
def test_same_path_as_a_tight_plain_time_reference(small, flow):
    model, params0, reference = small
    ts, observe = TS, observer(model)
    # jitted whole: op by op, the code around the solves would compile each of its ops
    traj = jax.jit(jax.vmap(lambda p: flow(model.loss, p, ts, observe, rtol=1e-10, atol=1e-12)))(
        params0
    )
    assert np.all(np.asarray(traj.status) == 0)
    for name in ("W", "H"):  # the state at t1 itself (the loss flow stops there by an event)
        np.testing.assert_allclose(traj.final[name], reference.final[name], rtol=1e-6, atol=1e-8)
    # saved values at the same flow times (the loss flow interpolates between its steps)
    tol = 1e-7 if flow is log_time_flow else 2e-3
    for name in ("loss", "W_norm_sq", "normalized_margin"):
        np.testing.assert_allclose(
            traj.observed[name], reference.observed[name], rtol=tol, atol=1e-9
        )


def test_margin_within_one_percent_in_few_steps():
    """K=3, n=4, d=6 to t = 1e60. Also the KKT residual at t = 1e30 against the reference
    measurement (about 0.02-0.03 for a small balanced problem; here 0.025-0.03)."""
    model = ulpm(3, 6, 4, dtype=jnp.float64)
    dyn = DynamicsConfig(t1=1e60, rtol=1e-8, atol=1e-10, saves=8, reparam="loss")  # 1e0..1e60
    traj = run_batch(model, dyn, init_batch(model, seed=0, count=4))
    assert np.all(np.asarray(traj.status) == 0)
    assert np.all(np.asarray(traj.num_steps) < 500)  # measured ~170
    kkt = np.asarray(traj.observed["kkt_residual"])
    log_times = np.log10(np.maximum(save_grid(dyn), 1e-300))
    at = {t: int(np.argmin(np.abs(log_times - np.log10(t)))) for t in (1e10, 1e20, 1e30, 1e60)}
    assert np.all(kkt[:, at[1e10]] > kkt[:, at[1e20]]) and np.all(
        kkt[:, at[1e20]] > kkt[:, at[1e30]]
    )
    assert np.all((kkt[:, at[1e30]] > 0.015) & (kkt[:, at[1e30]] < 0.04))
    gamma_star = theory.ulpm_max_margin(3, 4)
    margin = np.asarray(traj.observed["normalized_margin"])
    times = save_grid(dyn)
    assert np.all(margin <= gamma_star * (1 + 1e-9))
    gap = (gamma_star - margin) / gamma_star
    assert np.all(gap[:, at[1e60]] < 0.01)  # measured ~0.1%
    late = times >= 1e10
    assert np.all(np.diff(gap[:, late], axis=1) < 0)  # still closing, like 1/log t
    assert np.all(np.asarray(traj.observed["loss"])[:, -1] < 1e-55)


def test_reparam_through_the_pipeline():
    cfg = {
        "model": {"name": "ulpm", "classes": 3, "dim": 3, "per_class": 2},
        "dynamics": {"t1": 1e30, "reparam": "loss", "saves": 8},
        "init": {"count": 2},
        "run": {"precision": "float64"},
    }
    ds = simulation.simulate(cfg)
    assert list(ds.status.values) == ["ok", "ok"]
    assert float(ds.time[-1]) == 1e30
    gap = 1 - ds.normalized_margin.isel(time=-1) / ds.attrs["theory_normalized_margin"]
    assert float(gap.max()) < 0.02
