"""Model registry: one constructor per config name (``model.name``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax.numpy as jnp

from gflow.models.base import (
    Model,
    Readout,
    class_labels,
    cross_entropy,
    hyperparameters,
    split_hyperparameters,
    stack_hyperparameters,
)
from gflow.models.elastic import LocallyElastic, le_ode, le_sde, locally_elastic
from gflow.models.extended import ExtendedUFM, extended_ufm
from gflow.models.networks import DeepLinear, WideNet, deep_linear, wide_net
from gflow.models.ufm import UFM, ufm, ufm_ce, ufm_mse
from gflow.models.ulpm import ULPM, ulpm

if TYPE_CHECKING:
    from gflow.config import ModelConfig


def from_config(cfg: ModelConfig, init_scale: float = 0.1, dtype=jnp.float32) -> Model:
    """Build the model a ``[model]`` config section names (any object with its fields)."""
    common = dict(
        classes=cfg.classes, dim=cfg.dim, per_class=cfg.per_class, init_scale=init_scale,
        dtype=dtype,
    )  # fmt: skip
    if cfg.name in ("ufm-ce", "ufm-mse"):
        return ufm(
            **common, loss=cfg.name.removeprefix("ufm-"), wd_W=cfg.wd_W, wd_H=cfg.wd_H,
            wd_b=cfg.wd_b, bias=cfg.bias, classifier=cfg.classifier,
            classifier_norm=cfg.classifier_norm,
        )  # fmt: skip
    if cfg.name == "extended-ufm":
        return extended_ufm(
            **common, hidden=cfg.hidden, wd_W=cfg.wd_W, wd_W1=cfg.wd_W1, wd_H=cfg.wd_H
        )
    if cfg.name == "deep-linear":
        return deep_linear(**common, depth=cfg.depth, wd_W=cfg.wd_W, wd_H=cfg.wd_H)
    if cfg.name == "wide-net":
        common.pop("dim")
        return wide_net(
            **common, width=cfg.width, depth=cfg.depth, wd_W=cfg.wd_W, dataset=cfg.dataset
        )
    if cfg.name in ("le-ode", "le-sde"):
        return locally_elastic(
            cfg.classes, cfg.per_class, alpha=cfg.alpha, beta=cfg.beta,
            init_margin=cfg.init_margin, init_scale=init_scale, dtype=dtype, name=cfg.name,
        )  # fmt: skip
    if cfg.name == "ulpm":
        return ulpm(**common, wd_W=cfg.wd_W, wd_H=cfg.wd_H)
    raise ValueError(f"model.name: unknown model {cfg.name!r}")


__all__ = [
    "DeepLinear",
    "ExtendedUFM",
    "LocallyElastic",
    "Model",
    "UFM",
    "ULPM",
    "WideNet",
    "hyperparameters",
    "split_hyperparameters",
    "stack_hyperparameters",
    "Readout",
    "class_labels",
    "cross_entropy",
    "deep_linear",
    "wide_net",
    "extended_ufm",
    "from_config",
    "le_ode",
    "le_sde",
    "locally_elastic",
    "ufm",
    "ufm_ce",
    "ufm_mse",
    "ulpm",
]
