"""Fused Runge-Kutta steps against diffrax's own: time per accepted step, and the floor.

Problem: the reference UFM-CE (K=10, d=32, n=20, lambda = 5e-3, init scale 0.1), gradient flow
-grad L to t1 = 5000 under a PID controller, 20 saved times (SaveAt ts, so every step builds its
dense output as gflow's runs do), 8 inits solved one at a time (a ``lax.map`` over 8 vmaps of a
single init, as gflow runs its CPU flows: inits in sequence), one CPU device, float64 and
float32. Contenders, each compiled once and timed in interleaved rounds (median of ``--repeats``
after a warm-up run):

- diffrax.Tsit5 and gflow.dynamics.fused.FusedTsit5 (same tableau, same steps);
- diffrax.Bosh3 and FusedBosh3;
- the floor: the vector field -grad L alone, evaluated as often as the solver's accepted steps
  need (6 per step for FSAL Tsit5, 3 for Bosh3) in a ``fori_loop`` (a negligible update keeps
  each evaluation live), the same 8 inits in sequence. No RK step can be faster;
- the solver's own work alone: Tsit5 and FusedTsit5 on y' = -y/1000 (same state shapes, a
  field that costs next to nothing), and its floor.

Prints a table and writes benchmarks/results/fused_rk.json (machine, versions, times, ratios).
The CPU is shared with whatever else runs: the load average is recorded before and after.

    .venv/bin/python benchmarks/fused_rk.py [--repeats 7] [--t1 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from gflow.dynamics.flow import velocity
from gflow.dynamics.fused import FusedBosh3, FusedTsit5
from gflow.models import ufm_ce

jax.config.update("jax_enable_x64", True)
OUT = Path(__file__).parent / "results" / "fused_rk.json"
INITS = 8
TOLERANCES = {"float64": (1e-8, 1e-10), "float32": (1e-5, 1e-7)}  # (rtol, atol)
SOLVERS = {  # name: (class, vector-field evaluations per accepted step)
    "diffrax Tsit5": (diffrax.Tsit5, 6),
    "FusedTsit5": (FusedTsit5, 6),
    "diffrax Bosh3": (diffrax.Bosh3, 3),
    "FusedBosh3": (FusedBosh3, 3),
}
PAIRS = [("diffrax Tsit5", "FusedTsit5"), ("diffrax Bosh3", "FusedBosh3")]


def machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return {
        "processor": platform.processor() or platform.machine(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "devices": f"{jax.device_count()} {jax.devices()[0].platform}",
        "jax": jax.__version__,
        "diffrax": diffrax.__version__,
        "python": platform.python_version(),
    }


def problem(precision: str):
    """The model and its 8 inits as (8, 1, ...): a lax.map over the 8, each a vmap over one."""
    model = ufm_ce(10, 32, 20, dtype=jnp.dtype(precision))
    inits = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(0), INITS))
    return model, jax.tree.map(lambda x: x[:, None], inits)


def cheap_field(y):
    """y' = -1e-3 y: a field that costs next to nothing (the solver's own work alone)."""
    return jax.tree.map(lambda v: -1e-3 * v, y)


def flow_run(move, solver, t1: float, rtol: float, atol: float, dtype):
    """jit: inits (8, 1, ...) -> (final states, accepted steps per init, rejected)."""
    term = diffrax.ODETerm(lambda t, y, args: move(y))
    saves = jnp.linspace(0.0, t1, 20, dtype=dtype)

    def one(y0):
        sol = diffrax.diffeqsolve(
            term, solver, jnp.zeros((), dtype), saves[-1], None, y0,
            saveat=diffrax.SaveAt(ts=saves),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=100_000, throw=False,
        )  # fmt: skip
        final = jax.tree.map(lambda x: x[-1], sol.ys)
        return final, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]

    return jax.jit(lambda ys: jax.lax.map(jax.vmap(one), ys))


def floor_run(move, evaluations: int):
    """jit: inits (8, 1, ...) -> the states after ``evaluations`` evaluations of the field."""

    def one(y0):
        step = lambda _, y: jax.tree.map(lambda a, g: a + 1e-30 * g, y, move(y))  # noqa: E731
        return jax.lax.fori_loop(0, evaluations, step, y0)

    return jax.jit(lambda ys: jax.lax.map(jax.vmap(one), ys))


def floor_name(stock: str) -> str:
    return f"floor ({stock.removeprefix('diffrax ')})"


def timed(fn, arg) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn(arg))
    return time.perf_counter() - start


def measure(precision: str, t1: float, repeats: int) -> dict:
    """Every contender compiled and checked, then timed in interleaved rounds."""
    model, inits = problem(precision)
    dtype = jnp.dtype(precision)
    rtol, atol = TOLERANCES[precision]
    fields = {"": velocity(model.loss), ", y'=-y/1000": cheap_field}
    runs, rows = {}, {}
    for suffix, move in fields.items():
        solvers = SOLVERS if not suffix else {k: SOLVERS[k] for k in PAIRS[0]}
        for base, (cls, per_step) in solvers.items():
            name = base + suffix
            runs[name] = flow_run(move, cls(), t1, rtol, atol, dtype)
            start = time.perf_counter()
            final, accepted, rejected = jax.block_until_ready(runs[name](inits))
            rows[name] = {
                "compile_and_first_run_s": time.perf_counter() - start,
                "accepted_steps": int(np.sum(accepted)),
                "rejected_steps": int(np.sum(rejected)),
                "evaluations_per_step": per_step,
                "final": final,
            }
        for stock, fused in PAIRS if not suffix else PAIRS[:1]:
            stock, fused = stock + suffix, fused + suffix
            finals = (jax.tree.leaves(rows[k]["final"]) for k in (stock, fused))
            diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(*finals, strict=True))
            rows[fused]["max_abs_diff_vs_stock"] = diff
            row = rows[stock]
            per_init = round(row["accepted_steps"] * row["evaluations_per_step"] / INITS)
            name = floor_name(stock)
            runs[name] = floor_run(move, per_init)
            start = time.perf_counter()
            jax.block_until_ready(runs[name](inits))
            rows[name] = {
                "compile_and_first_run_s": time.perf_counter() - start,
                "accepted_steps": row["accepted_steps"],  # per accepted step of that solver
                "evaluations": per_init * INITS,
            }
    for fn in runs.values():  # warm-up
        timed(fn, inits)
    seconds = {name: [] for name in runs}
    for _ in range(repeats):  # interleaved rounds
        for name, fn in runs.items():
            seconds[name].append(timed(fn, inits))
    for name, times in seconds.items():
        row = rows[name]
        row.pop("final", None)
        row["seconds"] = times
        row["median_s"] = float(np.median(times))
        row["us_per_accepted_step"] = 1e6 * row["median_s"] / row["accepted_steps"]
        row["us_per_accepted_step_best"] = 1e6 * min(times) / row["accepted_steps"]
    ratios = {}
    for stock, fused in [*PAIRS, tuple(k + ", y'=-y/1000" for k in PAIRS[0])]:
        us = {k: rows[k]["us_per_accepted_step"] for k in (stock, fused)}
        floor = rows[floor_name(stock)]["us_per_accepted_step"]
        ratios[stock.removeprefix("diffrax ")] = {
            "stock_over_fused": us[stock] / us[fused],
            "stock_over_floor": us[stock] / floor,
            "fused_over_floor": us[fused] / floor,
            "us_saved_per_step": us[stock] - us[fused],
        }
    return {"precision": precision, "rtol": rtol, "atol": atol, "rows": rows, "ratios": ratios}


def table(result: dict) -> str:
    lines = [
        f"{result['precision']} (rtol {result['rtol']:g}, atol {result['atol']:g}); "
        "us per accepted step: median (best) of the rounds",
        f"  {'contender':<28} {'accepted':>8} {'rejected':>8} {'median s':>9} {'us/step':>16}",
    ]
    for name, row in result["rows"].items():
        us = f"{row['us_per_accepted_step']:.1f} ({row['us_per_accepted_step_best']:.1f})"
        lines.append(
            f"  {name:<28} {row['accepted_steps']:>8} {row.get('rejected_steps', ''):>8} "
            f"{row['median_s']:>9.4f} {us:>16}"
        )
    for solver, r in result["ratios"].items():
        lines.append(
            f"  {solver}: stock/fused {r['stock_over_fused']:.2f}x "
            f"({r['us_saved_per_step']:+.1f} us/step), stock/floor {r['stock_over_floor']:.2f}x, "
            f"fused/floor {r['fused_over_floor']:.2f}x"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--t1", type=float, default=5000.0)
    opts = parser.parse_args()
    load_before = os.getloadavg()
    results = [measure(p, opts.t1, opts.repeats) for p in ("float64", "float32")]
    record = {
        "machine": machine(),
        "problem": f"ufm-ce K=10 d=32 n=20 lambda=5e-3 init 0.1, flow to t1={opts.t1:g}, "
        f"20 saves, {INITS} inits in sequence (lax.map of vmaps of 1), one CPU device",
        "repeats": opts.repeats,
        "statistic": "median over interleaved rounds, after one warm-up run each",
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "results": results,
    }
    for result in results:
        print(table(result))
    print(f"load average before {load_before}, after {record['load_average_after']}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded: {OUT}")


if __name__ == "__main__":
    main()
