"""Normalized UFM (Yaras et al., NeurIPS 2022, arXiv 2209.09211; Jiang et al. 2023, arXiv
2310.05351 for K > d + 1): unit classifier rows and features, logits s cos(w_k, h_i), CE.

Balanced optima, h_i = w_{y_i}: the simplex ETF for K <= d + 1, F* = log(1 + (K-1) e^{-sK/(K-1)});
the regular K-gon for d = 2, F* = log sum_j e^{s (cos(2 pi j/K) - 1)}; the octahedron +-e_i for
K = 6, d = 3, F* = log(1 + 4 e^{-s} + e^{-2s}). The last two are checked here against a direct
numerical minimization, as the first.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.stats import special_ortho_group

from gflow import config, metrics, results, simulate, simulation, theory
from gflow.config import ConfigError
from gflow.models.sphere import ufm_sphere


def test_worked_values():
    """F* at the worked points: ETF K=4 (d=8), s=1 and K=5 (d=4), s=3; K-gon d=2, K=5, s=1
    and K=7, s=10."""
    assert theory.sphere_optimum(4, 8, 1.0).loss == pytest.approx(0.582657653062, rel=1e-11)
    assert theory.sphere_optimum(5, 4, 3.0).loss == pytest.approx(0.089905586195, rel=1e-10)
    assert theory.sphere_optimum(5, 2, 1.0).loss == pytest.approx(0.845781008887, rel=1e-11)
    assert theory.sphere_optimum(7, 2, 10.0).loss == pytest.approx(0.045298667344, rel=1e-10)
    # K = 3 in the plane: the triangle is both the simplex ETF and the 3-gon
    assert theory.sphere_polygon_loss(3, 2.5) == pytest.approx(theory.sphere_etf_loss(3, 2.5))
    assert theory.sphere_min_angle(4, 3) == pytest.approx(math.acos(-1 / 3))
    assert theory.sphere_min_angle(8, 2) == pytest.approx(math.pi / 4)
    assert theory.sphere_min_angle(6, 3) == pytest.approx(math.pi / 2)
    assert theory.sphere_min_angle(7, 3) is None and theory.sphere_optimum(7, 3, 1.0) is None


@pytest.mark.parametrize("K, d", [(4, 8), (5, 4), (5, 2), (7, 2), (6, 3)])
def test_optimum_is_its_own_configuration(K, d):
    """Each closed form is the loss of its classifier with h_i = w_{y_i}: for every class k,
    log sum_j exp(s (w_j.w_k - 1)); the angle is the rows' smallest; the rows are unit."""
    for s in (0.5, 3.0):
        opt = theory.sphere_optimum(K, d, s)
        W = opt.classifier
        assert W.shape == (K, d)
        np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0, rtol=1e-14)
        per_class = np.log(np.sum(np.exp(s * (W @ W.T - 1)), axis=1))
        np.testing.assert_allclose(per_class, opt.loss, rtol=1e-13)
        cosines = (W @ W.T)[~np.eye(K, dtype=bool)]
        assert math.acos(np.max(cosines)) == pytest.approx(opt.min_angle, abs=1e-7)


@functools.cache
def _sphere_loss(K, d):
    """(x, s) -> (F, dF/dx) for x = (W, H) flattened, one feature per class, unit rows read."""

    def F(x, s):
        W, H = x[: K * d].reshape(K, d), x[K * d :].reshape(K, d)
        W = W / jnp.linalg.norm(W, axis=1, keepdims=True)
        H = H / jnp.linalg.norm(H, axis=1, keepdims=True)
        Z = s * H @ W.T
        return jnp.mean(jax.nn.logsumexp(Z, axis=1) - jnp.diag(Z))

    return jax.jit(jax.value_and_grad(F))


