"""Bad input, as README's table "What a careless input gets" lists it: each row's input is run
here and must get exactly the one-line error the table shows (a row ending in "…" gives the
start of a message that goes on with the library's own words). Every config field has a row.
"""

import dataclasses
import re
from pathlib import Path

import pytest

from gflow import config, docs

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


def error_for(given: str) -> str:
    """The one-line error ``given`` gets (exit status 2: a CLI command or a ConfigError)."""
    status, said = docs.error_for(given)
    assert status == 2 and said, (status, said)
    return said


def test_the_table_is_there_and_covers_every_config_field():
    assert len(ROWS) >= 60
    named = {given.split(" = ")[0] for row, _ in ROWS for given in row.split("; ")}
    for section, cls in (("model", config.ModelConfig), ("dynamics", config.DynamicsConfig),
                         ("init", config.InitConfig), ("run", config.RunConfig)):  # fmt: skip
        for field in dataclasses.fields(cls):
            key = "from" if field.name == "from_file" else field.name
            assert f"{section}.{key}" in named, f"no bad-input row for {section}.{key}"


@pytest.mark.parametrize("given, message", ROWS, ids=[r[0] for r in ROWS])
def test_each_bad_input_gets_the_error_the_table_shows(given, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    docs.make_files(tmp_path)
    said = error_for(given)
    assert "\n" not in said
    if message.endswith("…"):
        assert said.startswith(message[:-1]), said
    else:
        assert said == message
