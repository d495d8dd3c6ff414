"""Command-line overrides (`gflow run c.toml model.classes=10`), the effective config
(--print-config) and a dry run that makes every check and compiles nothing."""

import pytest

from gflow import cli, config, simulation

CONFIG = """\
[model]
name = "ufm-ce"
classes = 3
dim = 4
per_class = 3

[dynamics]
kind = "gd"
steps = 10
saves = 2

[init]
count = 2

[run]
out = "out"
"""


@pytest.fixture
def cfg_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text(CONFIG)
    return "c.toml"


def test_overrides_are_toml_values_or_plain_strings():
    raw = config.apply_overrides(
        {"model": {"classes": 3}},
        ["model.classes=10", "model.name=ufm-mse", "model.per_class=[4, 2]", 'run.out="x y"',
         "model.bias=false", "dynamics.lr=5e-3"],
    )  # fmt: skip
    assert raw["model"] == {"classes": 10, "name": "ufm-mse", "per_class": [4, 2], "bias": False}
    assert raw["run"] == {"out": "x y"} and raw["dynamics"] == {"lr": 5e-3}


def test_print_config_shows_the_effective_config(cfg_file, capsys):
    argv = ["run", cfg_file, "model.classes=5", "dynamics.lr=0.25", "--print-config"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    effective = config.loads(printed)
    assert effective == config.load(cfg_file, ["model.classes=5", "dynamics.lr=0.25"])
    assert effective.model.classes == 5 and effective.dynamics.lr == 0.25
    assert effective.model.wd_W == 5e-3  # the model's defaults are filled in


def test_dry_run_checks_everything_and_compiles_nothing(cfg_file, capsys, tmp_path):
    before = simulation.cache_info()["compiles"]
    assert cli.main(["run", cfg_file, "init.count=4", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gflow: dry run: the config is valid; ufm-ce, 4 inits, gd, about ")
    assert simulation.cache_info()["compiles"] == before and not (tmp_path / "out").exists()
    assert cli.main(["run", cfg_file, 'init.from="missing.npz"', "--dry-run"]) == 2
    assert capsys.readouterr().err == "gflow: error: init.from: file not found: missing.npz\n"


@pytest.mark.parametrize(
    "override, message",
    [
        ("classes=4", "override: expected section.key=value, got 'classes=4'"),
        ("model.classes", "override: expected section.key=value, got 'model.classes'"),
        ("model.classes=1", "model.classes: must be >= 2, got 1"),
        ("model.colour=red", "model.colour: unknown key; valid: name, classes, dim, "),
    ],
)
def test_a_bad_override_is_one_line_naming_the_field(cfg_file, capsys, override, message):
    assert cli.main(["run", cfg_file, override, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gflow: error: {message}") and err.count("\n") == 1
