"""Typed simulation config: TOML in, frozen dataclasses out, validated before anything compiles.

Every problem is reported as a :class:`ConfigError` whose one-line message names the field
(``section.key``) and what would be valid. Frozen dataclasses hash by value, so a config can be a
static argument of ``jax.jit`` without retracing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import tomli_w

from gflow.errors import ConfigError  # raised for every bad field; gflow.config.ConfigError
from gflow.models import registry
from gflow.models.options import OptionError

MODEL_NAMES = registry.MODEL_NAMES

DYNAMICS_KINDS = ("flow", "gd", "sde", "sgd")
STEPPED_KINDS = ("gd", "sgd")  # stepped by an optax optimizer: steps, not flow time
PRECISIONS = ("float32", "float64")
REPARAMS = ("none", "log", "loss")
SAVE_SPACINGS = ("log", "linear")
HESSIAN_METHODS = ("none", "dense", "lanczos")


def _model_config() -> type:
    """The flat ``[model]`` section: ``name`` and every option of every model (the first
    declaration gives the default; each model applies its own defaults, see :func:`from_dict`)."""
    fields = [("name", "str", dataclasses.field(default="ufm-ce"))]
    for option in registry.all_options().values():
        fields.append((option.name, option.type, dataclasses.field(default=option.default)))
    cls = dataclasses.make_dataclass("ModelConfig", fields, frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = "The [model] section: the model's name and its options (gflow.models.registry)."
    return cls


ModelConfig = _model_config()


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
    """The ``[dynamics]`` section: which dynamics (flow, gd, sde, sgd), its solver or optimizer,
    its horizon and the saved times; each field's line is in :data:`DOCS`."""

    kind: str = "flow"
    solver: str = "tsit5"
    t1: float = 5000.0
    rtol: float = 1e-8
    atol: float = 1e-10
    dt0: float | None = None
    max_steps: int = 20_000
    reparam: str = "none"
    optimizer: str = "sgd"
    lr: float = 0.5
    steps: int = 20_000
    saves: int = 50
    save_spacing: str = "log"
    noise: float = 0.0  # sde: sigma in d theta = -grad L dt + sigma dW
    batch_size: int | None = None  # sgd: samples per step, 1..N
    stop_grad_tol: float | None = None  # flow: stop an init once ||grad L|| < this (an event)


@dataclasses.dataclass(frozen=True)
class InitConfig:
    """The ``[init]`` section: how many initializations, their seed and scale, or a file to start
    from (TOML key ``from``); each field's line is in :data:`DOCS`."""

    count: int = 16
    seed: int = 0
    scale: float = 0.1
    from_file: str | None = None  # TOML key: `from`


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The ``[run]`` section: precision, output folder, what else to save, and how the inits are
    laid out over memory, devices and processes; each field's line is in :data:`DOCS`."""

    precision: str = "float32"
    matmul_precision: str = "highest"  # accelerators: highest (full float32) | high | default
    out: str = "runs/gflow"
    progress: bool = False
    hessian: str = "none"  # none | dense | lanczos: save the extreme Hessian eigenvalues
    hessian_iters: int = 60  # lanczos steps
    save_geometry: bool = False  # save W and the class means at every saved time (explorer)
    chunk: int = 0  # solve at most this many inits at once (0: all); bounds peak memory
    shard: bool = True  # split the inits of each chunk over all local devices
    vector_width: int = -1  # inits vmapped together per device (-1: by state size on CPU)
    coordinator: str = ""  # multi-process: "" (single), "auto" (SLURM etc.) or "host:port"
    num_processes: int = 1  # with coordinator = "host:port"
    process_id: int = 0  # this process's index, 0 .. num_processes - 1
    connect_timeout: int = 60  # seconds to wait for the other processes to join
    wait_timeout: int = 86400  # process 0 gives up after this many seconds without a new part


