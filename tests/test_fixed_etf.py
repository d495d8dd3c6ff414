"""Fixed ETF classifier (Zhu et al. 2021): W frozen at a scaled simplex ETF, only H and b learn;
the flow ends at the closed-form optimum restricted to that W."""

import jax.numpy as jnp
import numpy as np
import pytest

from gflow import theory
from gflow.batch import init_batch, run_batch
from gflow.config import DynamicsConfig, from_dict
from gflow.models import from_config


@pytest.mark.parametrize("K, d, norm", [(4, 3, 1.5), (5, 8, 0.7)], ids=["d-eq-K-1", "wide"])
def test_fixed_etf_reaches_the_restricted_optimum(K, d, norm):
    cfg = from_dict({"model": {"name": "ufm-ce", "classes": K, "dim": d, "per_class": 3,
                               "classifier": "fixed-etf", "classifier_norm": norm}})  # fmt: skip
    model = from_config(cfg.model, dtype=jnp.float64)
    params0 = init_batch(model, seed=0, count=3)
    assert set(params0) == {"H", "b"}  # W is not a parameter
    traj = run_batch(model, DynamicsConfig(t1=12_000.0, rtol=1e-10, atol=1e-12, saves=5), params0)
    opt = theory.ufm_ce_fixed_etf_optimum(K, 3, 5e-3, norm)
    W = norm * theory.simplex_etf(K, d)
    assert np.all(np.asarray(traj.status) == 0)
    np.testing.assert_allclose(
        np.asarray(traj.observed["H_norm_sq"])[:, -1], opt.H_norm_sq, rtol=1e-8
    )
    np.testing.assert_allclose(np.asarray(traj.observed["loss"])[:, -1], opt.loss, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(traj.observed["W_norm_sq"]), K * norm**2)  # frozen
    for H in np.asarray(traj.final["H"]):
        np.testing.assert_allclose(H, opt.t * W[model.labels], atol=1e-7)
    assert np.max(np.asarray(traj.observed["nc1"])[:, -1]) < 1e-12
    assert np.max(np.asarray(traj.observed["nc3"])[:, -1]) < 1e-8


def test_fixed_etf_needs_k_minus_1_dims():
    from gflow.config import ConfigError

    with pytest.raises(ConfigError, match=r"^model\.dim: a fixed simplex ETF of 4 classes"):
        from_dict({"model": {"classes": 4, "dim": 2, "classifier": "fixed-etf"}})
    with pytest.raises(ConfigError, match=r"^model\.classifier: unknown value 'frozen'"):
        from_dict({"model": {"classifier": "frozen"}})
    with pytest.raises(ConfigError, match=r"^model\.classifier_norm: must be > 0"):
        from_dict({"model": {"classifier": "fixed-etf", "classifier_norm": 0.0}})
