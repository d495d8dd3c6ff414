"""Steady-state speed of gflow on this machine: GD throughput and the hardware ceilings.

The reference problem (issue 6) is UFM-CE with K=10, d=32, n=20, lambda = 5e-3, init scale 0.1,
float32, SGD at lr 0.1 for 2,000 steps. Throughput is init-steps per second of the compiled run
(``run_seconds`` of the results; compilation is timed apart). One GD step costs
3 * 2 N d K = 384,000 flop (the three products H W^T, G^T H, G W), which with the measured peak
matmul rate gives the compute roofline.
"""

from __future__ import annotations

import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gflow.distributed import usable_cores


def reference_config(inits: int, steps: int = 2000, precision: str = "float32") -> dict:
    """The issue-6 reference GD problem as a config mapping (saves the state 5 times)."""
    return {
        "model": {"name": "ufm-ce", "classes": 10, "dim": 32, "per_class": 20,
                  "wd_W": 5e-3, "wd_H": 5e-3, "wd_b": 5e-3},
        "dynamics": {"kind": "gd", "optimizer": "sgd", "lr": 0.1, "steps": steps,
                     "saves": min(5, steps + 1)},
        "init": {"count": inits, "seed": 0, "scale": 0.1},
        "run": {"precision": precision},
    }  # fmt: skip


def config_toml(cfg: dict, out: str | None = None) -> str:
    """A config mapping (:func:`reference_config`) as the TOML text of a ``gflow run`` file.

    Args:
        cfg: the config mapping.
        out: ``run.out``, the results folder (None: the config's own).

    Returns:
        The TOML (:func:`gflow.config.dumps`), every field written out.
    """
    from gflow import config

    if out is not None:
        cfg = {**cfg, "run": {**cfg.get("run", {}), "out": out}}
    return config.dumps(config.from_dict(cfg))


def step_flops(cfg: dict) -> float:
    """Multiply-adds of one UFM GD step, times 2: the three (N, d, K) products."""
    m = cfg["model"]
    return 3 * 2 * m["classes"] * m["per_class"] * m["dim"] * m["classes"]


def gd_throughput(cfg: dict, repeats: int = 2) -> dict[str, Any]:
    """Compile once, run ``repeats`` times; the best run gives init-steps per second."""
    from gflow import simulation

    runs = [simulation.simulate(cfg) for _ in range(repeats)]
    count, steps = cfg["init"]["count"], cfg["dynamics"]["steps"]
    best = min(ds.attrs["run_seconds"] for ds in runs)
    return {
        "inits": count,
        "steps": steps,
        "compile_seconds": runs[0].attrs["compile_seconds"],
        "run_seconds": best,
        "init_steps_per_second": count * steps / best,
        "gflops": count * steps * step_flops(cfg) / best / 1e9,
        "status_ok": int((runs[-1]["status"] == "ok").sum()),
    }


def products_alone_rate(
    inits: int, steps: int = 2000, layout: str = "rows", precision: str = "float32"
) -> float:
    """The bound of a UFM GD step: its three matrix products and nothing else, in init-steps/s.

    Each step of the reference problem (K=10, d=32, N=200) forms the logits Z (K, N), then
    the products of the features' and the classifier's gradients with Z (with H as rows:
    Z = W H^T, Z^T W and Z H; as columns: Z = W H, W^T Z and Z H^T) and
    moves W and H by a negligible multiple of them (which keeps every product live), run as
    gflow runs GD: inits in vectors of :data:`gflow.batch.GD_VECTOR_WIDTH` on each local
    device, two steps per loop iteration. Steady state, best of 3.

    Args:
        inits: B, a multiple of the devices times the vector width.
        steps: the steps of each init.
        layout: "rows": H (N, d), as the UFM models store it (the products then transpose H);
            "columns": H stored (d, N), the layout whose products need no transpose.
        precision: "float32" or "float64".

    Returns:
        init-steps per second.
    """
    from gflow import batch, distributed

    K, d, N = 10, 32, 200
    dtype = jnp.dtype(precision)
    shrink = jnp.asarray(1e-30, dtype)

    def one(_, W, H):
        def step(_, state):
            W, H = state
            if layout == "columns":  # H (d, N)
                Z = W @ H
                return W - shrink * (Z @ H.T), H - shrink * (W.T @ Z)
            Z = W @ H.T  # H (N, d)
            return W - shrink * (Z @ H), H - shrink * (Z.T @ W)

        return jax.lax.fori_loop(0, steps, step, (W, H), unroll=2)

    mesh = distributed.local_mesh()
    solve = batch.vectorized(one, batch.GD_VECTOR_WIDTH)
    run = jax.jit(distributed.per_device(lambda W, H: solve(None, W, H), mesh))
    key_W, key_H = jax.random.split(jax.random.PRNGKey(0))
    H_shape = (inits, d, N) if layout == "columns" else (inits, N, d)
    args = distributed.shard_inits(
        (0.1 * jax.random.normal(key_W, (inits, K, d), dtype),
         0.1 * jax.random.normal(key_H, H_shape, dtype)),
        mesh,
    )  # fmt: skip
    return inits * steps / _best_seconds(lambda: run(*args))


