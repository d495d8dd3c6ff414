"""Whole processes, timed from start to exit as a user waits for them, side by side in one run.

Flow: the reference problem (UFM-CE K=10, d=32, n=20, 64 inits, Tsit5 to t = 5000 at
rtol = atol = 1e-6, float32) as one ``gflow run`` with its figures, cold (no compilation cache)
and warm (the same run again with the persistent cache filled), against torchode's whole
process on the same work (start Python, import torch and torchode, build the same vector field,
solve the 64 inits with a step size each); ``--quiet`` throughout, and the warm run once more
with its progress lines (the command as typed: since 0.2.4 the same compiled program). GD: the
reference GD problem (B = 1024, 2,000 SGD steps, float32) as one ``gflow run`` cold and warm,
against the PyTorch per-init loop's whole process (import, then torch.optim.SGD on one init at
a time), timed on ``--loop-inits`` inits and extrapolated to 1024 (a full loop takes minutes).

Every contender runs ``--repeats`` times, interleaved; the record keeps all times and the
medians. Writes benchmarks/results/whole_process.json with the machine.

    python benchmarks/whole_process.py [--repeats 3] [--loop-inits 8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from compile_amortization import REFERENCE_RUN  # benchmarks/, beside this script

from gflow import bench

RESULTS = Path(__file__).parent / "results"
HERE = Path(__file__).resolve().parent

# torchode on the flow reference problem: the same field as gflow's (benchmarks/torch_peers.py),
# a step size per init; prints its evaluations and the inits that finished
TORCHODE = """\
import torch, torchode
from torch_peers import STATE_SIZE, ufm_ce_field
torch.manual_seed(0)
B = 64
term = torchode.ODETerm(ufm_ce_field())
solver = torchode.AutoDiffAdjoint(torchode.Tsit5(term=term),
                                  torchode.IntegralController(atol=1e-6, rtol=1e-6, term=term))
sol = solver.solve(torchode.InitialValueProblem(
    y0=0.1 * torch.randn(B, STATE_SIZE), t_start=torch.zeros(B), t_end=torch.full((B,), 5000.0)))
print(int(sol.stats["n_f_evals"].max()), sol.status.tolist().count(0))
"""

# the per-init PyTorch loop on {inits} inits; prints the seconds from the start of the process
# to the first init, and per init
TORCH_LOOP = """\
import time
start = time.perf_counter()
import torch
from torch_peers import sgd_one_init
torch.manual_seed(0)
ready = time.perf_counter()
for _ in range({inits}):
    sgd_one_init({steps})
print(ready - start, (time.perf_counter() - ready) / {inits})
"""


def timed(args: list[str], env: dict) -> tuple[float, str]:
    """Seconds of one process from start to exit, and its stdout."""
    start = time.perf_counter()
    done = subprocess.run(args, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def gflow_run(
    config: Path, out: Path, cache: str, figures: bool = True, quiet: bool = True
) -> float:
    env = dict(os.environ, GFLOW_CACHE_DIR=cache, MPLBACKEND="Agg")
    args = [sys.executable, "-m", "gflow.cli", "run", str(config), "--overwrite", "--out", str(out)]
    args += ["--quiet"] if quiet else []
    args += [] if figures else ["--no-plots"]
    return timed(args, env)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--loop-inits", type=int, default=8)
    parser.add_argument("--out", type=Path, default=RESULTS / "whole_process.json")
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    loop = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "flow.toml").write_text(REFERENCE_RUN.format(out=work / "flow"))
        (work / "gd.toml").write_text(bench.config_toml(bench.reference_config(1024), None))
        cache = str(work / "cache")
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
        )
        # fill the persistent cache once (not timed): "warm" is a second run of the same config
        for name in ("flow", "gd"):
            gflow_run(work / f"{name}.toml", work / name, cache)
        for r in range(args.repeats):
            rows = {
                "flow_cold": lambda: gflow_run(work / "flow.toml", work / "flow", "off"),
                "flow_cold_no_figures": lambda: gflow_run(
                    work / "flow.toml", work / "flow", "off", figures=False
                ),  # fmt: skip
                "flow_warm": lambda: gflow_run(work / "flow.toml", work / "flow", cache),
                "flow_warm_no_figures": lambda: gflow_run(
                    work / "flow.toml", work / "flow", cache, figures=False
                ),  # fmt: skip
                "flow_warm_with_progress": lambda: gflow_run(
                    work / "flow.toml", work / "flow", cache, quiet=False
                ),  # fmt: skip
                "torchode": lambda: timed([sys.executable, "-c", TORCHODE], env)[0],
                "gd_cold": lambda: gflow_run(work / "gd.toml", work / "gd", "off"),
                "gd_warm": lambda: gflow_run(work / "gd.toml", work / "gd", cache),
            }
            for name, run in rows.items():
                times.setdefault(name, []).append(run())
                print(f"repeat {r + 1}: {name} {times[name][-1]:.2f} s", flush=True)
            seconds, out = timed(
                [sys.executable, "-c", TORCH_LOOP.format(inits=args.loop_inits, steps=2000)], env
            )
            setup, per_init = (float(x) for x in out.split())
            loop.append({"process_seconds": seconds, "setup_seconds": setup,
                         "seconds_per_init": per_init,
                         "estimated_1024_seconds":
                             seconds + per_init * (1024 - args.loop_inits)})  # fmt: skip
            print(f"repeat {r + 1}: torch loop {loop[-1]['estimated_1024_seconds']:.0f} s (est.)")
    median = {name: float(np.median(v)) for name, v in times.items()}
    loop_1024 = float(np.median([x["estimated_1024_seconds"] for x in loop]))
    record = {
        "flow_problem": "ufm-ce K=10 d=32 n=20, 64 inits, tsit5 t1=5000 rtol=atol=1e-6, float32",
        "gd_problem": "ufm-ce K=10 d=32 n=20, 1024 inits, 2000 SGD steps lr 0.1, float32",
        "seconds": times,
        "median_seconds": median,
        "torch_loop": loop,
        "torch_loop_1024_estimated_seconds": loop_1024,
        "ratios": {
            "flow_cold_over_torchode": median["flow_cold"] / median["torchode"],
            "flow_warm_over_torchode": median["flow_warm"] / median["torchode"],
            "gd_cold_over_torch_loop": median["gd_cold"] / loop_1024,
            "gd_warm_over_torch_loop": median["gd_warm"] / loop_1024,
        },
        "machine": bench.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    bench.write_record(record, args.out)
    print(json.dumps({"median_seconds": median, "ratios": record["ratios"]}, indent=2))


if __name__ == "__main__":
    main()
