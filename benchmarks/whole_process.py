"""Whole processes, timed from start to exit as a user waits for them, side by side in one run.

Flow: the reference problem (UFM-CE K=10, d=32, n=20, 64 inits, Tsit5 to t = 5000 at
rtol = atol = 1e-6, float32) as one ``gflow run`` with its figures, cold (no compilation cache)
and warm (the same run again with the persistent cache filled), against torchode's whole
process on the same work (start Python, import torch and torchode, build the same vector field,
solve the 64 inits with a step size each). GD: the reference GD problem (B = 1024, 2,000 SGD
steps, float32) as one ``gflow run`` cold and warm, against the PyTorch per-init loop's whole
process (import, then torch.optim.SGD on one init at a time), timed on ``--loop-inits`` inits
and extrapolated to 1024 (a full loop takes minutes).

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

RESULTS = Path(__file__).parent / "results"

FLOW = """\
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
"""

GD = """\
[model]
name = "ufm-ce"
classes = 10
dim = 32
per_class = 20

[dynamics]
kind = "gd"
optimizer = "sgd"
lr = 0.1
steps = 2000
saves = 5

[init]
count = 1024

[run]
precision = "float32"
"""

# the same UFM-CE gradient field as gflow's (weight decay 5e-3 on W, H and b, mean CE)
TORCHODE = """\
import torch, torchode
torch.manual_seed(0)
K, D, PER, B, lam = 10, 32, 20, 64, 5e-3
N = K * PER
labels = torch.arange(K).repeat_interleave(PER)
def field(t, y):
    with torch.enable_grad():
        y = y.detach().requires_grad_()
        H = y[:, : N * D].reshape(-1, N, D)
        W = y[:, N * D : N * D + K * D].reshape(-1, K, D)
        b = y[:, N * D + K * D :].reshape(-1, 1, K)
        logits = torch.bmm(H, W.transpose(1, 2)) + b
        fit = torch.nn.functional.cross_entropy(logits.reshape(-1, K), labels.repeat(len(y)))
        loss = fit * len(y) + lam / 2 * (y**2).sum()
        (g,) = torch.autograd.grad(loss, y)
    return -g
y0 = 0.1 * torch.randn(B, N * D + K * D + K)
term = torchode.ODETerm(field)
solver = torchode.AutoDiffAdjoint(torchode.Tsit5(term=term),
                                  torchode.IntegralController(atol=1e-6, rtol=1e-6, term=term))
sol = solver.solve(torchode.InitialValueProblem(
    y0=y0, t_start=torch.zeros(B), t_end=torch.full((B,), 5000.0)))
print(int(sol.stats["n_f_evals"].max()), sol.status.tolist().count(0))
"""

# the per-init PyTorch loop of benchmarks/gd_throughput.py, on INITS inits; prints the seconds
# from the start of the process to the first init and per init
TORCH_LOOP = """\
import time
start = time.perf_counter()
import torch
K, D, PER, lam, steps, inits = 10, 32, 20, 5e-3, 2000, {inits}
N = K * PER
labels = torch.arange(K).repeat_interleave(PER)
torch.manual_seed(0)
ready = time.perf_counter()
for _ in range(inits):
    H = (0.1 * torch.randn(N, D)).requires_grad_()
    W = (0.1 * torch.randn(K, D)).requires_grad_()
    b = (0.1 * torch.randn(K)).requires_grad_()
    opt = torch.optim.SGD([H, W, b], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(H @ W.T + b, labels)
        loss = loss + lam / 2 * ((H**2).sum() + (W**2).sum() + (b**2).sum())
        loss.backward()
        opt.step()
done = time.perf_counter()
print(ready - start, (done - ready) / inits)
"""


def timed(args: list[str], env: dict) -> tuple[float, str]:
    """Seconds of one process from start to exit, and its stdout."""
    start = time.perf_counter()
    done = subprocess.run(args, check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done.stdout


def gflow_run(config: Path, out: Path, cache: str, figures: bool = True) -> float:
    env = dict(os.environ, GFLOW_CACHE_DIR=cache, MPLBACKEND="Agg")
    args = [sys.executable, "-m", "gflow.cli", "run", str(config), "--quiet", "--overwrite",
            "--out", str(out)]  # fmt: skip
    return timed([*args] if figures else [*args, "--no-plots"], env)[0]


def machine() -> dict:
    import platform

    import jax

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
            "python": platform.python_version()}  # fmt: skip


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
        (work / "flow.toml").write_text(FLOW)
        (work / "gd.toml").write_text(GD)
        cache = str(work / "cache")
        env = dict(os.environ)
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
                "torchode": lambda: timed([sys.executable, "-c", TORCHODE], env)[0],
                "gd_cold": lambda: gflow_run(work / "gd.toml", work / "gd", "off"),
                "gd_warm": lambda: gflow_run(work / "gd.toml", work / "gd", cache),
            }
            for name, run in rows.items():
                times.setdefault(name, []).append(run())
                print(f"repeat {r + 1}: {name} {times[name][-1]:.2f} s", flush=True)
            seconds, out = timed(
                [sys.executable, "-c", TORCH_LOOP.format(inits=args.loop_inits)], env
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
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({"median_seconds": median, "ratios": record["ratios"]}, indent=2))


if __name__ == "__main__":
    main()