# One line of doc per field of [dynamics], [init] and [run] (the [model] options document
# themselves, gflow.models.options); the README's config block is generated from these.
DOCS = {
    "dynamics": {
        "kind": "flow | gd | sde (noisy flow: d theta = -grad L dt + noise dW) | sgd (gd on "
        "shuffled batches of batch_size samples)",
        "solver": "flow: euler heun midpoint ralston bosh3 tsit5 dopri5 dopri8 implicit_euler "
        "kvaerno3 kvaerno4 kvaerno5; sde: euler (Euler-Maruyama, the default) | heun",
        "t1": "flow, sde: final time > 0",
        "rtol": "flow: PID step-size control of adaptive solvers",
        "atol": "flow: absolute tolerance of the step-size control",
        "dt0": "flow, sde: initial (or fixed) step; required for fixed-step solvers and sde",
        "max_steps": "flow, sde: reaching it marks that init max_steps",
        "reparam": "flow: none | log (s = log(1+t)) | loss (u = -log L; ulpm without weight "
        "decay): the same path to t = 1e100 in a few hundred steps",
        "optimizer": "gd, sgd: an optax optimizer built from a learning rate (sgd, adam, ...); "
        "decoupled weight decay off (adamw, lion, ...: the model's loss carries the decay); "
        "noisy_sgd seeded per init",
        "lr": "gd, sgd: learning rate > 0",
        "steps": "gd, sgd: optimizer steps >= 1",
        "saves": "saved points, the first at 0 and the last at the end",
        "save_spacing": "log | linear",
        "noise": "sde: sigma >= 0; each init gets its own Brownian path (seeded)",
        "batch_size": "sgd (required): samples per step, 1..N; each init reshuffles the N "
        "samples every epoch (seeded) and drops the last N mod batch_size",
        "stop_grad_tol": "flow (optional): stop an init once ||grad L|| < tol (a diffrax event); "
        "results record stop_time per init",
    },
    "init": {
        "count": "number of random initializations (the vmapped axis)",
        "seed": "seed of the init keys (and of the Brownian paths)",
        "scale": "entries i.i.d. scale * N(0, 1)",
        "from_file": "optional: an .npz of the parameters by name (the layout of the model, "
        "e.g. H, W, b), with or without a leading init axis, or a results.nc (its initial "
        "parameters); a relative path is from the config file's folder, ~ is expanded",
    },
    "run": {
        "precision": "float32 | float64",
        "matmul_precision": "accelerators: highest (full float32) | high | default (TF32 or "
        "bf16 passes: faster, ~1e-3)",
        "out": "the output folder (results.nc, figures)",
        "progress": "report progress while solving",
        "hessian": "none | dense (<= 4096 parameters) | lanczos: save the extreme Hessian "
        "eigenvalues at every time",
        "hessian_iters": "lanczos steps",
        "save_geometry": "also save W and the class means at every saved time (the explorer)",
        "chunk": "solve at most this many inits at once (0: all); parts saved as they go",
        "shard": "split the inits over all local devices",
        "vector_width": "inits vmapped together per device (-1: by state size on a CPU, all "
        "at once on an accelerator)",
        "coordinator": 'multi-process: "" | "auto" (SLURM etc.) | "host:port"',
        "num_processes": 'with coordinator = "host:port"',
        "process_id": "this process's index, 0 .. num_processes - 1",
        "connect_timeout": "seconds to wait for the other processes to join",
        "wait_timeout": "process 0 gives up after this many seconds without a new part",
    },
}


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole simulation config, frozen and validated (build it with :func:`load`,
    :func:`loads` or :func:`from_dict`); equal configs hash equal.

    Attributes:
        model: ``[model]``: the model's name and its options (:data:`ModelConfig`, the options
            declared in :mod:`gflow.models.registry`).
        dynamics: ``[dynamics]``: flow, gd, sde or sgd and their settings
            (:class:`DynamicsConfig`).
        init: ``[init]``: the initializations (:class:`InitConfig`).
        run: ``[run]``: precision, output and layout (:class:`RunConfig`).
    """

    model: ModelConfig = ModelConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    init: InitConfig = InitConfig()
    run: RunConfig = RunConfig()

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some fields changed, re-validated: ``cfg.replace(run={"out": "x"})``.

        Args:
            **sections: per section name, ``{key: value}`` in the TOML layout.

        Returns:
            The new Config.

        Raises:
            ConfigError: an unknown section, or a changed value is invalid.
        """
        raw = to_dict(self)
        for section, values in sections.items():
            if section not in raw:
                raise ConfigError(f"{section}: unknown section; valid: {', '.join(raw)}")
            raw[section].update(values)
        return from_dict(raw)

    @property
    def num_samples(self) -> int:
        """N, the model's samples in all (the sum of :func:`class_counts`)."""
        return sum(class_counts(self.model))


