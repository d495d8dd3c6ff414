"""Typed simulation config: TOML in, frozen dataclasses out, validated before anything compiles.

Every problem is reported as a :class:`ConfigError` whose one-line message names the field
(``section.key``) and what would be valid. Frozen dataclasses hash by value, so a config can be a
static argument of ``jax.jit`` without retracing.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MODEL_NAMES = (
    "ufm-ce", "ufm-mse", "ulpm", "extended-ufm", "deep-linear", "wide-net", "le-ode", "le-sde",
)  # fmt: skip
ELASTIC_MODELS = ("le-ode", "le-sde")
CLASSIFIERS = ("learned", "fixed-etf")
DYNAMICS_KINDS = ("flow", "gd", "sde")
PRECISIONS = ("float32", "float64")
REPARAMS = ("none", "log", "loss")
SAVE_SPACINGS = ("log", "linear")
HESSIAN_METHODS = ("none", "dense", "lanczos")


class ConfigError(ValueError):
    """A bad config value; ``str(err)`` is one line naming the field and what is valid."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "ufm-ce"
    classes: int = 4
    dim: int = 8
    per_class: int | tuple[int, ...] = 5
    wd_W: float = 5e-3
    wd_H: float = 5e-3
    wd_b: float = 5e-3
    bias: bool = True
    classifier: str = "learned"  # ufm-ce / ufm-mse: learned | fixed-etf (W frozen at an ETF)
    classifier_norm: float = 1.0  # fixed-etf: row norm of the frozen W
    hidden: int = 16  # extended-ufm: width of the ReLU layer
    wd_W1: float = 5e-3  # extended-ufm: weight decay on the extra layer
    depth: int = 3  # deep-linear / wide-net: number L >= 2 of final linear layers
    width: int = 128  # wide-net: width of the ReLU layer and of the linear layers
    dataset: str = "digits"  # wide-net: a data set that ships with scikit-learn
    alpha: float = 1.0  # le-ode / le-sde: intra-class impact (diagonal of the elasticity E)
    beta: float = 0.5  # le-ode / le-sde: inter-class impact (off the diagonal of E)
    init_margin: float = 1.0  # le-ode / le-sde: mean margin of every class at t = 0


@dataclasses.dataclass(frozen=True)
class DynamicsConfig:
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
    stop_grad_tol: float | None = None  # flow: stop an init once ||grad L|| < this (an event)


@dataclasses.dataclass(frozen=True)
class InitConfig:
    count: int = 16
    seed: int = 0
    scale: float = 0.1
    from_file: str | None = None  # TOML key: `from`


@dataclasses.dataclass(frozen=True)
class RunConfig:
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


@dataclasses.dataclass(frozen=True)
class Config:
    model: ModelConfig = ModelConfig()
    dynamics: DynamicsConfig = DynamicsConfig()
    init: InitConfig = InitConfig()
    run: RunConfig = RunConfig()

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """Copy with some fields changed: ``cfg.replace(run={"out": "x"})``; re-validated."""
        raw = to_dict(self)
        for section, values in sections.items():
            if section not in raw:
                raise ConfigError(f"{section}: unknown section; valid: {', '.join(raw)}")
            raw[section].update(values)
        return from_dict(raw)

    @property
    def num_samples(self) -> int:
        return sum(class_counts(self.model))


# Defaults that depend on another key (model.name, dynamics.kind), used where the TOML omits them.
_MODEL_DEFAULTS = {
    "ulpm": {"wd_W": 0.0, "wd_H": 0.0, "wd_b": 0.0, "bias": False},
    "ufm-mse": {"wd_b": 0.0},  # Tirer & Bruna: the bias is not regularized
    "extended-ufm": {"wd_b": 0.0, "bias": False},
    "deep-linear": {"wd_b": 0.0, "bias": False},
    "wide-net": {"wd_b": 0.0, "bias": False, "wd_W": 1e-3, "depth": 2},
    **{name: {"wd_W": 0.0, "wd_H": 0.0, "wd_b": 0.0, "bias": False} for name in ELASTIC_MODELS},
}

# the LE models grow exponentially: a short horizon; the LE-SDE is an SDE
_DYNAMICS_DEFAULTS_BY_MODEL = {
    "le-ode": {"t1": 40.0},
    "le-sde": {"kind": "sde", "t1": 40.0, "dt0": 0.01, "noise": 0.1},
}
_DYNAMICS_DEFAULTS = {"sde": {"solver": "euler"}}

