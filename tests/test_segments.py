"""Long stepped runs in segments (gflow.checkpoint): the segments give the bits of one solve,
a run interrupted between segments (Ctrl-C, kill -9) resumes from its last checkpoint and ends
with the bits of an uninterrupted run."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gflow import checkpoint, simulation

SMALL = {
    "model": {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 3},
    "dynamics": {"kind": "gd", "lr": 0.1, "steps": 600, "saves": 6},
    "init": {"count": 3},
    "run": {"precision": "float64"},
}
PARAMS = 3 * 4 + 4 * 9 + 3  # W, H, b of one init


def same_bits(a, b) -> list[str]:
    """The data variables in which two results differ (NaN equal to NaN)."""
    return [
        v
        for v in a.data_vars
        if not np.array_equal(a[v].values, b[v].values, equal_nan=a[v].dtype.kind == "f")
    ]


def config(kind: str) -> dict:
    cfg = {k: dict(v) for k, v in SMALL.items()}
    if kind == "sgd":
        cfg["dynamics"].update(kind="sgd", batch_size=4, optimizer="adam", lr=0.01)
    if kind == "sde":  # 600 steps of dt0, as gd's
        cfg["dynamics"] = {"kind": "sde", "t1": 6.0, "dt0": 0.01, "noise": 0.05, "saves": 6}
    if kind == "flow-euler":  # a fixed-step flow: 600 steps of dt0, cut in time as the sde
        cfg["dynamics"] = {"kind": "flow", "solver": "euler", "t1": 6.0, "dt0": 0.01, "saves": 6}
    if kind == "flow":  # max_steps 600, as gd's steps; stops near t = 53 (55-60 steps)
        cfg["dynamics"] = {
            "kind": "flow", "t1": 200.0, "saves": 8, "rtol": 1e-8, "atol": 1e-10,
            "max_steps": 600, "stop_grad_tol": 1e-2,
        }  # fmt: skip
    return cfg


class Stop(KeyboardInterrupt):
    """Raised by the test after a given number of checkpoints, as Ctrl-C would be."""


@pytest.fixture(scope="module", params=["gd", "sgd", "sde", "flow", "flow-euler"])
def runs(request, tmp_path_factory):
    """One kind's run in one segment, in 7 segments, and in 7 segments interrupted after the
    third checkpoint and resumed."""
    cfg = config(request.param)
    whole = simulation.simulate(cfg)
    mp = pytest.MonkeyPatch()
    mp.setattr(checkpoint, "SEGMENT_WORK", 600 * 3 * PARAMS / 7)
    plan = simulation.segment_plan(simulation.as_config(cfg))
    segmented = simulation.simulate(cfg)
    out = tmp_path_factory.mktemp(f"segments-{request.param}")
    save, saves = checkpoint.Checkpoints.save, []

    def stop_after_three(self, lo, hi, state):
        path = save(self, lo, hi, state)
        saves.append(state.done)
        if len(saves) == 3:
            raise Stop()
        return path

    mp.setattr(checkpoint.Checkpoints, "save", stop_after_three)
    with pytest.raises(Stop):
        simulation.run(cfg, out)
    kept = checkpoint.progress_of(out / "parts")
    resumed, path = simulation.run(cfg, out)
    mp.undo()
    return dict(
        kind=request.param, whole=whole, segmented=segmented, plan=plan, kept=kept, saves=saves, resumed=resumed,
        path=path, out=out,
    )  # fmt: skip


def test_segments_cover_the_save_grid_once(runs):
    plan = runs["plan"]
    cfg = simulation.as_config(config(runs["kind"]))
    grid = simulation.save_grid(cfg.dynamics)
    assert plan.count == 7
    assert plan.saved.sum() == cfg.dynamics.saves - 1  # every save but step 0, once
    if runs["kind"] == "flow":  # runs of consecutive saves
        assert np.array_equal(plan.ends[plan.saved], grid[1:])
        assert np.array_equal(plan.starts, np.concatenate([[0.0], plan.ends[:-1, -1]]))
        return
    if runs["kind"] in ("sde", "flow-euler"):  # segments of time on the dt0 grid of [0, t1]
        assert np.array_equal(plan.ends[plan.saved], grid[1:])
        bounds = plan.ends[:, -1]
        assert np.array_equal(plan.starts[1:], bounds[:-1]) and plan.starts[0] == 0
        steps = bounds / cfg.dynamics.dt0
        np.testing.assert_allclose(steps, np.rint(steps), rtol=0, atol=1e-9)
        assert (np.diff(plan.ends, axis=1) >= 0).all() and (plan.ends[:, 0] > plan.starts).all()
        return
    assert plan.lengths.sum() == cfg.dynamics.steps
    ends = np.cumsum(plan.lengths.ravel())[plan.saved.ravel()]
    assert np.array_equal(ends, grid[1:])
    assert (plan.lengths[:, 0] > 0).all()  # no empty segment


def test_segmented_run_equals_one_solve(runs):
    """gd (optax sgd) in segments takes the one solve's bits; adam's update rounds differently
    in the two programs (by about 1e-17 in the loss here), so for sgd + adam the segmented run
    is the reference of the resume test below and the one solve agrees to rounding; so does an
    SDE's (the same steps over the same Brownian path, its times summed from each segment's
    start)."""
    whole, segmented = runs["whole"], runs["segmented"]
    assert (segmented["status"].values == "ok").all()
    if runs["kind"] == "flow":
        # each segment end is an extra step boundary: the one solve's path to its tolerance
        # (rtol 1e-8); both stopped at the same time (the event), well before t1
        for v in ("loss", "W", "H", "b", "stop_time"):
            np.testing.assert_allclose(whole[v], segmented[v], rtol=1e-6, atol=1e-9, err_msg=v)
        assert (segmented["stop_time"].values < 100).all()
        return
    if runs["kind"] == "gd":
        assert same_bits(whole, segmented) == []
        return
    for v in whole.data_vars:
        a, b = whole[v].values, segmented[v].values
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=v)
        else:
            assert np.array_equal(a, b), v


def test_interrupted_run_keeps_its_segments_and_resumes_to_the_same_bits(runs):
    assert runs["kept"] == (3, 7)  # the checkpoint of 3 segments survived the interruption
    assert runs["saves"][:3] == [1, 2, 3]
    assert same_bits(runs["segmented"], runs["resumed"]) == []
    assert runs["path"].is_file()
    assert not (runs["out"] / "parts").exists()  # the checkpoint went with its part


def test_a_segmented_flow_that_runs_out_of_steps_is_marked_so(monkeypatch):
    """max_steps bounds the whole run (the flow of ``runs`` needs 55-60 steps)."""
    cfg = config("flow")
    cfg["dynamics"].update(max_steps=25, stop_grad_tol=None)
    del cfg["dynamics"]["stop_grad_tol"]
    whole = simulation.simulate(cfg)
    monkeypatch.setattr(checkpoint, "SEGMENT_WORK", 25 * 3 * PARAMS / 4)
    assert simulation.segment_plan(simulation.as_config(cfg)).count == 4
    segmented = simulation.simulate(cfg)
    for ds in (whole, segmented):
        assert (ds["status"].values == "max_steps").all()
        assert np.isnan(ds["loss"].values[:, -1]).all()  # t1 was never reached
        assert np.isfinite(ds["loss"].values[:, 0]).all()


def test_another_configs_checkpoint_is_never_used(tmp_path):
    ours = checkpoint.Checkpoints(tmp_path, "a = 1")
    state = checkpoint.Checkpoint(2, 5, [np.ones((3, 2))], {"loss": np.zeros((3, 4))})
    ours.save(0, 3, state)
    assert ours.load(0, 3, 5).done == 2
    assert checkpoint.Checkpoints(tmp_path, "a = 2").load(0, 3, 5) is None
    assert ours.load(0, 3, 6) is None  # another plan
    assert not list(tmp_path.glob(".*.tmp"))
    ours.remove(0, 3)
    assert ours.load(0, 3, 5) is None


def test_short_runs_stay_one_segment():
    assert simulation.segment_plan(simulation.as_config(SMALL)) is None
    flow = {**SMALL, "dynamics": {"kind": "flow", "t1": 10.0}}
    assert simulation.segment_plan(simulation.as_config(flow)) is None


LONG = """\
[model]
name = "ufm-ce"
classes = 3
dim = 4
per_class = 3