# model defaults come from each model's declaration (gflow.models.registry); these depend on
# dynamics.kind
_DYNAMICS_DEFAULTS = {"sde": {"solver": "euler"}}

_SECTIONS = {"model": ModelConfig, "dynamics": DynamicsConfig, "init": InitConfig, "run": RunConfig}
_TOML_NAMES = {("init", "from_file"): "from"}  # dataclass field -> TOML key, where they differ


def _toml_key(section: str, field: str) -> str:
    return _TOML_NAMES.get((section, field), field)


def class_counts(model: ModelConfig) -> tuple[int, ...]:
    """Per-class sample counts n_k.

    Args:
        model: the ``[model]`` section (its ``classes`` and ``per_class``).

    Returns:
        The counts, one per class (``per_class`` repeated ``classes`` times, or its list).
    """
    if isinstance(model.per_class, int):
        return (model.per_class,) * model.classes
    return tuple(model.per_class)


# --------------------------------------------------------------------------- parsing


def readable_file(field: str, path: Path, what: str) -> None:
    """Raise a one-line ConfigError unless ``path`` is a file this process can read.

    Args:
        field: the field the message names (``init.from``, ``config``).
        path: the path to check.
        what: what the field wants, for the message ("a TOML config file").

    Raises:
        ConfigError: ``path`` is a folder, missing or unreadable.
    """
    if path.is_dir():
        raise ConfigError(f"{field}: {path} is a folder; give {what}")
    if not path.is_file():
        raise ConfigError(f"{field}: file not found: {path}")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"{field}: {path} cannot be read (permission denied)")


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Command-line assignments applied to a config in the TOML layout.

    Args:
        raw: the config as nested dicts (changed in place).
        overrides: ``section.key=value`` strings; a value is read as TOML (``10``, ``5e-3``,
            ``true``, ``[4, 8]``, ``"x"``), else as a string.

    Returns:
        ``raw``, with the overrides applied.

    Raises:
        ConfigError: an override is not ``section.key=value``, or its section is not a table.
    """
    for given in overrides:
        dotted, sep, text = given.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise ConfigError(f"override: expected section.key=value, got {given!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        target = raw.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{section}: must be a table ([{section}])")
        target[key] = value
    return raw


def load(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read and validate a TOML config file.

    A relative ``init.from`` in it is a path from the config file's folder (``~`` expanded), as
    a config is written beside its start file.

    Args:
        path: the TOML file.
        overrides: ``section.key=value`` strings applied on top (:func:`apply_overrides`); a
            path among them is from the current folder.

    Returns:
        The validated Config.

    Raises:
        ConfigError: the file is unreadable or not TOML, or a field is invalid.
    """
    path = Path(path).expanduser()
    readable_file("config", path, "a TOML config file")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config: {path} is not valid TOML: {err}") from None
    start = raw.get("init", {}).get("from") if isinstance(raw.get("init"), Mapping) else None
    if isinstance(start, str) and start:
        given = Path(start).expanduser()
        raw["init"]["from"] = str(given if given.is_absolute() else path.parent / given)
    return from_dict(apply_overrides(raw, overrides))


