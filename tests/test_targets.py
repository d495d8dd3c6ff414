"""Summaries judge each model by the metrics of its own target geometry: UFM-MSE without a bias
collapses to an orthogonal frame (the classifier aligned with the raw class means), which the
ETF's NC2 would call 0.52 away and "not collapsed"."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from gflow import config, metrics, results, simulation
from gflow.models import registry


def test_targets_follow_the_declared_geometry():
    def targets(section):
        cfg = config.from_dict({"model": section})
        return results.theory_attrs(simulation.build_model(cfg), cfg)["theory_metrics"]

    assert targets({"name": "ufm-ce"}) == "nc1 nc2 nc3 nc4"
    assert targets({"name": "ufm-mse", "bias": False}) == "nc1 orthogonal_classifier " \
        "nc3_uncentred nc4"  # fmt: skip
    assert targets({"name": "ufm-ce", "dim": 3, "classifier": "fixed-etf"}) == "nc1 nc3 nc4"
    # every model's targets are metrics that every run saves, or the model's own observables
    saved = jax.eval_shape(
        lambda W, H, b: metrics.evaluate(W, H, b, jnp.arange(6) % 3, 3),
        jnp.zeros((3, 4)), jnp.zeros((6, 4)), jnp.zeros(3),
    )  # fmt: skip
    for spec in registry.SPECS.values():
        cfg = config.from_dict({"model": {"name": spec.name}})
        model = simulation.build_model(cfg)
        own = {}
        if model.observables is not None:
            own = jax.eval_shape(lambda m=model: m.observables(m.init(jax.random.PRNGKey(0))))
        options = spec.values(cfg.model)
        assert set(spec.targets(options)) <= set(saved) | set(own), spec.name


def test_mse_without_bias_is_judged_against_the_orthogonal_frame():
    cfg = config.from_dict({
        "model": {"name": "ufm-mse", "classes": 3, "dim": 4, "per_class": 2, "bias": False},
        "dynamics": {"t1": 20000.0, "rtol": 1e-10, "atol": 1e-12, "saves": 5,
                     "max_steps": 50000},
        "init": {"count": 2, "seed": 1},
        "run": {"precision": "float64"},
    })  # fmt: skip
    ds = simulation.simulate(cfg)
    last = ds.isel(time=-1)
    assert np.all(last.orthogonal_classifier.values < 1e-8)
    # against the simplex ETF the orthogonal frame stays |I/sqrt(K) - P/sqrt(K-1)| away
    K = 3
    etf_gap = np.linalg.norm(np.eye(K) / math.sqrt(K) - (np.eye(K) - 1 / K) / math.sqrt(K - 1))
    np.testing.assert_allclose(last.nc2.values, etf_gap, rtol=1e-6)
    assert bool(results.collapsed(ds).all())
    text = results.summary(ds)
    assert "collapsed (NC1, orthogonal_classifier, nc3_uncentred < 1e-3, NC4 = 0): 100%" in text
    assert "\nNC2 " not in text and "orthogonal_classifier  0 " in text
