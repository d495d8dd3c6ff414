"""Failed inits are honest: from where an init fails its saved metrics are NaN (never 0 or inf),
the ok inits keep their bits, the summary is over the ok inits and names the failures, and
`gflow run` exits 3 when every init failed (results.nc still written)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr

from gflow import cli, results, simulation
from gflow.batch import init_batch, run_batch, save_grid
from gflow.config import DynamicsConfig
from gflow.dynamics import STATUS
from gflow.models import ufm_ce, ufm_mse, ulpm

GD = DynamicsConfig(kind="gd", lr=0.5, steps=400, saves=8)
KKT = ("kkt_residual", "kkt_slackness")  # the ULPM's KKT observables: NaN until separable


def _observed(traj, init):
    return {name: np.asarray(values)[init] for name, values in traj.observed.items()}


def _check_nan_from(traj, init, first_bad, maybe_nan=()):
    """Every observation of ``init`` is finite before save ``first_bad`` (but those named in
    ``maybe_nan``) and NaN from it on."""
    for name, values in _observed(traj, init).items():
        assert name in maybe_nan or np.all(np.isfinite(values[:first_bad])), name
        assert np.all(np.isnan(values[first_bad:])), name


def _assert_others_identical(traj, base, bad_init):
    keep = [i for i in range(len(traj.status)) if i != bad_init]
    assert [STATUS[s] for s in np.asarray(traj.status)[keep]] == ["ok"] * len(keep)
    for a, b in zip(jax.tree.leaves(traj), jax.tree.leaves(base), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[keep], np.asarray(b)[keep])


def test_gd_init_that_diverges_is_nan_from_its_first_non_finite_loss():
    """UFM-MSE with one init 30x larger: GD at lr 0.5 blows up partway (loss 1e40, then NaN)."""
    model = ufm_mse(3, 4, 2, init_scale=0.1, dtype=jnp.float64)
    params0 = init_batch(model, seed=1, count=4)
    bad = jax.tree.map(lambda x: x.at[1].multiply(30.0), params0)
    base, traj = run_batch(model, GD, params0), run_batch(model, GD, bad)
    assert STATUS[int(traj.status[1])] == "nan"
    loss = _observed(traj, 1)["loss"]
    first_bad = int(np.argmax(~np.isfinite(loss)))
    assert 1 < first_bad < len(loss) and loss[first_bad - 1] > 1e10  # fails partway, finite before
    _check_nan_from(traj, 1, first_bad)
    _assert_others_identical(traj, base, 1)


def test_gd_init_with_a_nan_entry_is_nan_at_every_save():
    """A NaN in H from the start: every metric of every save is NaN, NC4 too (its argmax of NaN
    logits came out 0 before)."""
    model = ufm_ce(3, 4, 2, init_scale=0.1, dtype=jnp.float64)
    params0 = init_batch(model, seed=1, count=4)
    bad = {**params0, "H": params0["H"].at[2, 0, 0].set(jnp.nan)}
    base, traj = run_batch(model, GD, params0), run_batch(model, GD, bad)
    assert STATUS[int(traj.status[2])] == "nan"
    _check_nan_from(traj, 2, 0)
    assert "nc4" in traj.observed
    _assert_others_identical(traj, base, 2)


def test_flow_that_hits_max_steps_is_nan_after_the_time_it_reached():
    model = ufm_ce(3, 4, 2, init_scale=0.1, dtype=jnp.float64)
    dyn = DynamicsConfig(kind="flow", t1=1000.0, saves=6, max_steps=20)
    traj = run_batch(model, dyn, init_batch(model, seed=2, count=3))
    times = np.asarray(save_grid(dyn))
    assert [STATUS[s] for s in traj.status] == ["max_steps"] * 3
    for init, end in enumerate(np.asarray(traj.end_time)):
        assert 0 < end < times[-1]
        _check_nan_from(traj, init, int(np.searchsorted(times, end, side="right")))
        for values in _observed(traj, init).values():
            assert not np.any(np.isinf(values))


def test_loss_clock_flow_that_hits_max_steps_is_nan_past_the_time_it_reached():
    """reparam "loss" interpolates its late saves between solver steps: past the log t a
    failed solve reached they held its last value; now NaN."""
    model = ulpm(3, 4, 2, init_scale=0.1, dtype=jnp.float64)
    dyn = DynamicsConfig(kind="flow", t1=1e30, saves=5, reparam="loss", max_steps=30)
    traj = run_batch(model, dyn, init_batch(model, seed=2, count=2))
    times = np.asarray(save_grid(dyn))
    assert [STATUS[s] for s in traj.status] == ["max_steps"] * 2
    for init, end in enumerate(np.asarray(traj.end_time)):
        assert 1.0 < end < times[2]  # past the plain flow's switch at t = 1, short of 1e10
        _check_nan_from(traj, init, 2, maybe_nan=KKT)


@pytest.fixture(scope="module")
def dataset():
    cfg = {
        "model": {"name": "ufm-ce", "classes": 3, "dim": 3, "per_class": 2},
        "dynamics": {"kind": "gd", "lr": 0.5, "steps": 4000, "saves": 6},
        "init": {"count": 4, "seed": 2},
        "run": {"precision": "float64"},
    }
    return simulation.simulate(cfg)


def _failing(ds, statuses, loss_of_failed=np.nan):
    """``ds`` with these statuses, and the loss of the failed inits set to ``loss_of_failed``."""
    ds = ds.copy(deep=True)
    ds["status"] = ("init", np.array(statuses, dtype=object))
    failed = np.array(statuses) != "ok"
    ds["loss"] = ds.loss.where(~xr.DataArray(failed, dims="init"), loss_of_failed)
    return ds


def test_summary_is_over_the_ok_inits_and_names_the_failures(dataset):
    ds = _failing(dataset, ["nan", "ok", "max_steps", "nan"])
    text = results.summary(ds)
    lines = text.splitlines()
    assert lines[0] == (
        "3 of 4 inits failed (nan 2, max_steps 1); the figures below are over the 1 ok init"
    )
    assert "nan" not in "\n".join(lines[1 : lines.index("")]).lower()  # the ok init's table
    loss_row = next(line for line in lines if line.startswith("loss"))
    assert f"{float(ds.loss.isel(init=1, time=-1)):.10g}" in loss_row
    assert "inits: 4  status: max_steps 1, nan 2, ok 1" in text
    assert "collapsed (NC1-3 < 1e-3, NC4 = 0): 100%" in text  # of the ok inits
    assert not results.summary(dataset).startswith(("3 of", "all"))  # all ok: as before


def test_summary_of_all_failed_inits_says_so(dataset):
    text = results.summary(_failing(dataset, ["nan", "nan", "diverged", "nan"]))
    assert text.splitlines()[0] == (
        "all 4 inits failed (nan 3, diverged 1); no ok init to summarize"
    )
    assert "median" not in text and "collapsed" not in text
    assert "inits: 4  status: diverged 1, nan 3" in text


ALL_DIVERGE = """\
[model]
name = "ufm-ce"
classes = 3
dim = 4
per_class = 2

