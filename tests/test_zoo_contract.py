"""Every model name runs through the one pipeline (config -> results.nc) and meets the results
contract, its own observables included, with dims (init, time)."""

import jax
import numpy as np
import pytest
import xarray as xr

from gflow import batch, simulation
from gflow.config import MODEL_NAMES

TINY = {
    "ufm-ce": {"classes": 3, "dim": 3, "per_class": [3, 2, 1]},
    "ufm-mse": {"classes": 3, "dim": 3, "per_class": 2, "classifier": "fixed-etf"},
    "ulpm": {"classes": 3, "dim": 3, "per_class": 2},
    "extended-ufm": {"classes": 3, "dim": 3, "per_class": 2, "hidden": 5},
    "deep-linear": {"classes": 3, "dim": 4, "per_class": 2, "depth": 2},
    "wide-net": {"classes": 3, "per_class": 3, "width": 6, "depth": 2},
    "deep-ufm": {"classes": 3, "dim": 4, "per_class": 2, "depth": 2, "activation": "relu"},
    "le-ode": {"classes": 3, "per_class": 2},
    "le-sde": {"classes": 3, "per_class": 2},
    "ufm-sphere": {"classes": 4, "dim": 2, "per_class": 2},
    "ufm-regression": {"samples": 5, "targets": 2, "dim": 3},
    "ufm-ls": {"classes": 3, "dim": 3, "per_class": [3, 2, 1]},
    "ufm-focal": {"classes": 3, "dim": 3, "per_class": 2},
    "ufm-supcon": {"classes": 3, "dim": 3, "per_class": [3, 2, 2]},
}
DYNAMICS = {  # the LE models follow a drift: an ODE and an SDE instead of gd
    "le-ode": {"kind": "flow", "t1": 2.0, "saves": 4},
    "le-sde": {"kind": "sde", "t1": 1.0, "dt0": 0.01, "noise": 0.01, "saves": 4},
}
EXTRA = {
    "ulpm": ("seli_distance",),
    "extended-ufm": ("nc1_pre", "nc2_pre", "nc1_free"),
    "deep-linear": ("balancedness", "condition_number", "train_error", "train_mse"),
    "wide-net": ("balancedness", "condition_number", "train_error", "train_mse"),
    "deep-ufm": ("nc1_layer1", "nc3_layer0", "sv2_layer1", "class_mean_rank", "balancedness"),
    "le-ode": ("mean_margin", "within_variance", "between_variance"),
    "le-sde": ("mean_margin", "within_variance", "between_variance"),
    "ufm-sphere": ("min_angle", "feature_classifier_cosine", "radius_sq"),
    "ufm-regression": ("nrc1", "nrc2", "nrc3", "train_mse"),
    "ufm-supcon": ("within_cosine", "between_cosine"),
}
# ufm-regression has no classes: its class axis is the m target dimensions and every sample has
# label 0, so NC1-NC4 are undefined there (NC1, NC3 come out NaN); NRC1-NRC3 (EXTRA) judge it
UNDEFINED = {"ufm-regression": ("nc1", "nc2", "nc3", "nc4")}


def test_every_model_name_is_covered():
    assert set(TINY) == set(MODEL_NAMES)


@pytest.mark.parametrize("name", list(TINY))
def test_model_runs_through_the_pipeline(name, tmp_path):
    cfg = {
        "model": {"name": name, **TINY[name]},
        "dynamics": DYNAMICS.get(name, {"kind": "gd", "lr": 0.05, "steps": 50, "saves": 4}),
        "init": {"count": 2, "scale": 0.5},
        "run": {"out": str(tmp_path)},
    }
    _, path = simulation.run(cfg)
    ds = xr.open_dataset(path)
    assert list(ds.status.values) == ["ok", "ok"]
    assert {"init", "time", "class", "feature", "sample"} <= set(ds.sizes)
    for var in ("loss", "nc1", "nc2", "nc3", "nc4", *EXTRA.get(name, ())):
        assert ds[var].dims == ("init", "time"), var
        assert var in UNDEFINED.get(name, ()) or np.all(np.isfinite(ds[var].values)), var
    assert ds.W.dims == ("init", "class", "feature") and ds.H.dims == ("init", "sample", "feature")
    assert ds.sizes["class"] == TINY[name].get("classes", TINY[name].get("targets"))
    # a small GD step lowers every loss; the LE drift (alpha > beta) raises every margin
    assert np.all(np.diff(ds.loss.values, axis=1) < 0)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("name", list(TINY))
def test_compiled_draws_are_the_op_by_op_draws(name, precision):
    """The inits drawn as one compiled program (batch.draw_inits, with per-init scales too)
    have the bits of model.init run one op at a time, as gflow drew them before 0.2.2."""
    cfg = simulation.as_config(
        {
            "model": {"name": name, **TINY[name]},
            "init": {"scale": 0.7},
            "run": {"precision": precision},
        }  # fmt: skip
    )
    model = simulation.build_model(cfg)
    keys = jax.random.split(jax.random.PRNGKey(3), 5)
    eager = jax.vmap(model.init)(keys)
    data, hyper = batch.broadcast_hyperparameters(model, 5)
    for compiled in (batch.draw_inits(model, keys), batch.draw_inits(data, keys, hyper)):
        for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(compiled), strict=True):
            assert a.dtype == b.dtype == np.dtype(precision)
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
