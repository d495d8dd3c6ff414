"""LE-ODE / LE-SDE (Zhang, Wang & Su 2021): the drift against the authors' discrete simulator,
the ODE against its matrix exponential, the exact mean-margin law m(t) = m(0) e^{(alpha-beta)t/K}
on both sides of the alpha = beta transition, collapse in the separating regime, and the SDE's
mean, noise linearity and within-class diffusion."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import expm

from gflow import plots, results, simulation, theory
from gflow.batch import noise_keys, observer
from gflow.dynamics import STATUS, gradient_flow
from gflow.dynamics.stochastic import noisy_gradient_flow
from gflow.models import locally_elastic


def authors_unit_step(means, a, b):
    """One step of fwd_euler from github.com/zjiayao/le_sde (src/utils.py), for K classes:
    y_c <- y_c + (a P_c y_c + b sum_{c' != c} P_{c'} y_{c'}) / K, P_c the projection on e_c - 1/K.
    Transcribed in NumPy, independently of gflow."""
    K = len(means)
    U = np.eye(K) - 1.0 / K
    proj = [np.outer(U[c], U[c]) / (U[c] @ U[c]) @ means[c] for c in range(K)]
    return np.array(
        [
            means[c] + (a * proj[c] + b * sum(proj[o] for o in range(K) if o != c)) / K
            for c in range(K)
        ]
    )


def test_drift_is_the_authors_simulator_in_continuous_time(rng):
    K, n, a, b = 3, 4, 1.3, 0.4
    model = locally_elastic(K, n, alpha=a, beta=b, dtype=jnp.float64)
    X = rng.normal(size=(K * n, K))
    step = X + np.asarray(model.drift({"X": jnp.asarray(X)})["X"])  # Euler step, dt = 1
    means = X.reshape(K, n, K).mean(axis=1)
    np.testing.assert_allclose(
        step.reshape(K, n, K).mean(axis=1), authors_unit_step(means, a, b), rtol=1e-13, atol=1e-14
    )
    # every sample of a class moves alike: within-class deviations are untouched
    np.testing.assert_allclose(
        step - step.reshape(K, n, K).mean(1).repeat(n, 0), X - means.repeat(n, 0), atol=1e-13
    )


def linear_operator(K, n, a, b):
    """The LE-ODE as one (N K, N K) matrix, built from the formula sample by sample."""
    U = np.eye(K) - 1.0 / K
    E = np.where(np.eye(K, dtype=bool), a, b)
    A = np.zeros((K * n * K, K * n * K))
    for c in range(K):
        for i in range(n):
            for o in range(K):
                block = E[c, o] / K * np.outer(U[o], U[o]) / (U[o] @ U[o]) / n
                for j in range(n):
                    r, s = (c * n + i) * K, (o * n + j) * K
                    A[r : r + K, s : s + K] = block
    return A


def test_ode_solution_is_the_matrix_exponential(rng):
    K, n, a, b = 3, 2, 1.0, 0.6
    model = locally_elastic(K, n, alpha=a, beta=b, dtype=jnp.float64)
    X0 = rng.normal(size=(K * n, K))
    ts = np.array([0.0, 1.0, 3.0, 6.0])
    traj = gradient_flow(
        model.loss, {"X": jnp.asarray(X0)}, ts, lambda p: {"loss": model.loss(p), "X": p["X"]},
        rtol=1e-12, atol=1e-14, drift=model.drift,
    )  # fmt: skip
    A = linear_operator(K, n, a, b)
    exact = np.stack([(expm(t * A) @ X0.reshape(-1)).reshape(K * n, K) for t in ts])
    np.testing.assert_allclose(traj.observed["X"], exact, rtol=1e-9, atol=1e-11)


TRANSITION_ALPHAS = np.array([0.6, 1.0, 1.4])  # beta = 1: below, at and above the transition


@pytest.fixture(scope="module")
def transition_runs():
    """K = 4, beta = 1, one init per alpha (vmapped over alpha), flow to t = 40."""
    K, n, beta, ts = 4, 5, 1.0, np.linspace(0.0, 40.0, 9)

    def solve(alpha):
        model = locally_elastic(K, n, alpha=alpha, beta=beta, dtype=jnp.float64)
        X0 = model.init(jax.random.PRNGKey(0))
        return gradient_flow(
            model.loss, X0, ts, observer(model), rtol=1e-11, atol=1e-12, drift=model.drift
        )

    return K, beta, ts, jax.jit(jax.vmap(solve))(jnp.asarray(TRANSITION_ALPHAS))


def test_mean_margin_law_on_both_sides_of_the_transition(transition_runs):
    K, beta, ts, traj = transition_runs
    m = np.asarray(traj.observed["mean_margin"])  # (alpha, time)
    law = m[:, :1] * np.exp(np.outer(TRANSITION_ALPHAS - beta, ts) / K)
    np.testing.assert_allclose(m, law, rtol=1e-8)
    assert m[0, -1] < 0.02 * m[0, 0] and m[2, -1] > 50 * m[2, 0]  # decays / grows
    np.testing.assert_allclose(m[1], m[1, 0], rtol=1e-9)  # alpha = beta: conserved


def test_below_the_transition_the_loss_never_vanishes(transition_runs):
    """Jensen: mean CE >= softplus(-mean margin) -> log 2 as the mean margin decays to 0."""
    _, _, _, traj = transition_runs
    loss = np.asarray(traj.observed["loss"])[0]
    bound = np.logaddexp(0.0, -np.asarray(traj.observed["mean_margin"])[0])
    assert np.all(loss >= bound - 1e-12)
    assert loss[-1] > 0.98 * np.log(2.0)


def test_class_margins_follow_the_closed_form_spectrum():
    """Per-class mean margins y(t) = expm(t M) y(0), M = (alpha I - beta/(K-1)(11^T - I))/K;
    M's eigenvalues are (alpha - beta)/K on 1 and (alpha + beta/(K-1))/K on its complement."""
    K, n, a, b = 4, 3, 0.8, 0.5
    model = locally_elastic(K, n, alpha=a, beta=b, init_scale=0.5, dtype=jnp.float64)
    X0 = model.init(jax.random.PRNGKey(3))
    onehot = np.eye(K)[np.asarray(model.labels)]

    def class_margins(p):
        X = p["X"]
        own = jnp.sum(X * onehot, axis=1, keepdims=True)
        per_sample = jnp.sum(own - X, axis=1) / (K - 1)
        return {"loss": model.loss(p), "y": jnp.asarray(onehot.T) @ per_sample / n}

    ts = np.array([0.0, 2.0, 5.0])
    traj = gradient_flow(
        model.loss, X0, ts, class_margins, rtol=1e-12, atol=1e-14, drift=model.drift
    )
    M = (a * np.eye(K) - b / (K - 1) * (np.ones((K, K)) - np.eye(K))) / K
    y0 = np.asarray(traj.observed["y"][0])
    exact = np.stack([expm(t * M) @ y0 for t in ts])
    np.testing.assert_allclose(traj.observed["y"], exact, rtol=1e-9)
    np.testing.assert_allclose(
        np.sort(np.linalg.eigvalsh(M)), [(a - b) / K] + [(a + b / (K - 1)) / K] * (K - 1)
    )
    assert theory.le_margin_rate(K, a, b) == pytest.approx((a - b) / K, rel=1e-15)
    assert theory.le_contrast_rate(K, a, b) == pytest.approx((a + b / (K - 1)) / K, rel=1e-15)


def test_separating_regime_collapses(tmp_path):
    """alpha >> beta: every margin grows, the loss vanishes, within-class spread stays fixed while
    the class means separate, so NC1 falls monotonically towards 0 (through gflow.simulate)."""
    ds = simulation.simulate(
        {
            "model": {"name": "le-ode", "classes": 4, "per_class": 6, "alpha": 1.0, "beta": 0.1},
            "dynamics": {"t1": 40.0, "saves": 12, "save_spacing": "linear"},
            "init": {"count": 4, "seed": 1},
            "run": {"precision": "float64"},
        }
    )
    assert set(ds.status.values) == {"ok"}
    assert (ds.margin > 0).all()  # min margin over samples and rival classes, all times
    assert float(ds.loss.isel(time=-1).max()) < 1e-12
    within = ds.within_variance.values
    np.testing.assert_allclose(within, within[:, :1] * np.ones_like(within), rtol=1e-8)
    nc1 = ds.nc1.values
    assert np.all(np.diff(nc1, axis=1) < 0) and nc1[:, -1].max() < 1e-6
    assert (ds.between_variance.isel(time=-1) > 1e6 * ds.between_variance.isel(time=0)).all()
    assert ds.attrs["theory_margin_rate"] == pytest.approx(0.9 / 4)
    assert "mean margin / m(0)e^(rate t)" in results.summary(ds)
    names = {p.name for p in plots.save_figures(ds, tmp_path)}
    assert {"elastic.png", "elastic.pdf", "trajectories.png"} <= names


SDE = dict(alpha=1.0, beta=0.3, init_scale=0.2)


SDE_TS = np.array([0.0, 1.0, 2.0])


@jax.jit
def _sde_batch(X0, keys, noise):
    """LE-SDE paths from X0, one per key, to t = 2 (dt = 0.01); noise is traced: one compile."""
    model = locally_elastic(3, 4, dtype=jnp.float64, name="le-sde", **SDE)
    solve = lambda p, k: noisy_gradient_flow(  # noqa: E731
        model.loss, p, SDE_TS, observer(model), k, noise=noise, dt0=0.01, drift=model.drift
    )
    return jax.vmap(solve, in_axes=(None, 0))(X0, keys)


def sde_runs(noise, count, seed=0):
    X0 = locally_elastic(3, 4, dtype=jnp.float64, **SDE).init(jax.random.PRNGKey(7))
    return _sde_batch(X0, noise_keys(seed, count), jnp.asarray(noise, jnp.float64))


def test_sde_noise_enters_linearly_and_vanishes_in_the_limit():
    """Additive noise on a linear drift: X_sigma - X_0 = sigma Z on each Brownian path, and with
    sigma = 0 the Euler-Maruyama path is the Euler solution of the LE-ODE."""
    quiet, small, large = (sde_runs(s, 3) for s in (0.0, 1e-4, 1e-1))
    dev_small = (np.asarray(small.final["X"]) - np.asarray(quiet.final["X"])) / 1e-4
    dev_large = (np.asarray(large.final["X"]) - np.asarray(quiet.final["X"])) / 1e-1
    np.testing.assert_allclose(dev_small, dev_large, rtol=1e-6, atol=1e-8)
    assert np.abs(dev_large).max() > 0.1  # the noise is really there
    model = locally_elastic(3, 4, dtype=jnp.float64, **SDE)
    ode = gradient_flow(
        model.loss, model.init(jax.random.PRNGKey(7)), SDE_TS,
        observer(model), solver="euler", dt0=0.01, drift=model.drift,
    )  # fmt: skip
    np.testing.assert_allclose(quiet.final["X"][0], ode.final["X"], rtol=1e-12, atol=1e-13)


def test_sde_mean_is_the_ode_and_within_class_variance_diffuses():
    """E X_t = the noiseless solution; within-class variance gains sigma^2 t K (1 - 1/n)."""
    sigma, count, K, n = 0.2, 400, 3, 4
    noisy, quiet = sde_runs(sigma, count), sde_runs(0.0, 3)
    assert set(STATUS[s] for s in np.asarray(noisy.status)) == {"ok"}
    X = np.asarray(noisy.final["X"])  # (count, N, K) at t = 2
    standard_error = X.std(axis=0) / np.sqrt(count)
    assert np.all(np.abs(X.mean(axis=0) - np.asarray(quiet.final["X"][0])) < 5 * standard_error)
    gain = np.asarray(noisy.observed["within_variance"]) - np.asarray(
        quiet.observed["within_variance"][0]
    )
    expected = sigma**2 * SDE_TS * K * (1 - 1 / n)
    np.testing.assert_allclose(gain.mean(axis=0), expected, rtol=0.1, atol=1e-12)