_SECTIONS = {"model": ModelConfig, "dynamics": DynamicsConfig, "init": InitConfig, "run": RunConfig}
_TOML_NAMES = {("init", "from_file"): "from"}  # dataclass field -> TOML key, where they differ


def _toml_key(section: str, field: str) -> str:
    return _TOML_NAMES.get((section, field), field)


def class_counts(model: ModelConfig) -> tuple[int, ...]:
    """Per-class sample counts n_k (length ``classes``)."""
    if isinstance(model.per_class, int):
        return (model.per_class,) * model.classes
    return tuple(model.per_class)


# --------------------------------------------------------------------------- parsing


def load(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config: file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"config: {path} is not valid TOML: {err}") from None
    return from_dict(raw)


def loads(text: str) -> Config:
    """Parse and validate TOML text."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config: not valid TOML: {err}") from None
    return from_dict(raw)


def from_dict(raw: Mapping[str, Any]) -> Config:
    """Build a :class:`Config` from nested mappings (TOML layout) and validate it."""
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
        if section == "model":
            kwargs.update(_MODEL_DEFAULTS.get(model_name, {}))
            if model_name in ELASTIC_MODELS:
                kwargs["dim"] = values.get("classes", ModelConfig.classes)  # features = logits
        if section == "dynamics":
            kwargs.update(_DYNAMICS_DEFAULTS_BY_MODEL.get(model_name, {}))
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
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{field}: must be a finite number, got {value}")
        return value
    if isinstance(value, str) and any(k.startswith("str") for k in kinds):
        return value
    if isinstance(value, list) and any(k.startswith("tuple[int") for k in kinds):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{field}: a list must hold integers only, got {value}")
        return tuple(value)
    raise ConfigError(f"{field}: expected {_describe(kinds)}, got {json.dumps(value)}")


def _describe(kinds: list[str]) -> str:
    words = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false"}
    out = [words.get(k.split("[")[0], "a list of integers") for k in kinds if k != "None"]
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
    """Raise :class:`ConfigError` on the first invalid field. Pure Python: nothing compiles."""
    from gflow.dynamics.descent import OPTIMIZERS
    from gflow.dynamics.flow import FIXED_STEP_SOLVERS, SOLVERS

    m, d, i, r = cfg.model, cfg.dynamics, cfg.init, cfg.run
    _one_of("model.name", m.name, MODEL_NAMES)
    _at_least("model.classes", m.classes, 2)
    _at_least("model.dim", m.dim, 1)
    if isinstance(m.per_class, tuple):
        if len(m.per_class) != m.classes:
            raise ConfigError(
                f"model.per_class: a list needs one count per class ({m.classes}), "
                f"got {len(m.per_class)}"
            )
        for k, n in enumerate(m.per_class):
            _at_least(f"model.per_class[{k}]", n, 1)
    else:
        _at_least("model.per_class", m.per_class, 1)
    for name in ("wd_W", "wd_H", "wd_b"):
        _at_least(f"model.{name}", getattr(m, name), 0.0)
    if m.name in ("ulpm", "extended-ufm", "deep-linear", "wide-net", *ELASTIC_MODELS) and m.bias:
        raise ConfigError(f"model.bias: {m.name} has no bias; set bias = false")
    _at_least("model.hidden", m.hidden, 1)
    _at_least("model.wd_W1", m.wd_W1, 0.0)
    _at_least("model.depth", m.depth, 2)
    _at_least("model.width", m.width, 1)
    if m.name == "wide-net":
        _check_dataset(m)
    _one_of("model.classifier", m.classifier, CLASSIFIERS)
    _positive("model.classifier_norm", m.classifier_norm)
    if m.classifier == "fixed-etf":
        if m.name not in ("ufm-ce", "ufm-mse"):
            raise ConfigError(
                f"model.classifier: a fixed ETF classifier is for ufm-ce and ufm-mse, not {m.name}"
            )
        if m.dim < m.classes - 1:
            raise ConfigError(
                f"model.dim: a fixed simplex ETF of {m.classes} classes needs dim >= "
                f"{m.classes - 1}, got {m.dim}"
            )

    if m.name in ELASTIC_MODELS:
        _check_elastic(m, d, r)
    _one_of("dynamics.kind", d.kind, DYNAMICS_KINDS)
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
        if m.name != "ulpm" or m.wd_W > 0 or m.wd_H > 0:
            raise ConfigError(
                "dynamics.reparam: 'loss' (u = -log L) needs a loss that tends to 0: "
                "the ulpm without weight decay; use 'log' otherwise"
            )
        if d.solver in FIXED_STEP_SOLVERS:
            raise ConfigError("dynamics.solver: reparam 'loss' needs an adaptive solver")
    _one_of("dynamics.optimizer", d.optimizer, sorted(OPTIMIZERS))
    _positive("dynamics.lr", d.lr)
    _at_least("dynamics.steps", d.steps, 1)
    _at_least("dynamics.saves", d.saves, 2)
    _one_of("dynamics.save_spacing", d.save_spacing, SAVE_SPACINGS)
    if d.kind == "gd" and d.saves > d.steps + 1:
        raise ConfigError(
            f"dynamics.saves: at most steps + 1 = {d.steps + 1} points for gd, got {d.saves}"
        )

    _at_least("init.count", i.count, 1)
    _at_least("init.seed", i.seed, 0)
    _at_least("init.scale", i.scale, 0.0)
    if i.from_file is not None and not Path(i.from_file).is_file():
        raise ConfigError(f"init.from: file not found: {i.from_file}")

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


def root_finding(d: DynamicsConfig) -> str:
    """What in a flow solves for roots (optimistix Newton inside diffrax: an implicit solver or a
    stop event), or "". Such solves cannot run under shard_map, so not in vectors of inits."""
    from gflow.dynamics.flow import IMPLICIT_SOLVERS

    if d.kind != "flow":
        return ""
    if d.solver in IMPLICIT_SOLVERS:
        return f"the implicit solver {d.solver}"
    if d.stop_grad_tol is not None:
        return "the stop event of stop_grad_tol"
    return "the stop event of reparam = 'loss'" if d.reparam == "loss" else ""


def _check_elastic(m: ModelConfig, d: DynamicsConfig, r: RunConfig) -> None:
    """LE-ODE / LE-SDE: impacts, feature dimension, and dynamics that follow a drift."""
    _positive("model.alpha", m.alpha)
    _at_least("model.beta", m.beta, 0.0)
    if m.init_margin == 0:
        raise ConfigError(
            "model.init_margin: must be nonzero (margins are followed relative to it)"
        )
    if m.dim != m.classes:
        raise ConfigError(
            f"model.dim: {m.name} features are the K logits, so dim must equal classes "
            f"({m.classes}), got {m.dim}"
        )
    kind = "sde" if m.name == "le-sde" else "flow"
    if d.kind != kind:
        raise ConfigError(f'dynamics.kind: {m.name} needs kind = "{kind}", got {d.kind!r}')
    if d.reparam != "none":
        raise ConfigError(f"dynamics.reparam: {m.name} is not a gradient flow; use 'none'")
    if r.hessian != "none":
        raise ConfigError(f"run.hessian: {m.name} has no loss Hessian to follow; use 'none'")


def _check_dataset(m: ModelConfig) -> None:
    from gflow.models.networks import DATASETS, dataset_limits

    _one_of("model.dataset", m.dataset, DATASETS)
    max_classes, max_per_class = dataset_limits(m.dataset)
    if m.classes > max_classes:
        raise ConfigError(f"model.classes: {m.dataset} has {max_classes} classes, got {m.classes}")
    if not isinstance(m.per_class, int) or m.per_class > max_per_class:
        raise ConfigError(
            f"model.per_class: {m.dataset} needs one count <= {max_per_class} (its smallest "
            f"class), got {m.per_class}"
        )
    if m.width < m.classes:
        raise ConfigError(f"model.width: must be >= classes ({m.classes}), got {m.width}")


# --------------------------------------------------------------------------- writing


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    """Nested plain dict in the TOML layout (``init.from`` under its TOML name)."""
    out: dict[str, dict[str, Any]] = {}
    for section in _SECTIONS:
        values = {}
        for key, value in dataclasses.asdict(getattr(cfg, section)).items():
            if value is None:
                continue
            values[_toml_key(section, key)] = list(value) if isinstance(value, tuple) else value
        out[section] = values
    return out


def dumps(cfg: Config) -> str:
    """TOML text of a config (round-trips through :func:`loads`)."""
    lines = []
    for section, values in to_dict(cfg).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)