def _best_seconds(fn, repeats: int = 3) -> float:
    jax.block_until_ready(fn())
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def peak_matmul_gflops(size: int = 2048, dtype=jnp.float32) -> float:
    """GFLOP/s of one large dense matmul on the default device (the compute ceiling)."""
    a = jnp.ones((size, size), dtype)
    matmul = jax.jit(lambda x: x @ x)
    return 2 * size**3 / _best_seconds(lambda: matmul(a)) / 1e9


def memory_bandwidth_gbs(megabytes: int = 256) -> float:
    """GB/s of a streaming read + write of ``megabytes`` of float32 (the memory ceiling)."""
    x = jnp.ones((megabytes * 2**20 // 4,), jnp.float32)
    scale = jax.jit(lambda v: v * 1.000001)
    return 2 * x.nbytes / _best_seconds(lambda: scale(x)) / 1e9


def machine() -> dict[str, Any]:
    """Where the numbers were taken: CPU model, cores, devices and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    device = jax.devices()[0]
    return {
        "cpu": cpu,
        "cores": usable_cores(),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "devices": jax.device_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
    }


def run(inits: list[int], steps: int = 2000, bound: bool = False) -> dict[str, Any]:
    """GD throughput at each batch size plus the machine's matmul and bandwidth ceilings;
    with ``bound``, also the rate of the step's products alone (:func:`products_alone_rate`,
    both layouts) where B fills whole vectors on every device."""
    rows = [gd_throughput(reference_config(count, steps)) for count in inits]
    peak = peak_matmul_gflops()
    from gflow.batch import GD_VECTOR_WIDTH

    vector = jax.local_device_count() * GD_VECTOR_WIDTH  # one vector of inits on every device
    for row in rows:
        row["roofline_fraction"] = row["gflops"] / peak
        if bound and row["inits"] % vector == 0:  # the step's products alone, as gflow runs them
            products = products_alone_rate(row["inits"], steps)
            row["products_alone_init_steps_per_second"] = products
            row["products_alone_columns_layout"] = products_alone_rate(
                row["inits"], steps, "columns"
            )
            row["products_bound_fraction"] = row["init_steps_per_second"] / products
    return {
        "machine": machine(),
        "problem": "ufm-ce K=10 d=32 n=20 lambda=5e-3 float32, SGD lr 0.1",
        "peak_matmul_gflops": peak,
        "memory_bandwidth_gbs": memory_bandwidth_gbs(),
        "gd": rows,
    }


def write_record(record: dict[str, Any], out, plot=None) -> None:
    """Write ``record`` as JSON to ``out`` atomically and, given ``plot(record, path)``, its
    figure beside it (same name, .png); print where they went."""
    import json
    from pathlib import Path

    from gflow.results import write_text

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(out, json.dumps(record, indent=2) + "\n")
    print(f"recorded: {out}")
    if plot is not None:
        plot(record, out.with_suffix(".png"))
        print(f"figure: {out.with_suffix('.png')}")


def format_table(record: dict[str, Any]) -> str:
    """The record as a plain-text table."""
    lines = [
        f"{record['machine']['cpu']}, {record['machine']['cores']} cores, "
        f"{record['machine']['devices']} {record['machine']['platform']} device(s)",
        f"peak matmul {record['peak_matmul_gflops']:.0f} GFLOP/s, "
        f"memory {record['memory_bandwidth_gbs']:.1f} GB/s",
        f"{'inits':>7} {'compile s':>10} {'run s':>8} {'init-steps/s':>13} {'GFLOP/s':>8} "
        f"{'roofline':>8}",
    ]
    for row in record["gd"]:
        lines.append(
            f"{row['inits']:>7} {row['compile_seconds']:>10.2f} {row['run_seconds']:>8.3f} "
            f"{row['init_steps_per_second']:>13.3g} {row['gflops']:>8.1f} "
            f"{100 * row['roofline_fraction']:>7.1f}%"
            + (f"  {100 * row['products_bound_fraction']:.0f}% of the products alone"
               if "products_bound_fraction" in row else "")
        )  # fmt: skip
    return "\n".join(lines)
