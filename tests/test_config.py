"""Config parsing and validation: every bad value names its field and what is valid."""

import pytest

from gflow import config
from gflow.config import Config, ConfigError


def parse(**sections):
    return config.from_dict(sections)


def test_defaults_and_round_trip():
    cfg = parse(model={"name": "ufm-ce", "per_class": [2, 3, 4, 5]}, run={"precision": "float64"})
    assert cfg.model.per_class == (2, 3, 4, 5) and cfg.num_samples == 14
    assert config.loads(config.dumps(cfg)) == cfg
    assert hash(cfg) == hash(config.loads(config.dumps(cfg)))  # usable as a static jit argument


def test_ulpm_defaults_to_no_weight_decay_and_no_bias():
    cfg = parse(model={"name": "ulpm"})
    assert (cfg.model.wd_W, cfg.model.wd_H, cfg.model.bias) == (0.0, 0.0, False)


def test_replace_revalidates():
    cfg = Config()
    assert cfg.replace(run={"out": "x"}).run.out == "x"
    with pytest.raises(ConfigError, match=r"^model\.classes: must be >= 2"):
        cfg.replace(model={"classes": 1})


@pytest.mark.parametrize(
    "sections, message",
    [
        (
            {"model": {"name": "resnet"}},
            r"^model\.name: unknown value 'resnet'; valid: ufm-ce, ufm-mse, ulpm",
        ),
        (
            {"dynamics": {"solver": "rk4"}},
            r"^dynamics\.solver: unknown value 'rk4'; valid: .*tsit5",
        ),
        ({"dynamics": {"optimizer": "sgdd"}}, r"^dynamics\.optimizer: unknown .*valid: .*adam"),
        (
            {"dynamics": {"kind": "langevin"}},
            r"^dynamics\.kind: unknown value 'langevin'; valid: flow, gd, sde",
        ),
        (
            {"dynamics": {"kind": "sde", "noise": -0.1, "dt0": 0.1}},
            r"^dynamics\.noise: must be >= 0, got -0\.1",
        ),
        (
            {"dynamics": {"kind": "sde", "noise": 0.1}},
            r"^dynamics\.dt0: required for kind = \"sde\"",
        ),
        (
            {"dynamics": {"kind": "sde", "solver": "tsit5", "dt0": 0.1}},
            r"^dynamics\.solver: unknown value 'tsit5'; valid: euler, heun",
        ),
        (
            {"dynamics": {"kind": "sde", "solver": "euler", "dt0": 1e-3, "t1": 1e3}},
            r"^dynamics\.max_steps: t1/dt0 = 1000000 steps exceed it",
        ),
        ({"model": {"classes": 1}}, r"^model\.classes: must be >= 2, got 1"),
        ({"model": {"name": "le-ode", "alpha": 0.0}}, r"^model\.alpha: must be > 0, got 0"),
        ({"model": {"name": "le-ode", "beta": -0.5}}, r"^model\.beta: must be >= 0, got -0\.5"),
        (
            {"model": {"name": "le-ode", "classes": 4, "dim": 8}},
            r"^model\.dim: le-ode features are the K logits, so dim must equal classes \(4\)",
        ),
        (
            {"model": {"name": "le-ode"}, "dynamics": {"kind": "gd"}},
            r"^dynamics\.kind: le-ode needs kind = \"flow\", got 'gd'",
        ),
        (
            {"model": {"name": "le-sde"}, "dynamics": {"kind": "flow"}},
            r"^dynamics\.kind: le-sde needs kind = \"sde\"",
        ),
        (
            {"model": {"name": "le-sde"}, "dynamics": {"noise": -1.0}},
            r"^dynamics\.noise: must be >= 0",
        ),
        (
            {"model": {"name": "le-ode"}, "dynamics": {"reparam": "log"}},
            r"^dynamics\.reparam: le-ode is not a gradient flow",
        ),
        (
            {"model": {"name": "le-ode"}, "run": {"hessian": "dense"}},
            r"^run\.hessian: le-ode has no loss Hessian",
        ),
        ({"model": {"dim": 0}}, r"^model\.dim: must be >= 1, got 0"),
        ({"model": {"per_class": 0}}, r"^model\.per_class: must be >= 1, got 0"),
        (
            {"model": {"classes": 3, "per_class": [2, 0, 1]}},
            r"^model\.per_class\[1\]: must be >= 1",
        ),
        ({"model": {"classes": 3, "per_class": [2, 2]}}, r"^model\.per_class: a list needs one"),
        ({"model": {"wd_W": -1e-3}}, r"^model\.wd_W: must be >= 0, got -0\.001"),
        ({"model": {"wd_H": -1.0}}, r"^model\.wd_H: must be >= 0"),
        ({"model": {"wd_b": -1.0}}, r"^model\.wd_b: must be >= 0"),
        (
            {"model": {"name": "ulpm", "bias": True}},
            r"^model\.bias: ulpm has no bias; set bias = false",
        ),
        ({"dynamics": {"t1": 0.0}}, r"^dynamics\.t1: must be > 0, got 0"),
        ({"dynamics": {"t1": -5}}, r"^dynamics\.t1: must be > 0, got -5"),
        ({"dynamics": {"t1": float("nan")}}, r"^dynamics\.t1: must be a finite number"),
        ({"dynamics": {"rtol": 0.0}}, r"^dynamics\.rtol: must be > 0"),
        ({"dynamics": {"lr": -0.1}}, r"^dynamics\.lr: must be > 0"),
        ({"dynamics": {"saves": 1}}, r"^dynamics\.saves: must be >= 2"),
        ({"dynamics": {"solver": "euler"}}, r"^dynamics\.dt0: required by the fixed-step solver"),
        (
            {"dynamics": {"reparam": "sqrt"}},
            r"^dynamics\.reparam: unknown value 'sqrt'; valid: none, log, loss",
        ),
        (
            {"dynamics": {"reparam": "loss"}},
            r"^dynamics\.reparam: 'loss' \(u = -log L\) needs a loss that tends to 0",
        ),
        (
            {
                "model": {"name": "ulpm"},
                "dynamics": {"reparam": "loss", "solver": "euler", "dt0": 1.0},
            },
            r"^dynamics\.solver: reparam 'loss' needs an adaptive solver",
        ),
        ({"dynamics": {"stop_grad_tol": 0.0}}, r"^dynamics\.stop_grad_tol: must be > 0, got 0"),
        ({"dynamics": {"stop_grad_tol": -1e-6}}, r"^dynamics\.stop_grad_tol: must be > 0"),
        (
            {"dynamics": {"kind": "gd", "stop_grad_tol": 1e-6}},
            r"^dynamics\.stop_grad_tol: applies to kind = \"flow\"",
        ),
        (
            {"dynamics": {"kind": "gd", "reparam": "log"}},
            r"^dynamics\.reparam: 'log' applies to kind = \"flow\" only",
        ),
        (
            {"dynamics": {"kind": "gd", "steps": 3, "saves": 10}},
            r"^dynamics\.saves: at most steps \+ 1 = 4 points for gd",
        ),
        ({"model": {"name": "extended-ufm", "hidden": 0}}, r"^model\.hidden: must be >= 1, got 0"),
        (
            {"model": {"name": "extended-ufm", "bias": True}},
            r"^model\.bias: extended-ufm has no bias",
        ),
        ({"model": {"wd_W1": -1.0}}, r"^model\.wd_W1: must be >= 0"),
        ({"init": {"count": 0}}, r"^init\.count: must be >= 1, got 0"),
        ({"init": {"scale": -1.0}}, r"^init\.scale: must be >= 0"),
        ({"init": {"from": "/nonexistent/start.npz"}}, r"^init\.from: file not found"),
        ({"run": {"precision": "float16"}}, r"^run\.precision: unknown .*valid: float32, float64"),
        (
            {"run": {"hessian": "exact"}},
            r"^run\.hessian: unknown value 'exact'; valid: none, dense, lanczos",
        ),
        ({"run": {"hessian_iters": 1}}, r"^run\.hessian_iters: must be >= 2, got 1"),
        ({"model": {"classes": "ten"}}, r'^model\.classes: expected an integer, got "ten"'),
        ({"model": {"classes": 4.5}}, r"^model\.classes: expected an integer, got 4\.5"),
        ({"model": {"bias": 1}}, r"^model\.bias: expected true or false, got 1"),
        ({"dynamics": {"t1": True}}, r"^dynamics\.t1: expected a number, got a boolean"),
        ({"model": {"colour": "red"}}, r"^model\.colour: unknown key; valid: name, classes"),
        ({"modle": {}}, r"^modle: unknown section; valid: model, dynamics, init, run"),
    ],
)
def test_bad_values_name_the_field(sections, message):
    with pytest.raises(ConfigError, match=message) as info:
        config.from_dict(sections)
    assert "\n" not in str(info.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"^config: file not found: .*nope\.toml"):
        config.load(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 'ufm-ce'\n")
    with pytest.raises(ConfigError, match=r"^config: .*bad\.toml is not valid TOML"):
        config.load(bad)


def test_shipped_example_configs_are_valid():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "configs"
    paths = sorted(folder.glob("*.toml"))
    assert len(paths) >= 3
    for path in paths:
        config.load(path)  # raises ConfigError if invalid


def test_demo_config_is_valid():
    from gflow.cli import DEMO_CONFIG

    cfg = config.loads(DEMO_CONFIG)
    assert cfg.model.classes == 10 and cfg.init.count >= 16
