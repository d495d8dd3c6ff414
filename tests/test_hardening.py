"""Bad input, as README's table "What a careless input gets" lists it: each row's input is run
here and must get exactly the one-line error the table shows (a row ending in "…" gives the
start of a message that goes on with the library's own words). Every config field has a row.
"""

import dataclasses
import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from gflow import cli, config, simulation
from gflow.config import ConfigError

README = Path(__file__).parent.parent / "README.md"
ROW = re.compile(r"^\| `(?P<input>[^`]+)` \| (?P<case>[^|]*) \| `(?P<message>[^`]+)` \|$")


def table_rows() -> list[tuple[str, str]]:
    text = README.read_text()
    start = text.find("### What a careless input gets")
    if start < 0:
        return []
    rows = [ROW.match(line) for line in text[start:].splitlines()[:200]]
    return [(m["input"], m["message"]) for m in rows if m]


ROWS = table_rows()


def make_files(folder: Path) -> None:
    """The files the table's rows name: K=4, d=8, n=5 needs W (4, 8), H (20, 8), b (4,)."""
    (folder / "notes.txt").write_text("not a config, not an array, not netCDF\n")
    np.savez(folder / "no-H.npz", W=np.zeros((4, 8)))
    np.savez(folder / "wrong-shape.npz", W=np.zeros((3, 8)), H=np.zeros((20, 8)))
    H = np.zeros((20, 8))
    H[3, 2] = np.nan
    np.savez(folder / "nan.npz", W=np.zeros((4, 8)), H=H)


def error_for(given: str, capsys) -> str:
    """The one-line error ``given`` gets: a CLI command, or config assignments ("; ")."""
    if given.startswith("gflow "):
        assert cli.main(given.split()[1:]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gflow: error: ") and "\n" not in err
        return err.removeprefix("gflow: error: ")
    sections: dict = {}
    for assignment in given.split("; "):
        dotted, value = assignment.split(" = ", 1)
        section, key = dotted.split(".")
        sections.setdefault(section, {})[key] = tomllib.loads(f"v = {value}")["v"]
    with pytest.raises(ConfigError) as info:
        simulation.build_model(config.from_dict(sections))  # checks files; compiles nothing
    return str(info.value)


def test_the_table_is_there_and_covers_every_config_field():
    assert len(ROWS) >= 60
    named = {given.split(" = ")[0] for row, _ in ROWS for given in row.split("; ")}
    for section, cls in (("model", config.ModelConfig), ("dynamics", config.DynamicsConfig),
                         ("init", config.InitConfig), ("run", config.RunConfig)):  # fmt: skip
        for field in dataclasses.fields(cls):
            key = "from" if field.name == "from_file" else field.name
            assert f"{section}.{key}" in named, f"no bad-input row for {section}.{key}"


@pytest.mark.parametrize("given, message", ROWS, ids=[r[0] for r in ROWS])
def test_each_bad_input_gets_the_error_the_table_shows(given, message, tmp_path, monkeypatch,
                                                       capsys):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    make_files(tmp_path)
    said = error_for(given, capsys)
    assert "\n" not in said
    if message.endswith("…"):
        assert said.startswith(message[:-1]), said
    else:
        assert said == message