def loads(text: str) -> Config:
    """Parse and validate TOML text.

    Args:
        text: a config in TOML.

    Returns:
        The validated Config.

    Raises:
        ConfigError: the text is not TOML, or a field is invalid.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config: not valid TOML: {err}") from None
    return from_dict(raw)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from nested mappings and validate it; omitted fields take the
    model's (and the dynamics kind's) defaults.

    Args:
        raw: ``{section: {key: value}}`` in the TOML layout (``init.from`` under its TOML name).

    Returns:
        The validated Config.

    Raises:
        ConfigError: an unknown section or key, a value of the wrong type, or an invalid field.
    """
    for section in raw:
        if section not in _SECTIONS:
            raise ConfigError(f"{section}: unknown section; valid: {', '.join(_SECTIONS)}")
    sections = {}
    model_name = raw.get("model", {}).get("name") if isinstance(raw.get("model"), Mapping) else None
    for section, cls in _SECTIONS.items():
        values = raw.get(section, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section}: must be a table ([{section}])")
        fields = {_toml_key(section, f.name): f for f in dataclasses.fields(cls)}
        kwargs = {}
        spec = registry.SPECS.get(model_name or "ufm-ce")
        if section == "model" and spec is not None:
            kwargs.update(spec.defaults)
            if spec.features_are_logits:
                kwargs["dim"] = values.get("classes", kwargs["classes"])  # features = logits
        if section == "dynamics":
            kwargs.update(spec.dynamics_defaults if spec is not None else {})
            kind = values.get("kind", kwargs.get("kind"))
            kwargs.update(_DYNAMICS_DEFAULTS.get(kind, {}))
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"{section}.{key}: unknown key; valid: {', '.join(fields)}")
            kwargs[fields[key].name] = _coerce(f"{section}.{key}", value, fields[key].type)
        sections[section] = cls(**kwargs)
    cfg = Config(**sections)
    validate(cfg)
    return cfg


def _coerce(field: str, value: Any, annotation: str) -> Any:
    """Check the TOML value's type against the dataclass annotation (a string here)."""
    kinds = annotation.replace(" ", "").split("|")
    if value is None:
        raise ConfigError(f"{field}: must not be empty")
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
        raise ConfigError(f"{field}: expected {_describe(kinds)}, got a boolean")
    if isinstance(value, int) and "int" in kinds:
        return value
    if isinstance(value, int | float) and any(k.startswith("float") for k in kinds):
        try:
            value = float(value)
        except OverflowError:
            digits = len(str(abs(value)))
            raise ConfigError(
                f"{field}: must be a finite number, got a {digits}-digit integer"
            ) from None
        if not math.isfinite(value):
            raise ConfigError(f"{field}: must be a finite number, got {value}")
        return value
    if isinstance(value, str) and any(k.startswith("str") for k in kinds):
        return value
    if isinstance(value, list) and any(k.startswith("tuple[float") for k in kinds):
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{field}: a list must hold numbers only, got {value}")
        if not all(math.isfinite(v) for v in value):
            raise ConfigError(f"{field}: a list must hold finite numbers, got {value}")
        return tuple(float(v) for v in value)
    if isinstance(value, list) and any(k.startswith("tuple[int") for k in kinds):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{field}: a list must hold integers only, got {value}")
        return tuple(value)
    raise ConfigError(f"{field}: expected {_describe(kinds)}, got {json.dumps(value)}")


def _describe(kinds: list[str]) -> str:
    words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}
    lists = lambda k: "a list of numbers" if k.startswith("tuple[float") else "a list of integers"  # noqa: E731
    out = [words.get(k.split("[")[0], lists(k)) for k in kinds if k != "None"]
    return " or ".join(dict.fromkeys(out))


# --------------------------------------------------------------------------- validation


def _one_of(field: str, value: str, valid: tuple[str, ...] | list[str]) -> None:
    if value not in valid:
        raise ConfigError(f"{field}: unknown value {value!r}; valid: {', '.join(valid)}")


