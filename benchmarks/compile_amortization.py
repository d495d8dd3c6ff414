"""What a researcher waits for: compilation amortized over hyperparameter values (issue 15).

Measured side by side in one run, whole processes where a user feels the whole process:

- sweep: a 16 x 16 (wd_W, wd_H) UFM-CE phase diagram (K=4, d=8, n=5, 8 inits a point, flow to
  t = 1e4, float64) as one `gflow sweep` process, against one point of it as one `gflow run`
  process (the cost of each point when every point compiles its own solve); a few points of the
  sweep are checked bit-for-bit against that point solved alone;
- again: in one Python process, `gflow.simulate` of a config and then of the same config with
  another weight decay, t1 and seed: the second call's time beyond its solve (target <= 0.5 s);
- whole run: where one `gflow run` of the flow reference problem (UFM-CE K=10, d=32, n=20, 64
  inits, Tsit5 to t = 5000 at rtol 1e-6, float32) goes: a process that only imports gflow and
  JAX, the run with and without figures, and the compile and solve times it records.

Writes benchmarks/results/compile_amortization.json and .png.

    .venv/bin/python benchmarks/compile_amortization.py [--side 16]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def sweep_config(side: int, out: Path) -> str:
    values = ", ".join(f"{v:.6g}" for v in np.geomspace(1e-4, 5e-2, side))
    return f"""\
[model]
name = "ufm-ce"
classes = 4
dim = 8
per_class = 5
wd_W = [{values}]
wd_H = [{values}]
wd_b = 5e-3

[dynamics]
t1 = 10000.0

[init]
count = 8

[run]
precision = "float64"
out = "{out}"
"""


def point_config(sweep_text: str, wd_W: float, wd_H: float, out: Path) -> str:
    lines = []
    for line in sweep_text.splitlines():
        if line.startswith("wd_W ="):
            line = f"wd_W = {wd_W!r}"
        elif line.startswith("wd_H ="):
            line = f"wd_H = {wd_H!r}"
        elif line.startswith("out ="):
            line = f'out = "{out}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


def whole_process(args: list[str]) -> float:
    """Seconds of one `gflow` process, from start to exit."""
    env = dict(os.environ, GFLOW_CACHE_DIR="off", MPLBACKEND="Agg")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "gflow.cli", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def measure_sweep(side: int, work: Path) -> dict:
    sweep_out, point_out = work / "sweep", work / "point"
    text = sweep_config(side, sweep_out)
    (work / "sweep.toml").write_text(text)
    values = np.geomspace(1e-4, 5e-2, side)
    wd_W, wd_H = float(f"{values[side // 3]:.6g}"), float(f"{values[side - 2]:.6g}")
    (work / "point.toml").write_text(point_config(text, wd_W, wd_H, point_out))
    point_seconds = whole_process(["run", str(work / "point.toml"), "--quiet", "--no-plots"])
    sweep_seconds = whole_process(["sweep", str(work / "sweep.toml"), "--quiet"])

    from gflow import results, sweep

    alone = results.load(point_out / "results.nc")
    folded = sweep.load_point(sweep_out, wd_W=wd_W, wd_H=wd_H)
    identical = all(
        np.array_equal(alone[v].values, folded[v].values) for v in ("loss", "nc1", "W", "H", "b")
    )
    return {
        "points": side * side,
        "inits_per_point": 8,
        "sweep_seconds": sweep_seconds,
        "one_point_run_seconds": point_seconds,
        "points_times_one_run_seconds": side * side * point_seconds,
        "speedup_vs_a_process_per_point": side * side * point_seconds / sweep_seconds,
        "checked_point": {"wd_W": wd_W, "wd_H": wd_H, "bit_identical": identical},
    }


REFERENCE_RUN = """\
[model]
name = "ufm-ce"
classes = 10
dim = 32
per_class = 20

[dynamics]
solver = "tsit5"
t1 = 5000.0
rtol = 1e-6
atol = 1e-6
saves = 40

[init]
count = 64

