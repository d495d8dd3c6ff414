"""Steady state side by side with another checkout (issue 15: no worse than before).

Runs, alternately in fresh processes for this checkout and a baseline checkout (for example a
`git worktree` of the previous commit), the GD reference problem (UFM-CE K=10, d=32, n=20,
float32, SGD, B = 256 inits, 2,000 steps) and the flow reference problem (same model, 64 inits,
Tsit5 to t = 5000 at rtol 1e-6, float32), and records each one's solve time (``run_seconds``,
compilation apart): medians and the ratio this / baseline.

    .venv/bin/python benchmarks/steady_state_ab.py --baseline /tmp/base [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]

PROBLEMS = {
    "gd_256": {
        "model": {"name": "ufm-ce", "classes": 10, "dim": 32, "per_class": 20},
        "dynamics": {"kind": "gd", "optimizer": "sgd", "lr": 0.1, "steps": 2000, "saves": 5},
        "init": {"count": 256, "scale": 0.1},
        "run": {"precision": "float32"},
    },
    "flow_64": {
        "model": {"name": "ufm-ce", "classes": 10, "dim": 32, "per_class": 20},
        "dynamics": {"kind": "flow", "solver": "tsit5", "t1": 5000.0, "rtol": 1e-6,
                     "atol": 1e-6, "saves": 20},
        "init": {"count": 64, "scale": 0.1},
        "run": {"precision": "float32"},
    },
}  # fmt: skip

CHILD = """
import json, sys
from gflow.distributed import use_cpu_cores
use_cpu_cores()
from gflow import simulation
cfg = json.loads(sys.argv[1])
simulation.simulate(cfg)
print(json.dumps(min(simulation.simulate(cfg).attrs["run_seconds"] for _ in range(2))))
"""


def solve_seconds(checkout: Path, problem: dict) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout), GFLOW_CACHE_DIR="off")
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(problem)], check=True,
                         capture_output=True, text=True, env=env)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="path of the baseline checkout")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "steady_state_ab.json"))
    args = parser.parse_args()
    from gflow import bench

    base = Path(args.baseline).resolve()
    revision = lambda p: subprocess.run(  # noqa: E731
        ["git", "-C", str(p), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    record = {"machine": bench.machine(), "this": revision(ROOT), "baseline": revision(base)}
    for name, problem in PROBLEMS.items():
        times = {"this": [], "baseline": []}
        for _ in range(args.repeats):  # alternate, so that drifts of the machine hit both
            times["this"].append(solve_seconds(ROOT, problem))
            times["baseline"].append(solve_seconds(base, problem))
        this, baseline = statistics.median(times["this"]), statistics.median(times["baseline"])
        record[name] = {**times, "median_this": this, "median_baseline": baseline,
                        "ratio_this_over_baseline": this / baseline}  # fmt: skip
        print(f"{name}: this {this:.3f} s, baseline {baseline:.3f} s, ratio {this / baseline:.3f}")
    bench.write_record(record, args.out)


if __name__ == "__main__":
    main()
