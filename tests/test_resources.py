"""Resource checks before compiling: integers within what the solve represents, and the
estimated peak memory against what is available (given here, so the tests do not depend on
the machine)."""

import pytest

from gflow import config, simulation
from gflow.config import ConfigError


def build(sections):
    cfg = config.from_dict(sections)
    return cfg, simulation.build_model(cfg, check=False)


def test_the_memory_estimate_counts_states_working_copies_and_saves():
    cfg, model = build({"init": {"count": 16}, "run": {"precision": "float64"}})
    need = simulation.memory_needed(cfg, model)
    one = 8 * (20 * 8 + 4 * 8 + 4)  # H (20, 8), W (4, 8), b (4,) in float64
    assert need["state"] == 3 * one * 16
    assert need["saves"] == 16 * 50 * 40 * 8
    # a flow keeps 12 copies of each init of its vector (up to 16 kB of state: 8 inits here),
    # and the 50 saved states of each, observed after the solve
    assert need["working"] == 12 * one * 8 + 50 * one * 8
    cfg, model = build({"run": {"precision": "float64", "save_geometry": True}})
    # W and the class means, (4, 8) each, at every save beside the scalars
    assert simulation.memory_needed(cfg, model)["saves"] == 16 * 50 * (40 + 2 * 32) * 8


def test_too_many_inits_are_refused_with_a_chunk_that_fits():
    cfg, model = build({"init": {"count": 100_000}, "dynamics": {"saves": 2}})
    available = 200 * 10**6
    with pytest.raises(ConfigError, match=r"^init\.count: 100000 inits of 784 B need about") as e:
        simulation.check_memory(cfg, model, available)
    chunk = int(str(e.value).split("run.chunk = ")[1].split()[0])
    fitted = cfg.replace(run={"chunk": chunk})
    simulation.check_memory(fitted, model, available)  # the suggested chunk fits
    assert chunk < 100_000


def test_saves_and_a_model_too_big_name_their_fields():
    cfg, model = build({"dynamics": {"saves": 10**6}})
    with pytest.raises(ConfigError, match=r"^dynamics\.saves: 1000000 saves of 16 inits"):
        simulation.check_memory(cfg, model, 10**9)
    cfg, model = build({"init": {"count": 10**6}})
    with pytest.raises(ConfigError, match=r"^init\.count: 1000000 inits with 50 saves each"):
        simulation.check_memory(cfg, model, 10**9)
    cfg, model = build({"model": {"classes": 10, "dim": 1000, "per_class": 1000}})
    with pytest.raises(ConfigError, match=r"^model: one init's state is 40 MB \(10000 samples"):
        simulation.check_memory(cfg, model, 10**8)
    simulation.check_memory(cfg, model, 10**10)  # fits in 10 GB


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"dynamics": {"kind": "gd", "steps": 2**31}}, r"^dynamics\.steps: must be <= 2147483647"),
        ({"dynamics": {"max_steps": 2**40}}, r"^dynamics\.max_steps: must be <= 2147483647"),
        ({"init": {"seed": 2**63}}, r"^init\.seed: must be <= 9223372036854775807"),
        ({"model": {"per_class": [5, 2**31, 5, 5]}}, r"^model\.per_class: must be <= 2147483647"),
        ({"model": {"classes": 2**16, "per_class": 2**16}}, r"^model\.per_class: 4294967296 sam"),
        ({"dynamics": {"t1": 10**400}}, r"^dynamics\.t1: must be a finite number, got a 401-d"),
    ],
)
def test_integers_beyond_what_the_solve_represents_name_the_field(sections, message):
    with pytest.raises(ConfigError, match=message):
        config.from_dict(sections)


def test_the_largest_seed_runs():
    cfg = config.from_dict({"init": {"seed": 2**63 - 1, "count": 2}})
    model, params0 = simulation.prepare(cfg)
    assert params0["H"].shape == (2, 20, 8)