def _minimize_on_spheres(K, d, s, starts, seed=0):
    """Lowest F found by L-BFGS over free (W, H) read through unit rows. Balanced classes: F is
    a sum over samples of a function of (W, h_i) alone, so one feature per class suffices."""

    F = _sphere_loss(K, d)
    rng = np.random.default_rng(seed)
    best = np.inf
    for _ in range(starts):
        found = minimize(
            lambda x: tuple(np.asarray(v, float) for v in F(x, s)), rng.normal(size=2 * K * d),
            jac=True, method="L-BFGS-B", options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12},
        )  # fmt: skip
        best = min(best, found.fun)
    return best


@pytest.mark.parametrize(
    "K, d, s",
    [(4, 8, 1.0), (5, 4, 3.0), (5, 2, 1.0), (7, 2, 4.0), (6, 3, 0.5), (6, 3, 5.0)],
    ids=["etf-4-8", "etf-5-4", "pentagon", "heptagon", "octahedron-s0.5", "octahedron-s5"],
)
def test_closed_form_is_the_numerical_minimum(K, d, s):
    """Random starts never go below F*, and the best of them reaches it."""
    expected = theory.sphere_optimum(K, d, s).loss
    found = _minimize_on_spheres(K, d, s, starts=4)
    assert found >= expected * (1 - 1e-12)
    assert found == pytest.approx(expected, rel=1e-9)


def test_loss_is_invariant_to_row_scales_and_a_joint_rotation():
    model = ufm_sphere(5, 3, 2, logit_scale=1.7, dtype=jnp.float64)
    params = model.init(jax.random.PRNGKey(0))
    loss = jax.jit(lambda p: model.loss(p))
    value = float(loss(params))
    rng = np.random.default_rng(1)
    scaled = {
        "W": params["W"] * rng.uniform(0.1, 10.0, (5, 1)),
        "H": params["H"] * rng.uniform(0.1, 10.0, (10, 1)),
    }
    assert float(loss(scaled)) == pytest.approx(value, rel=1e-13)
    Q = special_ortho_group.rvs(3, random_state=2)
    rotated = {"W": params["W"] @ Q, "H": params["H"] @ Q}
    assert float(loss(rotated)) == pytest.approx(value, rel=1e-13)
    # a rotation of the features alone changes it: the invariance is a joint one
    assert abs(float(loss({"W": params["W"], "H": params["H"] @ Q})) - value) > 1e-3
    # scale invariance: the gradient of each row is orthogonal to it (d||w_k||^2/dt = 0)
    grads = jax.jit(jax.grad(lambda p: model.loss(p)))(params)
    for name in ("W", "H"):
        radial = np.sum(np.asarray(grads[name]) * np.asarray(params[name]), axis=1)
        assert np.max(np.abs(radial)) < 1e-15
    W, H, b, _ = model.readout(scaled)  # the readout is the unit rows
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(H, axis=1), 1.0, rtol=1e-14)
    assert not np.any(b)


@pytest.mark.parametrize("K, d", [(5, 2), (6, 3)])
def test_metrics_at_the_polygon_and_octahedron(K, d):
    """At h_i = w_{y_i} with rows summing to 0, NC1, NC3 and NC4 vanish and NC2 does not (no
    simplex ETF): the model's declared targets for these cases."""
    opt = theory.sphere_optimum(K, d, 2.0)
    labels = jnp.repeat(jnp.arange(K), 2)
    W = jnp.asarray(opt.classifier)
    H, b = W[labels], jnp.zeros(K)
    assert float(metrics.nc1(H, labels, K)) < 1e-12
    assert float(metrics.nc3(W, H, labels, K)) < 1e-12
    assert float(metrics.nc4(W, b, H, labels, K)) == 0
    assert float(metrics.nc2(W)) > 0.1
    cfg = config.from_dict({"model": {"name": "ufm-sphere", "classes": K, "dim": d}})
    assert cfg.model.logit_scale == 2.0
    assert results.theory_attrs(simulation.build_model(cfg), cfg)["theory_metrics"] == "nc1 nc3 nc4"


