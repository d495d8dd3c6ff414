"""The fast paths change no numbers: the closed-form CE derivative equals autodiff of the textbook
loss (gradient and Hessian), GD in vectors of a few inits equals one vmap, batched LAPACK calls
no longer deadlock on several host devices; and the benchmarks smoke-run at tiny sizes."""

import dataclasses
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow import batch, cli, linalg, simulation
from gflow.config import ConfigError
from gflow.models import cross_entropy

ROOT = Path(__file__).resolve().parents[1]


def textbook_cross_entropy(z, onehot):
    """mean_i logsumexp(z_i) - z_{i,y_i}, differentiated by JAX's autodiff."""
    return jnp.mean(jax.scipy.special.logsumexp(z, axis=1) - jnp.sum(onehot * z, axis=1))


def test_cross_entropy_derivatives_equal_autodiff_of_the_textbook_form(rng):
    z = jnp.asarray(3.0 * rng.standard_normal((7, 4)))
    onehot = jnp.eye(4)[jnp.array([0, 1, 2, 3, 0, 1, 3])]
    # jitted: op by op, the Hessian's hundreds of small primitives each compile (20 s)
    grad, hessian = jax.jit(jax.grad(cross_entropy)), jax.jit(jax.hessian(cross_entropy))
    np.testing.assert_allclose(
        grad(z, onehot), jax.jit(jax.grad(textbook_cross_entropy))(z, onehot),
        rtol=1e-13, atol=1e-16,
    )  # fmt: skip
    np.testing.assert_allclose(
        hessian(z, onehot), jax.jit(jax.hessian(textbook_cross_entropy))(z, onehot),
        rtol=1e-12, atol=1e-15,
    )  # fmt: skip
    # the class axis may come first: (K, N) logits give the same value and the transposed gradient
    assert float(cross_entropy(z.T, onehot.T, 0)) == pytest.approx(
        float(cross_entropy(z, onehot)), rel=1e-15
    )
    np.testing.assert_allclose(
        jax.grad(cross_entropy)(z.T, onehot.T, 0), jax.grad(cross_entropy)(z, onehot).T, rtol=1e-14
    )


def test_sequential_lapack_helpers_equal_jnp_linalg(rng):
    a = jnp.asarray(rng.standard_normal((3, 4, 6)))
    sym = a @ jnp.swapaxes(a, 1, 2)
    np.testing.assert_allclose(jax.vmap(linalg.pinv)(a), jax.vmap(jnp.linalg.pinv)(a), atol=1e-13)
    np.testing.assert_allclose(
        jax.vmap(linalg.singular_values)(a), jnp.linalg.svd(a, compute_uv=False), rtol=1e-13
    )
    np.testing.assert_allclose(
        jax.vmap(linalg.eigvalsh)(sym), jnp.linalg.eigvalsh(sym), rtol=1e-12, atol=1e-12
    )


GD = {
    "model": {"name": "ufm-ce", "classes": 3, "dim": 4, "per_class": 2},
    "dynamics": {"kind": "gd", "steps": 41, "lr": 0.3, "saves": 3},
    "init": {"count": 10, "seed": 1},
    "run": {"precision": "float64"},
}


def test_gd_in_vectors_of_inits_equals_one_vmap():
    def with_width(width):
        return simulation.simulate({**GD, "run": {**GD["run"], "vector_width": width}})

    whole = with_width(10)  # one vector: a plain vmap of all ten
    for width in (1, 4, -1):  # 4 pads 10 inits to 12; -1 is the default (8 for gd)
        ds = with_width(width)
        assert list(ds.init.values) == list(range(10))
        assert (ds["status"] == "ok").all()
        for name in ("W", "H", "b", "loss", "nc1"):
            np.testing.assert_allclose(ds[name], whole[name], rtol=1e-13, atol=1e-15)


