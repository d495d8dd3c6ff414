"""GD throughput, gflow against the PyTorch ways the field writes it, side by side (issue 6).

Reference problem: UFM-CE K=10, d=32, n=20, lambda = 5e-3, init scale 0.1, float32, SGD lr 0.1.

- gflow: `gflow.bench` (compiled once, best of two runs; compile time apart), B inits at once;
- torch loop: one init at a time with torch.optim.SGD and nn.CrossEntropyLoss, as the published
  NC code runs; its rate does not depend on B (inits run one after another);
- torch bmm: all B inits batched with torch.bmm and one SGD over the stacked tensors;
- whole process: `gflow run` of B=1024 inits in a fresh process (import, compile, run, metrics,
  writing results.nc) against the loop's own time for the same 1024 x 2,000 init-steps.

Writes benchmarks/results/gd_throughput.json and .png. Needs the `bench` extra (`make bench`).

    .venv/bin/python benchmarks/gd_throughput.py [--inits 1 64 1024 4096] [--steps 2000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gflow.distributed import use_cpu_cores

use_cpu_cores()  # before JAX starts: one CPU device per core, as the CLI does

from torch_peers import LAM, LR, PER_CLASS, SCALE, D, K, sgd_one_init  # noqa: E402 -- beside

from gflow import bench  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def torch_device(requested: str) -> str:
    """ "auto": the GPU where PyTorch sees one (as a GPU user would run the peers), else the CPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _rate(work, calls: int, init_steps_per_call: int, device: str) -> float:
    """init-steps/s of ``calls`` calls of ``work`` (warmed up), the GPU's queue drained around."""
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        work()
    _synchronize(device)
    return calls * init_steps_per_call / (time.perf_counter() - start)


def torch_loop_rate(steps: int, inits: int = 2, device: str = "cpu") -> float:
    """init-steps/s of the per-init loop (torch.optim.SGD on one init at a time)."""
    import torch

    torch.manual_seed(0)

    def one_init() -> None:
        sgd_one_init(steps, device)

    one_init()  # warm-up
    return _rate(one_init, inits, steps, device)


def torch_bmm_rate(batch: int, steps: int, device: str = "cpu") -> float:
    """init-steps/s of all ``batch`` inits stacked and stepped together with torch.bmm."""
    import torch

    torch.manual_seed(0)
    labels = torch.arange(K, device=device).repeat_interleave(PER_CLASS).repeat(batch)
    W = (SCALE * torch.randn(batch, K, D, device=device)).requires_grad_()
    H = (SCALE * torch.randn(batch, K * PER_CLASS, D, device=device)).requires_grad_()
    b = (SCALE * torch.randn(batch, 1, K, device=device)).requires_grad_()
    opt = torch.optim.SGD([W, H, b], lr=LR)

    def step() -> None:
        opt.zero_grad()
        logits = torch.bmm(H, W.transpose(1, 2)) + b
        # sum over inits of each init's mean CE: every init gets its own gradient
        fit = torch.nn.functional.cross_entropy(logits.reshape(-1, K), labels) * batch
        decay = W.square().sum() + H.square().sum() + b.square().sum()
        (fit + LAM / 2 * decay).backward()
        opt.step()

    for _ in range(5):  # warm-up
        step()
    return _rate(step, steps, batch, device)


def whole_process_seconds(inits: int, steps: int) -> tuple[float, float]:
    """Wall time of `gflow run` in a fresh process (import, compile, run, metrics, writing):
    with a cold compilation cache, then again with the cache the first run filled."""
    cfg = bench.reference_config(inits, steps)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gd.toml"
        path.write_text(bench.config_toml(cfg, out=f"{tmp}/out"))
        gflow = Path(sys.executable).parent / "gflow"
        env = {**os.environ, "GFLOW_CACHE_DIR": f"{tmp}/cache"}
        times = []
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run([str(gflow), "run", str(path), "--quiet", "--no-plots"], check=True,
                           capture_output=True, env=env)  # fmt: skip
            times.append(time.perf_counter() - start)
        return times[0], times[1]


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    batches = [row["inits"] for row in record["gd"]]
    ax.plot(batches, [row["init_steps_per_second"] for row in record["gd"]], "o-", label="gflow")
    if record.get("torch_bmm"):
        rows = record["torch_bmm"]
        ax.plot([r["inits"] for r in rows], [r["init_steps_per_second"] for r in rows], "s-",
                label="PyTorch, bmm over inits")  # fmt: skip
    if record.get("torch_loop_rate"):
        ax.axhline(record["torch_loop_rate"], color="grey", ls="--",
                   label="PyTorch, one init at a time")  # fmt: skip
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="initializations B",
        ylabel="init-steps per second",
        title="UFM-CE GD, K=10, d=32, n=20, float32",
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--bmm-steps", type=int, default=200, help="steps timed for torch bmm")
    parser.add_argument("--no-torch", action="store_true", help="gflow only (no bench extra)")
    parser.add_argument("--torch-device", default="auto", help="auto: cuda if PyTorch sees one")
    parser.add_argument("--process-inits", type=int, default=1024, help="0: skip `gflow run`")
    parser.add_argument("--out", type=Path, default=RESULTS / "gd_throughput.json")
    args = parser.parse_args()

    record = bench.run(args.inits, args.steps, bound=True)
    print(bench.format_table(record), flush=True)
    if not args.no_torch:
        import torch

        record["machine"]["torch"] = torch.__version__
        record["machine"]["torch_threads"] = torch.get_num_threads()
        device = record["machine"]["torch_device"] = torch_device(args.torch_device)
        loop = torch_loop_rate(args.steps, device=device)
        record["torch_loop_rate"] = loop
        record["torch_bmm"] = [
            {"inits": count, "init_steps_per_second": torch_bmm_rate(count, args.bmm_steps, device)}
            for count in args.inits
            if count > 1
        ]
        print(f"torch loop (one init at a time): {loop:.3g} init-steps/s")
        for row in record["torch_bmm"]:
            print(f"torch bmm B={row['inits']}: {row['init_steps_per_second']:.3g} init-steps/s")
        for row in record["gd"]:
            row["speedup_vs_torch_loop"] = row["init_steps_per_second"] / loop
            print(f"gflow B={row['inits']}: {row['speedup_vs_torch_loop']:.0f}x the torch loop")
        if args.process_inits:
            cold, warm = whole_process_seconds(args.process_inits, args.steps)
            loop_seconds = args.process_inits * args.steps / loop
            record["whole_process"] = {
                "inits": args.process_inits,
                "gflow_run_seconds_cold_cache": cold,
                "gflow_run_seconds_warm_cache": warm,
                "torch_loop_seconds": loop_seconds,
                "speedup_cold": loop_seconds / cold,
                "speedup_warm": loop_seconds / warm,
            }
            print(f"whole `gflow run` of {args.process_inits} inits: {cold:.1f} s (cold cache), "
                  f"{warm:.1f} s (warm) against {loop_seconds:.0f} s for the loop "
                  f"({loop_seconds / cold:.0f}x, {loop_seconds / warm:.0f}x)")  # fmt: skip
    bench.write_record(record, args.out, plot)


if __name__ == "__main__":
    main()
