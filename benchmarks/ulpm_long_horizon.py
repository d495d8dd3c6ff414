"""ULPM at long horizons (issue: K=10, n=20, d=32, float64): solver steps per init and how many
inits have a normalized margin within 1% of 1/(sqrt(n)(K-1)) at t = 1e6, 1e12, 1e24, 1e50, 1e100,
for reparam "loss" (u = -log L) against "log" (s = log(1+t)), and the "log" clock on the textbook
cross-entropy logsumexp(z) - z_y (whose gradient loses accuracy past margin ~37), side by side.

    python benchmarks/ulpm_long_horizon.py [--inits 16] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from gflow import metrics, results, theory  # noqa: E402
from gflow.batch import init_batch  # noqa: E402
from gflow.dynamics.longtime import log_time_flow, loss_time_flow  # noqa: E402
from gflow.models import ulpm  # noqa: E402

CHECKPOINTS = (1e6, 1e12, 1e24, 1e50, 1e100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, default=16)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    K, n = args.classes, args.per_class
    model = ulpm(K, args.dim, n, dtype=jnp.float64)
    labels = jnp.asarray(model.labels)
    gamma_star = theory.ulpm_max_margin(K, n)

    def observe(p):
        return {
            "loss": model.loss(p),
            "normalized_margin": metrics.normalized_margin(
                p["W"], jnp.zeros(K), model.readout(p).H, labels
            ),
        }

    params0 = init_batch(model, seed=0, count=args.inits)
    report = {
        "problem": {"classes": K, "per_class": n, "dim": args.dim, "inits": args.inits,
                    "precision": "float64", "solver": "tsit5", "rtol": args.rtol,
                    "atol": args.rtol * 1e-2},
        "gamma_star": gamma_star,
        "machine": {"device": results.device_description(), "platform": platform.platform(),
                    "processor": platform.processor(), "jax": jax.__version__},
        "runs": {},
    }  # fmt: skip
    onehot = jax.nn.one_hot(labels, K, dtype=jnp.float64)

    def textbook_loss(p):  # logsumexp(z) - z_y: cancels to 0 once margins pass ~37
        return jnp.mean(optax.softmax_cross_entropy(p["W"] @ p["H"], onehot.T, axis=0))  # H (d, N)

    runs = {
        "loss": (loss_time_flow, 1e100, model.loss),
        "log": (log_time_flow, 1e100, model.loss),
        "log_textbook_ce": (log_time_flow, 1e24, textbook_loss),
    }
    for name, (flow, t1, loss) in runs.items():
        ts = np.array([0.0, *[c for c in CHECKPOINTS if c <= t1]])
        solve = jax.jit(
            jax.vmap(
                lambda p, flow=flow, ts=ts, loss=loss: flow(
                    loss, p, ts, observe, rtol=args.rtol, atol=args.rtol * 1e-2,
                    max_steps=20_000,
                )
            )
        )  # fmt: skip
        start = time.perf_counter()
        compiled = solve.lower(params0).compile()
        compile_s = time.perf_counter() - start
        start = time.perf_counter()
        traj = jax.block_until_ready(compiled(params0))
        run_s = time.perf_counter() - start
        gap = (gamma_star - np.asarray(traj.observed["normalized_margin"])) / gamma_star
        steps = np.asarray(traj.num_steps)
        report["runs"][name] = {
            "t1": t1,
            "status_ok": int(np.sum(np.asarray(traj.status) == 0)),
            "steps_per_init": {"max": int(steps.max()), "median": float(np.median(steps))},
            "within_1pct": {
                f"{t:.0e}": int(np.sum(gap[:, k + 1] < 0.01)) for k, t in enumerate(ts[1:])
            },  # fmt: skip
            "max_gap": {f"{t:.0e}": float(gap[:, k + 1].max()) for k, t in enumerate(ts[1:])},
            "compile_seconds": compile_s,
            "run_seconds": run_s,
        }
        print(f"{name}: {json.dumps(report['runs'][name])}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ulpm_long_horizon.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"recorded: {path}")


if __name__ == "__main__":
    main()