[dynamics]
kind = "gd"
lr = 1000.0
steps = 300
saves = 6

[init]
count = 3
seed = 2

[run]
precision = "float64"
out = "{out}"
"""


def test_run_where_every_init_diverges_exits_3_and_writes_results(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text(ALL_DIVERGE.format(out=tmp_path / "out"))
    assert cli.main(["run", str(config), "--quiet", "--no-plots"]) == cli.EVERY_INIT_FAILED == 3
    captured = capsys.readouterr()
    assert "all 3 inits failed (nan 3); no ok init to summarize" in captured.out
    assert "gflow: every init failed (nan 3)" in captured.err
    ds = results.load(tmp_path / "out" / "results.nc")
    assert list(ds.status.values) == ["nan"] * 3
    # it really diverged: the loss grows by orders of magnitude, then NaN, and so is NC4
    loss = ds.loss.values
    assert np.all(loss[:, 1] > 10 * loss[:, 0]) and np.all(np.isnan(loss[:, -1]))
    assert np.all(np.isnan(ds.nc4.values[:, -1]))


def test_sweep_where_every_point_diverges_exits_3(tmp_path, capsys):
    config = tmp_path / "c.toml"
    swept = ALL_DIVERGE.replace("lr = 1000.0", "lr = [1000.0, 2000.0]")
    config.write_text(swept.format(out=tmp_path / "out"))
    assert cli.main(["sweep", str(config), "--quiet"]) == cli.EVERY_INIT_FAILED
    assert "every init of every point failed" in capsys.readouterr().err
    index = xr.open_dataset(tmp_path / "out" / "index.nc")
    assert list(index.ok_fraction.values) == [0.0, 0.0]
