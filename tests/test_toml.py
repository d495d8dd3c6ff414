"""Configs are written as TOML by a library (tomli-w): any text a field may hold (quotes,
backslashes, control characters, unicode) and any number (inf, nan, -0.0, 64-bit integers)
round-trips through TOML; sections keep their order and ``init.from`` its TOML name."""

import math
import tomllib
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gflow import config

scalars = (
    st.text()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**63), 2**63 - 1)
    | st.booleans()
)
values = scalars | st.lists(st.floats(allow_nan=False) | st.integers(-(2**63), 2**63 - 1))


def same(a, b) -> bool:
    """Equal, NaN equal to NaN, and a float's sign of zero kept."""
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return isinstance(b, float) and (
            (math.isnan(a) and math.isnan(b))
            or (a == b and math.copysign(1, a) == math.copysign(1, b))
        )
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(values)
def test_one_value_round_trips_on_one_line(value):
    text = config._toml_value(value)
    assert "\n" not in text
    assert same(tomllib.loads(f"v = {text}")["v"], value)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1).filter(lambda t: t.strip() and not Path(t).is_file()))
def test_a_config_with_any_text_round_trips(out):
    cfg = config.from_dict({"model": {"per_class": [2, 3, 4, 5]}, "run": {"out": out}})
    text = config.dumps(cfg)
    assert config.loads(text) == cfg
    assert list(tomllib.loads(text)) == ["model", "dynamics", "init", "run"]


def test_init_from_keeps_its_toml_name(tmp_path):
    start = tmp_path / 'a "quoted" \\ path é.npz'
    start.write_bytes(b"")
    text = config.dumps(config.from_dict({"init": {"from": str(start)}}))
    assert tomllib.loads(text)["init"]["from"] == str(start)
    assert config.loads(text).init.from_file == str(start)