def test_closed_form_attributes_apply_where_known():
    def attrs(**model):
        cfg = config.from_dict({"model": {"name": "ufm-sphere", **model}})
        return results.theory_attrs(simulation.build_model(cfg), cfg)

    etf = attrs(classes=4, dim=8, per_class=5, logit_scale=1.0)
    assert etf["theory_loss"] == pytest.approx(0.582657653062, rel=1e-11)
    assert etf["theory_min_angle"] == pytest.approx(math.acos(-1 / 3))
    assert etf["theory_metrics"] == "nc1 nc2 nc3 nc4"
    for unknown in (attrs(classes=7, dim=3), attrs(classes=3, dim=2, per_class=[1, 4, 4])):
        assert "theory_loss" not in unknown and "theory_min_angle" not in unknown
        assert unknown["theory_metrics"] == "nc1 nc4"


FLOW = {"kind": "flow", "t1": 100.0, "rtol": 1e-11, "atol": 1e-13, "saves": 6,
        "max_steps": 50_000}  # fmt: skip


@pytest.mark.parametrize(
    "K, d, n",
    [(4, 3, 2), (5, 2, 2), (6, 3, 2)],
    ids=["etf-K-eq-d-plus-1", "pentagon", "octahedron"],
)
def test_flow_reaches_the_closed_form(K, d, n):
    ds = simulate({
        "model": {"name": "ufm-sphere", "classes": K, "dim": d, "per_class": n},
        "dynamics": FLOW,
        "init": {"count": 4, "seed": 3},
        "run": {"precision": "float64"},
    })  # fmt: skip
    last = ds.isel(time=-1)
    assert list(ds.status.values) == ["ok"] * 4
    np.testing.assert_allclose(last.loss, ds.attrs["theory_loss"], rtol=1e-8)
    np.testing.assert_allclose(last.min_angle, ds.attrs["theory_min_angle"], atol=1e-6)
    np.testing.assert_allclose(last.feature_classifier_cosine, 1.0, atol=1e-9)
    assert bool(results.collapsed(ds, tol=1e-6).all())
    if K <= d + 1:
        assert np.all(last.nc2.values < 1e-6)
    # the loss reads directions only: the flow keeps every row norm (to the solver's tolerance)
    np.testing.assert_allclose(last.radius_sq, ds.radius_sq.isel(time=0), rtol=1e-8)


def test_a_gradient_step_grows_every_row_by_lr_squared_grad_squared():
    """The gradient of a row is orthogonal to it, so a GD step w -> w - lr g gives
    ||w||^2 + lr^2 ||g||^2: under GD the row norms grow (slowly), under the flow they stay."""
    model = ufm_sphere(4, 3, 2, dtype=jnp.float64)
    params = model.init(jax.random.PRNGKey(4))
    grads = jax.jit(jax.grad(lambda p: model.loss(p)))(params)
    lr = 0.7
    for name in ("W", "H"):
        x, g = np.asarray(params[name]), np.asarray(grads[name])
        after = np.sum((x - lr * g) ** 2, axis=1)
        np.testing.assert_allclose(after, np.sum(x**2, axis=1) + lr**2 * np.sum(g**2, axis=1),
                                   rtol=1e-14)  # fmt: skip
        assert np.all(after > np.sum(x**2, axis=1))


@pytest.mark.parametrize(
    "model, message",
    [
        ({"logit_scale": 0}, r"^model\.logit_scale: must be > 0, got 0$"),
        ({"logit_scale": -2.0}, r"^model\.logit_scale: must be > 0, got -2$"),
        ({"wd_W": 1e-3}, r"^model\.wd_W: ufm-sphere has no option wd_W"),
        ({"bias": True}, r"^model\.bias: ufm-sphere has no bias; set bias = false$"),
    ],
)
def test_bad_values_are_one_line_config_errors(model, message):
    with pytest.raises(ConfigError, match=message) as info:
        config.from_dict({"model": {"name": "ufm-sphere", **model}})
    assert "\n" not in str(info.value)