[run]
precision = "float32"
out = "{out}"
"""


def measure_whole_run(work: Path) -> dict:
    from gflow import results

    config = work / "reference.toml"
    config.write_text(REFERENCE_RUN.format(out=work / "reference"))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gflow.simulation, jax; jax.devices()"],
                   check=True, env=dict(os.environ, GFLOW_CACHE_DIR="off"))  # fmt: skip
    import_seconds = time.perf_counter() - start
    bare = whole_process(["run", str(config), "--quiet", "--no-plots"])
    full = whole_process(["run", str(config), "--quiet"])
    ds = results.load(work / "reference" / "results.nc")
    compile_s, run_s = ds.attrs["compile_seconds"], ds.attrs["run_seconds"]
    return {
        "problem": "ufm-ce K=10 d=32 n=20, 64 inits, tsit5 t1=5000 rtol 1e-6, float32",
        "whole_seconds_with_figures": full,
        "whole_seconds_without_figures": bare,
        "import_seconds": import_seconds,
        "compile_seconds": compile_s,
        "run_seconds": run_s,
        "figures_seconds": full - bare,
        "rest_seconds": bare - import_seconds - compile_s - run_s,
    }


def measure_again() -> dict:
    from gflow import simulation

    base = {
        "model": {"name": "ufm-ce", "classes": 4, "dim": 8, "per_class": 5},
        "dynamics": {"t1": 1000.0},
        "init": {"count": 8},
        "run": {"precision": "float64"},
    }
    start = time.perf_counter()
    first = simulation.simulate(base)
    first_seconds = time.perf_counter() - start
    again = {**base, "model": {**base["model"], "wd_W": 1e-3}, "dynamics": {"t1": 2500.0},
             "init": {"count": 8, "seed": 3}}  # fmt: skip
    start = time.perf_counter()
    second = simulation.simulate(again)
    second_seconds = time.perf_counter() - start
    return {
        "first_call_seconds": first_seconds,
        "first_compile_seconds": first.attrs["compile_seconds"],
        "second_call_seconds": second_seconds,
        "second_run_seconds": second.attrs["run_seconds"],
        "second_overhead_seconds": second_seconds - second.attrs["run_seconds"],
        "cache": simulation.cache_info(),
    }


def plot(record: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    s = record["sweep"]
    fig, ax = plt.subplots(figsize=(6.0, 2.6), layout="constrained")
    labels = [f"{s['points']} processes\n(one per point, estimated)", "one gflow sweep"]
    bars = [s["points_times_one_run_seconds"], s["sweep_seconds"]]
    ax.barh(labels, bars, color=["0.6", "C0"])
    for y, v in enumerate(bars):
        ax.text(v, y, f" {v:.0f} s", va="center")
    ax.set_xscale("log")
    ax.set_xlim(1, 5 * max(bars))
    ax.set_xlabel("wall-clock seconds (whole processes)")
    ax.set_title(f"{int(np.sqrt(s['points']))}x{int(np.sqrt(s['points']))} UFM-CE sweep, "
                 f"{record['machine']['cpu']}", fontsize=9)  # fmt: skip
    fig.savefig(path, dpi=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=16, help="points per swept axis")
    parser.add_argument("--out", default=str(RESULTS / "compile_amortization.json"))
    args = parser.parse_args()
    from gflow import bench

    with tempfile.TemporaryDirectory() as tmp:
        record = {"sweep": measure_sweep(args.side, Path(tmp))}
        record["whole_run"] = measure_whole_run(Path(tmp))
    record["again"] = measure_again()
    record["machine"] = bench.machine()
    s, a = record["sweep"], record["again"]
    speedup, same = s["speedup_vs_a_process_per_point"], s["checked_point"]["bit_identical"]
    print(f"sweep of {s['points']} points: {s['sweep_seconds']:.1f} s whole process; one point "
          f"alone {s['one_point_run_seconds']:.1f} s ({speedup:.0f}x a process per point); "
          f"bit-identical: {same}")  # fmt: skip
    second, solve = a["second_call_seconds"], a["second_run_seconds"]
    print(f"simulate again with other values: {second:.3f} s, of which solve {solve:.3f} s "
          f"(first call {a['first_call_seconds']:.1f} s)")  # fmt: skip
    w = record["whole_run"]
    print(f"gflow run of the reference flow problem: {w['whole_seconds_with_figures']:.1f} s "
          f"(import {w['import_seconds']:.1f}, compile {w['compile_seconds']:.1f}, solve "
          f"{w['run_seconds']:.2f}, figures {w['figures_seconds']:.1f}, the rest "
          f"{w['rest_seconds']:.1f})")  # fmt: skip
    bench.write_record(record, args.out, plot)


if __name__ == "__main__":
    main()
