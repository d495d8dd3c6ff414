"""Networks ending in >= 2 linear layers with weight decay (Jacot et al.): balancedness, training
error and NC1 along training, with and without weight decay."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow.batch import init_batch, run_batch, save_grid
from gflow.config import ConfigError, DynamicsConfig, from_dict
from gflow.models import deep_linear, from_config, wide_net
from gflow.models.networks import load_dataset


def test_deep_linear_balancedness_decays_exactly():
    """Under gradient flow, D = V_{l+1}^T V_{l+1} - V_l V_l^T obeys dD/dt = -2 lam_W D exactly
    (the loss terms cancel between consecutive linear layers), so ||D(t)|| = ||D(0)|| e^{-2 lam t}."""
    wd = 5e-3
    model = deep_linear(4, 6, 3, depth=3, wd_W=wd, wd_H=5e-3, dtype=jnp.float64)
    dyn = DynamicsConfig(t1=400.0, rtol=1e-10, atol=1e-12, saves=6, save_spacing="linear")
    traj = run_batch(model, dyn, init_batch(model, seed=0, count=3))
    balance = np.asarray(traj.observed["balancedness"])
    expected = balance[:, :1] * np.exp(-2 * wd * save_grid(dyn))
    np.testing.assert_allclose(balance, expected, rtol=1e-7)


def test_wide_net_loss_is_the_formula():
    model = wide_net(3, 4, width=5, depth=2, wd_W=0.1, dtype=jnp.float64)
    p = jax.tree.map(np.asarray, model.init(jax.random.PRNGKey(0)))
    X = load_dataset("digits", 3, 4)
    A = np.maximum(X @ p["W0"].T + p["b0"], 0)
    V1, V2 = p["linear"]
    out = A @ V1.T @ V2.T
    expected = 0.5 * np.sum((out - np.eye(3)[model.labels]) ** 2) / 12
    expected += 0.05 * (np.sum(V1**2) + np.sum(V2**2) + np.sum(p["W0"] ** 2))
    assert float(model.loss(p)) == pytest.approx(expected, rel=1e-12)
    W, H, b, labels = model.readout(p)
    np.testing.assert_allclose(H, A @ V1.T, rtol=1e-12)  # penultimate features


@pytest.fixture(scope="module")
def digits_runs():
    """Digits, 10 classes x 10 samples, ReLU width 64, two linear layers, GD lr 0.1, float32,
    12,000 steps (~4 s per run here: about 5 Mflop per init and step). Measured NC1 at the end:
    3.7-4.6e-3 with weight decay, 0.044-0.11 without."""
    dyn = DynamicsConfig(kind="gd", lr=0.1, steps=12_000, saves=10)
    out = {}
    for wd in (2e-3, 0.0):
        model = wide_net(10, 10, width=64, depth=2, wd_W=wd)
        out[wd] = run_batch(model, dyn, init_batch(model, seed=0, count=3))
    return out


def test_weight_decay_gives_collapse_with_low_error_and_balance(digits_runs):
    traj = digits_runs[2e-3]
    assert np.all(np.asarray(traj.status) == 0)
    obs = {k: np.asarray(v) for k, v in traj.observed.items()}
    assert np.all(obs["train_error"][:, -1] == 0)
    assert np.all(obs["balancedness"][:, -1] < 0.1 * obs["balancedness"][:, 0])
    assert np.all(obs["nc1"][:, -1] < 1e-2)  # measured 3.7-4.6e-3
    assert np.all(obs["condition_number"][:, -1] < 10)  # bounded conditioning
    # NC1 falls together with the two quantities that bound it (training MSE, balancedness):
    # past the first steps, each later save has smaller NC1 and a smaller bound
    late = slice(3, None)
    bound = obs["train_mse"] + obs["balancedness"]
    assert np.all(np.diff(obs["nc1"][:, late], axis=1) < 0)
    assert np.all(np.diff(bound[:, late], axis=1) < 0)


def test_without_weight_decay_collapse_stalls(digits_runs):
    with_wd, without = (np.asarray(digits_runs[w].observed["nc1"])[:, -1] for w in (2e-3, 0.0))
    assert np.all(np.asarray(digits_runs[0.0].observed["train_error"])[:, -1] == 0)
    assert np.min(without) > 5 * np.max(with_wd)  # measured 0.044-0.11 vs 3.7-4.6e-3
    # balancedness is conserved by gradient flow without weight decay; GD keeps it near its start
    balance = np.asarray(digits_runs[0.0].observed["balancedness"])
    np.testing.assert_allclose(balance[:, -1], balance[:, 0], rtol=0.05)


def test_network_config_errors():
    with pytest.raises(ConfigError, match=r"^model\.depth: must be >= 2, got 1"):
        from_dict({"model": {"name": "deep-linear", "depth": 1}})
    with pytest.raises(ConfigError, match=r"^model\.dataset: unknown value 'mnist'; valid: digits"):
        from_dict({"model": {"name": "wide-net", "classes": 10, "dataset": "mnist"}})
    with pytest.raises(ConfigError, match=r"^model\.classes: digits has 10 classes, got 12"):
        from_dict({"model": {"name": "wide-net", "classes": 12}})
    with pytest.raises(ConfigError, match=r"^model\.per_class: digits needs one count <= 174"):
        from_dict({"model": {"name": "wide-net", "classes": 10, "per_class": 500}})
    with pytest.raises(ConfigError, match=r"^model\.width: must be >= 1, got 0"):
        from_dict({"model": {"name": "wide-net", "width": 0}})
    cfg = from_dict({"model": {"name": "wide-net", "classes": 3, "per_class": 4, "width": 8}})
    assert from_config(cfg.model).dim == 8
