"""Scaling of GD with the number of inits B: wall time, throughput, memory, roofline (issue 6).

Reference problem (UFM-CE K=10, d=32, n=20, float32, SGD lr 0.1), 500 steps, B from 1 up to
--largest. Cost should grow linearly in B once B saturates the cores. Also recorded: the state
bytes per init (parameters; SGD keeps no optimizer state), the process's peak resident memory,
and the fractions of the machine's measured peak matmul rate and memory bandwidth.

Writes benchmarks/results/scaling.json and .png.

    .venv/bin/python benchmarks/scaling.py [--largest 16384] [--steps 500]
"""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

from gflow.distributed import use_cpu_cores

use_cpu_cores()


from gflow import batch, bench, simulation  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def state_bytes_per_init() -> int:
    return batch.state_bytes(
        simulation.build_model(simulation.as_config(bench.reference_config(1)))
    )


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["rows"]
    batches = [r["inits"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    left.plot(batches, [r["run_seconds"] for r in rows], "o-", label="measured")
    last = rows[-1]
    left.plot(batches, [last["run_seconds"] * b / last["inits"] for b in batches], "k--",
              lw=0.8, label="linear in B")  # fmt: skip
    left.set(xscale="log", yscale="log", xlabel="initializations B",
             ylabel=f"run time of {record['steps']} steps (s)")  # fmt: skip
    left.legend(fontsize=8)
    right.plot(batches, [100 * r["roofline_fraction"] for r in rows], "o-")
    right.set(xscale="log", xlabel="initializations B",
              ylabel="% of peak matmul GFLOP/s")  # fmt: skip
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle("UFM-CE GD, K=10, d=32, n=20, float32: scaling with B")
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--largest", type=int, default=16384)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    args = parser.parse_args()
    peak = bench.peak_matmul_gflops()
    bandwidth = bench.memory_bandwidth_gbs()
    per_init = state_bytes_per_init()
    rows, count = [], 1
    while count <= args.largest:
        row = bench.gd_throughput(bench.reference_config(count, args.steps))
        row["roofline_fraction"] = row["gflops"] / peak
        # as if every step streamed each init's state from memory and back; above 1 the states
        # cannot be coming from DRAM: they stay in cache across steps (vectors of 8 inits)
        row["bandwidth_fraction"] = 2 * per_init * row["init_steps_per_second"] / 1e9 / bandwidth
        row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(row)
        print(f"B={count:6d}: {row['run_seconds']:8.3f} s, {row['init_steps_per_second']:.3g} "
              f"init-steps/s, {100 * row['roofline_fraction']:.1f}% of peak matmul, "
              f"peak RSS {row['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
        count *= 4
    record = {"benchmark": "scaling", "machine": bench.machine(), "steps": args.steps,
              "peak_matmul_gflops": peak, "memory_bandwidth_gbs": bandwidth,
              "state_bytes_per_init": per_init, "rows": rows}  # fmt: skip
    bench.write_record(record, args.out, plot)


if __name__ == "__main__":
    main()
