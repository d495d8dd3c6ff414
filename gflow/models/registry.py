"""The models gflow knows, one line each: ``model.name`` -> its :class:`ModelSpec`.

Adding a model: its module (the Module, a constructor, a ``ModelSpec``), one line here, its
paper test and an example config. Config parsing and validation, results' theory attributes
and the README's option tables follow from the declaration.
"""

from __future__ import annotations

from gflow.models import (
    deep,
    elastic,
    extended,
    losses,
    networks,
    regression,
    sphere,
    supcon,
    ufm,
    ulpm,
)
from gflow.models.options import ModelSpec, Option

SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ufm.UFM_CE,
        ufm.UFM_MSE,
        ulpm.SPEC,
        extended.SPEC,
        networks.DEEP_LINEAR,
        networks.WIDE_NET,
        deep.SPEC,
        elastic.LE_ODE,
        elastic.LE_SDE,
        sphere.SPEC,
        regression.SPEC,
        losses.LS,
        losses.FOCAL,
        supcon.SPEC,
    )
}
MODEL_NAMES = tuple(SPECS)


def spec(name: str) -> ModelSpec:
    """The declaration of a model.

    Args:
        name: a name of :data:`MODEL_NAMES`.

    Returns:
        Its :class:`gflow.models.options.ModelSpec`.

    Raises:
        KeyError: an unknown name.
    """
    return SPECS[name]


def all_options() -> dict[str, Option]:
    """Every option of every model, for the flat ``[model]`` section.

    Returns:
        ``{name: Option}`` in the order of first declaration: the first model that declares an
        option gives its default and range.
    """
    options: dict[str, Option] = {}
    for s in SPECS.values():
        for o in s.options:
            options.setdefault(o.name, o)
    return options


def models_with(option: str) -> tuple[str, ...]:
    """The models that have an option.

    Args:
        option: the option's name.

    Returns:
        The names of the models that declare it.
    """
    return tuple(name for name, s in SPECS.items() if s.option(option) is not None)
