"""``init.from`` reads every model's parameters by the names of its layout (the parameter
pytree's keys, from ``jax.eval_shape(model.init)``): a file written from a model's own initial
parameters loads back to the same pytree, and a wrong name or shape is refused in one line."""

from pathlib import Path

import jax
import numpy as np
import pytest

from gflow import simulation
from gflow.config import ConfigError
from gflow.models.base import named_leaves

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.toml"))


def _flat(params) -> dict[str, np.ndarray]:
    return {name: np.asarray(leaf) for name, leaf in named_leaves(params).items()}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_every_model_loads_its_own_layout(config, tmp_path):
    cfg = simulation.as_config(config).replace(init={"count": 2})
    model, params = simulation.prepare(cfg)
    layout = simulation.parameter_layout(model)
    assert layout == {name: a.shape[1:] for name, a in _flat(params).items()}
    np.savez(tmp_path / "start.npz", **_flat(params))
    loaded = simulation.load_initial_params(tmp_path / "start.npz", model, 2, model.dtype)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_missing_or_misshapen_array_is_named(tmp_path):
    cfg = simulation.as_config(CONFIGS[0].parent / "extended-ufm.toml").replace(init={"count": 2})
    model, params = simulation.prepare(cfg)
    arrays = _flat(params)
    np.savez(tmp_path / "a.npz", **{k: v for k, v in arrays.items() if k != "W1"})
    with pytest.raises(
        ConfigError, match=r"^init\.from: .* has no array 'W1' \(needs H1, W1, W2\)$"
    ):
        simulation.load_initial_params(tmp_path / "a.npz", model, 2, model.dtype)
    np.savez(tmp_path / "b.npz", **{**arrays, "W2": arrays["W2"][:, :1]})
    with pytest.raises(ConfigError, match=r"^init\.from: array W2 has shape"):
        simulation.load_initial_params(tmp_path / "b.npz", model, 2, model.dtype)
