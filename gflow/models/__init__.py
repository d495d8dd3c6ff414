"""The models: pytrees with pure methods (:mod:`gflow.models.base`), each declared once
(:mod:`gflow.models.options`) and listed in :mod:`gflow.models.registry`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp

from gflow.models import registry
from gflow.models.base import (
    Model,
    Readout,
    class_labels,
    cross_entropy,
    hyperparameters,
    split_hyperparameters,
    stack_hyperparameters,
)
from gflow.models.deep import DeepUFM, deep_ufm
from gflow.models.elastic import LocallyElastic, le_ode, le_sde, locally_elastic
from gflow.models.extended import ExtendedUFM, extended_ufm
from gflow.models.losses import FocalUFM, LabelSmoothingUFM, ufm_focal, ufm_ls
from gflow.models.networks import DeepLinear, WideNet, deep_linear, wide_net
from gflow.models.options import ModelSpec, Option, OptionError
from gflow.models.regression import RegressionUFM, ufm_regression, ufm_regression_with_targets
from gflow.models.sphere import SphereUFM, ufm_sphere
from gflow.models.supcon import SupConUFM, ufm_supcon
from gflow.models.ufm import UFM, ufm, ufm_ce, ufm_mse
from gflow.models.ulpm import ULPM, ulpm

if TYPE_CHECKING:
    from gflow.config import ModelConfig


def from_config(cfg: ModelConfig, init_scale: float = 0.1, dtype=jnp.float32) -> Model:
    """Build the model a ``[model]`` config section names, from the model's declaration in
    :mod:`gflow.models.registry`.

    Args:
        cfg: the ``[model]`` section (any object with its fields).
        init_scale: the scale of the initial parameters (``init.scale``).
        dtype: the dtype of parameters and hyperparameters.

    Returns:
        The model.

    Raises:
        ValueError: an unknown ``cfg.name``.
    """
    if cfg.name not in registry.SPECS:
        raise ValueError(f"model.name: unknown model {cfg.name!r}")
    return registry.spec(cfg.name).make(cfg, init_scale, dtype)


__all__ = [
    "DeepLinear",
    "DeepUFM",
    "ExtendedUFM",
    "FocalUFM",
    "LabelSmoothingUFM",
    "RegressionUFM",
    "SupConUFM",
    "LocallyElastic",
    "Model",
    "ModelSpec",
    "Option",
    "OptionError",
    "UFM",
    "ULPM",
    "SphereUFM",
    "WideNet",
    "hyperparameters",
    "split_hyperparameters",
    "stack_hyperparameters",
    "Readout",
    "class_labels",
    "cross_entropy",
    "deep_linear",
    "deep_ufm",
    "wide_net",
    "extended_ufm",
    "from_config",
    "le_ode",
    "le_sde",
    "registry",
    "locally_elastic",
    "ufm",
    "ufm_ce",
    "ufm_mse",
    "ufm_focal",
    "ufm_ls",
    "ufm_regression",
    "ufm_regression_with_targets",
    "ufm_supcon",
    "ufm_sphere",
    "ulpm",
]