def test_default_vector_width_follows_the_platform():
    cfg = simulation.as_config(GD)
    assert batch.vector_width(cfg.dynamics, platform="cpu") == batch.GD_VECTOR_WIDTH
    assert batch.vector_width(cfg.dynamics, platform="gpu") == 0  # the whole batch per kernel
    assert batch.vector_width(cfg.dynamics, 4, platform="gpu") == 4  # asked for: kept
    flow = simulation.as_config({**GD, "dynamics": {"kind": "flow", "t1": 1.0}}).dynamics
    # on a CPU a flow's vector holds at most FLOW_VECTOR_BYTES of state, 1 to 8 inits
    assert batch.vector_width(flow, platform="cpu", state_bytes=53_840) == 1  # K=10 reference
    assert batch.vector_width(flow, platform="cpu", state_bytes=26_920) == 1  # the same, float32
    assert batch.vector_width(flow, platform="cpu", state_bytes=4_000) == 4
    assert batch.vector_width(flow, platform="cpu", state_bytes=1_600) == 8
    assert batch.vector_width(flow, platform="gpu", state_bytes=1_600) == 0
    for root_finding in ({"solver": "kvaerno5"}, {"stop_grad_tol": 1e-6}, {"reparam": "loss"}):
        dynamics = dataclasses.replace(flow, **root_finding)
        assert batch.vector_width(dynamics, platform="cpu", state_bytes=1_600) == 0


def test_vector_width_must_be_positive_or_default():
    with pytest.raises(ConfigError, match=r"^run\.vector_width: must be >= 1"):
        simulation.as_config({**GD, "run": {"vector_width": 0}})


def test_two_host_devices_do_not_deadlock_on_nc1_at_ten_classes(tmp_path):
    """Batched SVDs spread over the thread pool deadlocked with 2 host devices (JAX 0.10.2)."""
    script = (
        "import jax\nfrom gflow import simulation\n"
        "ds = simulation.simulate({'model': {'name': 'ufm-ce', 'classes': 10, 'dim': 32, "
        "'per_class': 2}, 'dynamics': {'kind': 'gd', 'steps': 4, 'saves': 2}, "
        "'init': {'count': 16}})\n"
        "print(jax.local_device_count(), int((ds['status'] == 'ok').sum()))\n"
    )
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=240, check=True)  # fmt: skip
    assert done.stdout.split()[-2:] == ["2", "16"]


def test_bench_command_records_throughput(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--inits", "1", "3", "--steps", "4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert [row["inits"] for row in record["gd"]] == [1, 3]
    for row in record["gd"]:
        assert row["init_steps_per_second"] == pytest.approx(
            row["inits"] * row["steps"] / row["run_seconds"]
        )
        assert 0 < row["roofline_fraction"] < 1 and row["status_ok"] == row["inits"]
    assert record["peak_matmul_gflops"] > 0 and record["machine"]["cores"] >= 1
    assert "init-steps/s" in capsys.readouterr().out
    assert cli.main(["bench", "--inits", "0"]) == 2


def test_benchmark_scripts_smoke_run(tmp_path, monkeypatch):
    """Tiny sizes, no PyTorch peers, in this process: each script runs, writes its JSON and
    figure."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # `python benchmarks/x.py` puts the script's folder on sys.path; runpy does not.
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    runs = {
        "gd_throughput.py": ["--no-torch", "--inits", "2", "--steps", "3", "--process-inits", "0"],
        "scaling.py": ["--largest", "1", "--steps", "3"],
        "work_precision.py": ["--quick", "--inits", "2", "--t1", "2"],
    }
    for script, args in runs.items():
        out = tmp_path / script.replace(".py", ".json")
        monkeypatch.setattr(sys, "argv", [script, *args, "--out", str(out)])
        runpy.run_path(str(ROOT / "benchmarks" / script), run_name="__main__")
        assert out.with_suffix(".png").stat().st_size > 10_000
        record = json.loads(out.read_text())
        assert record["machine"]["cores"] >= 1
    precision = json.loads((tmp_path / "work_precision.json").read_text())
    assert all(row["error"] < 1e-4 for row in precision["rows"])
    scaling = json.loads((tmp_path / "scaling.json").read_text())
    assert [row["inits"] for row in scaling["rows"]] == [1]