[dynamics]
kind = "gd"
lr = 0.1
steps = 200000
saves = 5

[init]
count = 4

[run]
out = "out"
"""
START = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = ['gflow', 'run', 'long.toml', '--no-plots'{}]; "
    "runpy.run_module('gflow', run_name='__main__')"
)


def gflow(cwd, env, quiet=True, out=None, **kw):
    args = (", '--quiet'" if quiet else "") + (f", '--out', '{out}'" if out else "")
    return subprocess.Popen(
        [sys.executable, "-c", START.format(args)], cwd=cwd, env=env, stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL, text=True, **kw,
    )  # fmt: skip


def wait_for_segments(proc, parts, at_least):
    """Segments done by the checkpoint in ``parts`` once it holds ``at_least``."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        kept = checkpoint.progress_of(parts)
        if kept and kept[0] >= at_least:
            return kept
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


def test_ctrl_c_then_kill_9_then_the_same_command_ends_with_an_uninterrupted_runs_bits(
    tmp_path, monkeypatch
):
    """The segments are made small (GFLOW_SEGMENT_WORK, a knob for tests) so that one is a
    fraction of a second here: 200000 steps of 4 inits of 51 parameters in 13 segments."""
    import os

    from gflow import results

    (tmp_path / "long.toml").write_text(LONG)
    env = {**os.environ, "GFLOW_SEGMENT_WORK": "3.2e6"}
    start = time.monotonic()
    ref = gflow(tmp_path, env, quiet=False, out="ref")
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    uninterrupted = time.monotonic() - start
    parts = tmp_path / "out" / "parts"

    first = gflow(tmp_path, env)
    wait_for_segments(first, parts, 1)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130
    done, total = checkpoint.progress_of(parts)
    assert total == 13 and 1 <= done < total
    assert err.splitlines() == [
        f"gflow: interrupted: {done} of {total} segments of the run kept in out/parts; the same "
        "command resumes"
    ]
    assert not (tmp_path / "out" / "results.nc").exists()

    second = gflow(tmp_path, env)
    killed_at = wait_for_segments(second, parts, max(done + 1, 8))
    second.kill()  # SIGKILL: no handler runs
    second.communicate(timeout=60)
    after = checkpoint.progress_of(parts)
    assert after[0] >= killed_at[0]

    start = time.monotonic()
    third = gflow(tmp_path, env, quiet=False)
    _, err = third.communicate(timeout=300)
    resumed = time.monotonic() - start
    assert third.returncode == 0, err
    assert f"gflow: resuming: {after[0]} of 13 segments of inits 0-3 already done" in err
    assert not parts.exists()
    ours, theirs = (
        results.load(tmp_path / "out" / "results.nc"),
        results.load(tmp_path / "ref" / "results.nc"),
    )
    assert same_bits(ours, theirs) == []
    assert resumed < uninterrupted  # 8 or more of the 13 segments were not solved again