def _at_least(field: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{field}: must be >= {low:g}, got {value:g}")


def _positive(field: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{field}: must be > 0, got {value:g}")


def validate(cfg: Config) -> None:
    """Check every field and their combinations. Pure Python: nothing compiles.

    Args:
        cfg: the config.

    Raises:
        ConfigError: on the first invalid field, naming it and what would be valid.
    """
    from gflow.dynamics.descent import OPTIMIZERS
    from gflow.dynamics.flow import FIXED_STEP_SOLVERS, SOLVERS

    m, d, i, r = cfg.model, cfg.dynamics, cfg.init, cfg.run
    _check_integer_limits(cfg)
    _one_of("model.name", m.name, MODEL_NAMES)
    _check_model(m)
    _one_of("dynamics.kind", d.kind, DYNAMICS_KINDS)
    _check_model_dynamics(m, d, r)
    _one_of("dynamics.solver", d.solver, sorted(SOLVERS))
    _positive("dynamics.t1", d.t1)
    _positive("dynamics.rtol", d.rtol)
    _positive("dynamics.atol", d.atol)
    if d.dt0 is not None:
        _positive("dynamics.dt0", d.dt0)
    if d.kind == "flow" and d.solver in FIXED_STEP_SOLVERS and d.dt0 is None:
        raise ConfigError(f"dynamics.dt0: required by the fixed-step solver {d.solver!r}")
    _at_least("dynamics.noise", d.noise, 0.0)
    if d.kind == "sde":
        from gflow.dynamics.stochastic import SDE_SOLVERS

        _one_of("dynamics.solver", d.solver, sorted(SDE_SOLVERS))
        if d.dt0 is None:
            raise ConfigError('dynamics.dt0: required for kind = "sde" (fixed steps)')
        if d.t1 / d.dt0 > d.max_steps:
            raise ConfigError(
                f"dynamics.max_steps: t1/dt0 = {d.t1 / d.dt0:.0f} steps exceed it ({d.max_steps})"
            )
    _at_least("dynamics.max_steps", d.max_steps, 1)
    _one_of("dynamics.reparam", d.reparam, REPARAMS)
    if d.reparam != "none" and d.kind != "flow":
        raise ConfigError(f'dynamics.reparam: {d.reparam!r} applies to kind = "flow" only')
    if d.stop_grad_tol is not None:
        _positive("dynamics.stop_grad_tol", d.stop_grad_tol)
        if d.kind != "flow" or d.reparam == "loss":
            raise ConfigError(
                'dynamics.stop_grad_tol: applies to kind = "flow" with reparam none or log'
            )
    if d.reparam == "loss":
        spec = registry.spec(m.name)
        if spec.loss_tends_to_zero is None or not spec.loss_tends_to_zero(spec.values(m)):
            which = " or ".join(n for n, s in registry.SPECS.items() if s.loss_tends_to_zero)
            raise ConfigError(
                "dynamics.reparam: 'loss' (u = -log L) needs a loss that tends to 0: "
                f"the {which} without weight decay; use 'log' otherwise"
            )
        if d.solver in FIXED_STEP_SOLVERS:
            raise ConfigError("dynamics.solver: reparam 'loss' needs an adaptive solver")
    _one_of("dynamics.optimizer", d.optimizer, sorted(OPTIMIZERS))
    _positive("dynamics.lr", d.lr)
    _at_least("dynamics.steps", d.steps, 1)
    _at_least("dynamics.saves", d.saves, 2)
    _one_of("dynamics.save_spacing", d.save_spacing, SAVE_SPACINGS)
    if d.kind in STEPPED_KINDS and d.saves > d.steps + 1:
        raise ConfigError(
            f"dynamics.saves: at most steps + 1 = {d.steps + 1} points for {d.kind}, got {d.saves}"
        )
    if d.kind == "sgd":
        _check_batch_size(m, d)

    _check_applies(d)

    _at_least("init.count", i.count, 1)
    _at_least("init.seed", i.seed, 0)
    _at_least("init.scale", i.scale, 0.0)
    if i.from_file is not None:
        readable_file("init.from", Path(i.from_file).expanduser(), "an .npz or results.nc file")

    _one_of("run.precision", r.precision, PRECISIONS)
    _one_of("run.hessian", r.hessian, HESSIAN_METHODS)
    _at_least("run.hessian_iters", r.hessian_iters, 2)
    _one_of("run.matmul_precision", r.matmul_precision, ("highest", "high", "default"))
    if not r.out.strip():
        raise ConfigError("run.out: must name a folder, got an empty string")
    if Path(r.out).is_file():
        raise ConfigError(f"run.out: {r.out} is a file; give a folder (results.nc goes in it)")
    _at_least("run.chunk", r.chunk, 0)
    if r.vector_width == 0 or r.vector_width < -1:
        raise ConfigError(
            f"run.vector_width: must be >= 1, or -1 for the default, got {r.vector_width}"
        )
    root_find = root_finding(d)
    if r.vector_width > 0 and root_find:
        raise ConfigError(
            f"run.vector_width: {root_find} finds roots inside the solve, which runs as one "
            "vmap per device; leave vector_width at -1"
        )
    _at_least("run.num_processes", r.num_processes, 1)
    if not 0 <= r.process_id < r.num_processes:
        raise ConfigError(
            f"run.process_id: must be in 0..{r.num_processes - 1} (num_processes = "
            f"{r.num_processes}), got {r.process_id}"
        )
    _at_least("run.connect_timeout", r.connect_timeout, 1)
    _at_least("run.wait_timeout", r.wait_timeout, 1)
    if r.coordinator not in ("", "auto"):
        host, _, port = r.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f'run.coordinator: expected "host:port", "auto" or "", got {r.coordinator!r}'
            )


# the dynamics kinds each [dynamics] field is read by (reparam and stop_grad_tol: their own
# checks; kind, saves and save_spacing: every kind)
APPLIES_TO = {
    "solver": ("flow", "sde"), "t1": ("flow", "sde"), "rtol": ("flow",), "atol": ("flow",),
    "dt0": ("flow", "sde"), "max_steps": ("flow", "sde"), "optimizer": STEPPED_KINDS,
    "lr": STEPPED_KINDS, "steps": STEPPED_KINDS, "noise": ("sde",), "batch_size": ("sgd",),
}  # fmt: skip


def _check_batch_size(m, d: DynamicsConfig) -> None:
    """``batch_size`` given, and within 1..N of the model (its declaration counts N)."""
    spec = registry.spec(m.name)
    samples = spec.num_samples(spec.values(m))
    if d.batch_size is None:
        raise ConfigError(f'dynamics.batch_size: required for kind = "sgd" (1..{samples})')
    if not 1 <= d.batch_size <= samples:
        raise ConfigError(
            f"dynamics.batch_size: must be in 1..{samples} (the model's samples), got "
            f"{d.batch_size}"
        )


def _check_applies(d: DynamicsConfig) -> None:
    """No silent fields: one that this kind does not read must keep its default."""
    defaults = DynamicsConfig()
    for name, kinds in APPLIES_TO.items():
        if d.kind not in kinds and getattr(d, name) != getattr(defaults, name):
            where = " or ".join(f'"{k}"' for k in kinds)
            raise ConfigError(f'dynamics.{name}: applies to kind = {where}, not "{d.kind}"')


# what the machine represents: sizes, counts and steps are 32-bit in XLA's shapes and loop
# counters; the init seed is a 64-bit signed integer
INT_LIMIT = 2**31 - 1
SEED_LIMIT = 2**63 - 1


def _check_integer_limits(cfg: Config) -> None:
    """Every integer field (and the sample count N) within what the solve can represent."""
    for section, cls in _SECTIONS.items():
        values = getattr(cfg, section)
        for f in dataclasses.fields(cls):
            value = getattr(values, f.name)
            limit = SEED_LIMIT if (section, f.name) == ("init", "seed") else INT_LIMIT
            items = value if isinstance(value, tuple) else (value,)
            if any(isinstance(v, int) and not isinstance(v, bool) and v > limit for v in items):
                key = _toml_key(section, f.name)
                raise ConfigError(f"{section}.{key}: must be <= {limit}, got {max(items)}")
    N = sum(class_counts(cfg.model)) if cfg.model.classes <= INT_LIMIT else INT_LIMIT + 1
    if N > INT_LIMIT:
        raise ConfigError(
            f"model.per_class: {N} samples in all (classes x per_class) exceed {INT_LIMIT}"
        )


def root_finding(d: DynamicsConfig) -> str:
    """What in a flow solves for roots (optimistix Newton inside diffrax). Such solves cannot
    run under shard_map, so not in vectors of inits.

    Args:
        d: the ``[dynamics]`` section.

    Returns:
        The implicit solver or stop event that finds roots, in words; "" when none does.
    """
    from gflow.dynamics.flow import IMPLICIT_SOLVERS

    if d.kind != "flow":
        return ""
    if d.solver in IMPLICIT_SOLVERS:
        return f"the implicit solver {d.solver}"
    if d.stop_grad_tol is not None:
        return "the stop event of stop_grad_tol"
    return "the stop event of reparam = 'loss'" if d.reparam == "loss" else ""


def _check_model(m) -> None:
    """The [model] section against the declarations: every field's range (as its first
    declaration gives it, whatever the model), then what this model has, pins and checks."""
    spec = registry.spec(m.name)
    try:
        for name, option in registry.all_options().items():
            value = getattr(m, name)
            if name == "per_class" and isinstance(value, tuple) and len(value) != m.classes:
                raise ConfigError(
                    f"model.per_class: a list needs one count per class ({m.classes}), "
                    f"got {len(value)}"
                )
            (spec.option(name) or option).check(f"model.{name}", value)
        if spec.features_are_logits and m.dim != m.classes:
            raise ConfigError(
                f"model.dim: {m.name} features are the K logits, so dim must equal classes "
                f"({m.classes}), got {m.dim}"
            )
        for name, option in registry.all_options().items():
            value = getattr(m, name)
            if spec.option(name) is not None or (name == "dim" and spec.features_are_logits):
                continue
            if name in spec.pinned:
                if value != spec.pinned[name]:
                    pinned = _toml_value(spec.pinned[name])
                    what = "no bias" if name == "bias" else f"{name} fixed at {pinned}"
                    raise ConfigError(f"model.{name}: {m.name} has {what}; set {name} = {pinned}")
            elif value != option.default:
                raise ConfigError(
                    f"model.{name}: {m.name} has no option {name}; it applies to "
                    f"{', '.join(registry.models_with(name))}"
                )
        if spec.check is not None:
            spec.check(spec.values(m))
    except OptionError as err:
        raise ConfigError(str(err)) from None


def _check_model_dynamics(m, d: DynamicsConfig, r: RunConfig) -> None:
    """The dynamics kinds a model runs with; a model that is not a gradient system (its own
    drift) has no loss Hessian and no reparametrized clock."""
    spec = registry.spec(m.name)
    if d.kind not in spec.kinds:
        kinds = " or ".join(f'"{k}"' for k in spec.kinds)
        raise ConfigError(f"dynamics.kind: {m.name} needs kind = {kinds}, got {d.kind!r}")
    if not spec.gradient_system:
        if d.reparam != "none":
            raise ConfigError(f"dynamics.reparam: {m.name} is not a gradient flow; use 'none'")
        if r.hessian != "none":
            raise ConfigError(f"run.hessian: {m.name} has no loss Hessian to follow; use 'none'")


# --------------------------------------------------------------------------- writing


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """The config as nested plain dicts in the TOML layout.

    Args:
        cfg: the config.

    Returns:
        ``{section: {key: value}}`` (``init.from`` under its TOML name, lists for tuples, None
        fields left out); the ``[model]`` section holds the model's own options and pinned
        values only.
    """
    out: dict[str, dict[str, Any]] = {}
    spec = registry.SPECS.get(cfg.model.name)
    for section in _SECTIONS:
        values = {}
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            if value is None:
                continue
            if section == "model" and spec is not None and key not in spec.defaults:
                if key != "name" and not (key == "dim" and spec.features_are_logits):
                    continue  # an option of other models, at its default
            values[_toml_key(section, key)] = list(value) if isinstance(value, tuple) else value
        out[section] = values
    return out


def dumps(cfg: Config) -> str:
    """The config as TOML text, written by tomli-w.

    Args:
        cfg: the config.

    Returns:
        The TOML (:func:`to_dict`'s layout, the sections in order); it round-trips through
        :func:`loads`, whatever text its strings hold.
    """
    return tomli_w.dumps(to_dict(cfg))


def _toml_value(value: Any) -> str:
    """One TOML value on one line (a list inline, ``[1, 2]``), each scalar written by tomli-w:
    strings with any quotes, backslashes, control characters or unicode, inf and nan floats."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomli_w.dumps({"v": value}).removeprefix("v = ").removesuffix("\n")
