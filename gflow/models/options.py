"""How a model describes itself: its ``[model]`` options and what it knows about its flow.

Each model module declares a :class:`ModelSpec` once: its options (name, type, default, valid
range, one-line doc, and whether the option fixes the program's structure or is a hyperparameter,
a 0-d array leaf of the model pytree), the values it pins (a model without a bias pins
``bias = false``), the dynamics kinds it runs with, its target geometry and closed form where a
paper gives one. The registry (:mod:`gflow.models.registry`) holds one line per model; config
parsing and validation, results' theory attributes and the README's config tables are derived
from these declarations. Nothing here imports :mod:`gflow.config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

STRUCTURE, HYPER = "structure", "hyperparameter"


class OptionError(ValueError):
    """A bad option value; ``str(err)`` is one line naming the field and what is valid."""


def _number(value: float) -> str:
    return f"{value:g}"


@dataclasses.dataclass(frozen=True)
class Option:
    """One ``[model]`` option, declared once and shared by the models that have it.

    Attributes:
        name: the TOML key (and the model constructor's keyword).
        type: the TOML type as a Python annotation string ("int", "float", "bool", "str",
            "int | tuple[int, ...]").
        default: the value where the config leaves it out.
        doc: one line for the generated config reference.
        role: :data:`STRUCTURE` (fixes the compiled program) or :data:`HYPER` (a traced 0-d
            leaf of the model).
        low: the range: value >= low; None: no bound.
        above: the range: value > above; None: no bound.
        nonzero: the reason the value must be nonzero; None: zero allowed.
        choices: the valid strings; None: any.
        bad: a value outside the range, for the generated table of bad inputs.
    """

    name: str
    type: str
    default: Any
    doc: str
    role: str = HYPER
    low: float | None = None
    above: float | None = None
    nonzero: str | None = None  # must be nonzero, because ...
    choices: tuple[str, ...] | None = None
    bad: Any = None

    @property
    def structural(self) -> bool:
        """Whether the option fixes the compiled program (role :data:`STRUCTURE`)."""
        return self.role == STRUCTURE

    def check(self, field: str, value: Any) -> None:
        """Check a value against this option's range.

        Args:
            field: the name the message gives (``model.wd_W``).
            value: the value; each entry of a tuple is checked.

        Raises:
            OptionError: ``value`` is outside the range.
        """
        if self.choices is not None and value not in self.choices:
            raise OptionError(f"{field}: unknown value {value!r}; valid: {', '.join(self.choices)}")
        values = value if isinstance(value, tuple) else (value,)
        for k, v in enumerate(values):
            where = f"{field}[{k}]" if isinstance(value, tuple) else field
            if self.low is not None and v < self.low:
                raise OptionError(f"{where}: must be >= {_number(self.low)}, got {_number(v)}")
            if self.above is not None and not v > self.above:
                raise OptionError(f"{where}: must be > {_number(self.above)}, got {_number(v)}")
            if self.nonzero and v == 0:
                raise OptionError(f"{where}: must be nonzero ({self.nonzero})")

    def range_text(self) -> str:
        """The valid range in words, e.g. ">= 2", "learned | fixed-etf"."""
        if self.choices is not None:
            return " | ".join(self.choices)
        parts = [f">= {_number(self.low)}"] if self.low is not None else []
        parts += [f"> {_number(self.above)}"] if self.above is not None else []
        parts += ["nonzero"] if self.nonzero else []
        return ", ".join(parts)

    def with_default(self, default: Any) -> Option:
        """The same option with another default (a model's own)."""
        return dataclasses.replace(self, default=default)


# options shared by the models (a model may declare them with its own default)
CLASSES = Option("classes", "int", 4, "K, the number of classes", STRUCTURE, low=2, bad=1)
DIM = Option("dim", "int", 8, "d, the free-feature dimension", STRUCTURE, low=1, bad=0)
PER_CLASS = Option(
    "per_class", "int | tuple[int, ...]", 5,
    "n, samples per class, or a list of K counts (imbalanced)", STRUCTURE, low=1, bad=0,
)  # fmt: skip
WD_W = Option("wd_W", "float", 5e-3, "weight decay of the classifier W", low=0.0, bad=-0.001)
# the metrics that vanish at a simplex ETF (with NC4: nearest-class-mean = the classifier), and
# at an orthogonal frame with the classifier aligned to the raw class means (MSE, no bias)
ETF_METRICS = ("nc1", "nc2", "nc3", "nc4")
ORTHOGONAL_METRICS = ("nc1", "orthogonal_classifier", "nc3_uncentred", "nc4")
NO_BIAS = {"bias": False, "wd_b": 0.0}  # what a model without a bias pins
# imbalanced classes collapse (NC1) without forming an ETF or an equal-norm orthogonal frame
IMBALANCED_METRICS = ("nc1",)


def imbalanced(options: Mapping[str, Any]) -> bool:
    """Whether the classes are imbalanced.

    Args:
        options: a model's options by name (``per_class``).

    Returns:
        True when ``per_class`` lists counts that differ.
    """
    counts = options["per_class"]
    return not isinstance(counts, int) and len(set(counts)) > 1


WD_H = Option("wd_H", "float", 5e-3, "weight decay of the features H", low=0.0, bad=-1.0)
# the kinds of a model whose loss is a mean over samples (it defines ``weighted_loss``): also
# mini-batch SGD
MINIBATCH_KINDS = ("flow", "gd", "sde", "sgd")


def class_sample_count(options: Mapping[str, Any]) -> int:
    """N, the samples of all classes.

    Args:
        options: a model's options by name (``classes``, ``per_class``).

    Returns:
        The sum of the per-class counts (``per_class`` for each of ``classes``, or the list).
    """
    counts = options["per_class"]
    return counts * options["classes"] if isinstance(counts, int) else sum(counts)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything gflow knows about one model, declared in the model's own module.

    Attributes:
        name: the model's name in configs (``model.name``).
        summary: one line for the models table.
        options: the model's options (:class:`Option`), in order.
        build: ``build(init_scale=, dtype=, **options)`` returns the model pytree (one keyword
            per option).
        kinds: the dynamics kinds it runs with; "sgd" (:data:`MINIBATCH_KINDS`) only where the
            model defines ``weighted_loss``.
        pinned: config fields the model fixes (not options; a TOML may only repeat the value).
        features_are_logits: ``dim`` equals ``classes`` (and defaults to it).
        gradient_system: the flow is -grad loss (False: the model's own drift, no Hessian, no
            reparametrized clock).
        loss_tends_to_zero: ``loss_tends_to_zero(options)``: the loss clock (reparam "loss")
            applies.
        check: ``check(options)``: checks across options (raise :class:`OptionError`).
        closed_form: ``closed_form(options, counts)``: the theory attributes of a results file
            (``theory_*``), {} where no closed form applies.
        geometry: ``geometry(options)``: the target geometry in words.
        targets: ``targets(options)``: the saved metrics that vanish at the target geometry
            (the summary and :func:`gflow.results.collapsed` judge an init by them; NC1-NC4 for
            a simplex ETF).
        gram: ``gram(options, counts)``: (name, K x K Gram of the classifier rows at the
            target) where it is not the simplex ETF's or an orthogonal frame's (which the
            targets imply), e.g. SELI.
        dynamics_defaults: defaults of ``[dynamics]`` fields for this model.
        num_samples: ``num_samples(options)``: N, the range of ``batch_size``.
    """

    name: str
    summary: str
    options: tuple[Option, ...]
    build: Callable[..., Any]
    kinds: tuple[str, ...] = ("flow", "gd", "sde")
    pinned: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    features_are_logits: bool = False
    gradient_system: bool = True
    loss_tends_to_zero: Callable[[Mapping[str, Any]], bool] | None = None
    check: Callable[[Mapping[str, Any]], None] | None = None
    closed_form: Callable[[Mapping[str, Any], tuple[int, ...]], dict] | None = None
    geometry: Callable[[Mapping[str, Any]], str] | None = None
    targets: Callable[[Mapping[str, Any]], tuple[str, ...]] = lambda o: ETF_METRICS
    gram: Callable[[Mapping[str, Any], tuple[int, ...]], tuple[str, Any] | None] | None = None
    dynamics_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    num_samples: Callable[[Mapping[str, Any]], int] = class_sample_count

    def option(self, name: str) -> Option | None:
        """The model's option ``name``, or None where it has none."""
        return next((o for o in self.options if o.name == name), None)

    @property
    def defaults(self) -> dict[str, Any]:
        """The model's own defaults of every field it sets: its options and pinned values."""
        return {**{o.name: o.default for o in self.options}, **self.pinned}

    def structure(self) -> tuple[str, ...]:
        """The names of the structural options (they fix the compiled program)."""
        return tuple(o.name for o in self.options if o.structural)

    def hyperparameters(self) -> tuple[str, ...]:
        """The names of the hyperparameter options (traced leaves of the model)."""
        return tuple(o.name for o in self.options if not o.structural)

    def values(self, source: Any) -> dict[str, Any]:
        """This model's options read off a config.

        Args:
            source: a ``[model]`` section, or a mapping by option name.

        Returns:
            ``{option name: value}``.
        """
        get = source.get if isinstance(source, Mapping) else lambda k: getattr(source, k)
        return {o.name: get(o.name) for o in self.options}

    def make(self, source: Any, init_scale: float, dtype) -> Any:
        """The model pytree for the options in ``source``.

        Args:
            source: a ``[model]`` section, or a mapping by option name.
            init_scale: the scale of the initial parameters (``init.scale``).
            dtype: the dtype of parameters and hyperparameters.

        Returns:
            The model (:class:`gflow.models.Model`).
        """
        return self.build(init_scale=init_scale, dtype=dtype, **self.values(source))
