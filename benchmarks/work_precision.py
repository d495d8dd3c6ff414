"""Gradient-flow work-precision: diffrax solvers in gflow against torchdiffeq and torchode.

Problem: UFM-CE K=10, d=32, n=20, lambda = 5e-3, init scale 0.1, B=64 inits, flow to t1 = 5000,
every contender in one precision (``--precision``: float64, or float32 as in the issue's reference
problem), all from the same initial values. Error: the largest over inits of
||theta(t1) - theta_ref(t1)|| / ||theta_ref||, theta = (W, H, b), against a float64 reference
solved from those values by diffrax Dopri8 at rtol 1e-12, atol 1e-14.
Work: steady-state wall time (compilation apart; gflow's ``run_seconds``) and vector-field
evaluations (accepted steps times the stages each step evaluates; diffrax rejected about one
step per solve here; torchode and torchdiffeq count every call).

A floor is recorded beside them: the time of Tsit5's vector-field evaluations alone, the same
count per init run as gflow runs its flows (inits in sequence on each CPU device), with no
solver around them. No RK code can be faster at that error than its evaluations.

Contenders, over the same tolerances (atol = rtol / 100):
- gflow (vmap of per-init diffrax solves, each with its own step size): Euler (fixed dt), Heun,
  Bosh3, Tsit5, Dopri5, Dopri8 (Kvaerno5, implicit, does not fit in memory here: see main);
- diffrax Tsit5 on the batch as one ODE, the error norm the largest per-init RMS;
- torchdiffeq dopri5 on the batched system (the common choice);
- torchode Tsit5, batched with a step size per sample (the strongest PyTorch peer).

Writes benchmarks/results/work_precision.json and .png. Needs the `bench` extra (`make bench`).

    .venv/bin/python benchmarks/work_precision.py [--inits 64] [--t1 5000] [--quick]
        [--precision float64|float32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("EQX_ON_ERROR", "nan")
from gflow.distributed import use_cpu_cores  # noqa: E402

use_cpu_cores()

import diffrax  # noqa: E402
import jax  # noqa: E402
import jax.flatten_util  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch_peers  # noqa: E402 -- benchmarks/, beside this script

from gflow import bench, distributed, simulation  # noqa: E402

jax.config.update("jax_enable_x64", True)
RESULTS = Path(__file__).parent / "results"
STAGES = {"euler": 1, "heun": 2, "bosh3": 3, "tsit5": 6, "dopri5": 6, "dopri8": 12, "kvaerno5": 7}


# tolerances swept per precision; below 1e-6 a float32 state only adds rounding error
TOLERANCES = {"float64": [1e-4, 1e-6, 1e-8], "float32": [1e-3, 1e-4, 1e-5, 1e-6]}


def config(
    inits: int, t1: float, solver: str, rtol: float, dt0: float | None = None,
    precision: str = "float64", start: Path | None = None,
) -> dict:  # fmt: skip
    """The flow config; ``start``: an .npz of initial values (else the seed's draws)."""
    cfg = bench.reference_config(inits, precision=precision)
    cfg["dynamics"] = {"kind": "flow", "solver": solver, "t1": t1, "rtol": rtol,
                       "atol": rtol / 100, "saves": 2, "max_steps": 200_000}  # fmt: skip
    if dt0 is not None:
        cfg["dynamics"]["dt0"] = dt0
    if start is not None:
        cfg["init"]["from"] = str(start)
    return cfg


def write_start(inits: int, precision: str, path: Path) -> Path:
    """The seed's initial values drawn in ``precision``, saved for every contender and the
    float64 reference (a seed draws other numbers in float32 than in float64)."""
    cfg = config(inits, 1.0, "tsit5", 1e-6, precision=precision)
    model, params = simulation.prepare(simulation.as_config(cfg))
    np.savez(path, **{name: np.asarray(value) for name, value in params.items()})
    return path


def state(ds) -> np.ndarray:
    """(B, P) final states of a results Dataset, in ravel_pytree's order (H, W, b)."""
    return np.concatenate([ds[v].values.reshape(ds.sizes["init"], -1) for v in ("H", "W", "b")], 1)


def error(final: np.ndarray, reference: np.ndarray) -> float:
    return float(
        np.max(np.linalg.norm(final - reference, axis=1) / np.linalg.norm(reference, axis=1))
    )


def gflow_row(cfg: dict, reference: np.ndarray, label: str) -> dict:
    ds = simulation.simulate(cfg)  # compiles and runs; run again for a warm steady-state time
    ds = simulation.simulate(cfg)
    solver = cfg["dynamics"]["solver"]
    return {
        "contender": label,
        "solver": solver,
        "rtol": cfg["dynamics"]["rtol"],
        "dt0": cfg["dynamics"].get("dt0"),
        "error": error(state(ds), reference),
        "seconds": ds.attrs["run_seconds"],
        "compile_seconds": ds.attrs["compile_seconds"],
        "evaluations": int(ds["num_steps"].max()) * STAGES[solver],
        "mean_evaluations": float(ds["num_steps"].mean()) * STAGES[solver],
        "status_ok": int((ds["status"] == "ok").sum()),
    }


def flat_problem(inits: int, precision: str = "float64", start: Path | None = None):
    """(y0 (B, P), vector field on (B, P), gradient of one init, unflatten, P); the flat state
    with H as (N, d) rows, as the results' H and the torch fields."""
    cfg = simulation.as_config(config(inits, 1.0, "tsit5", 1e-6, precision=precision,
                                      start=start))  # fmt: skip
    model, params = simulation.prepare(cfg)
    flat, unravel = jax.flatten_util.ravel_pytree(jax.tree.map(lambda x: x[0], params))
    y0 = jax.vmap(lambda p: jax.flatten_util.ravel_pytree(p)[0])(params)
    grad = jax.grad(lambda y: model.loss(unravel(y)))
    return y0, jax.vmap(lambda y: -grad(y)), grad, unravel, flat.size


def joint_row(
    inits: int, t1: float, rtol: float, reference: np.ndarray, precision: str, start: Path
) -> dict:
    """diffrax Tsit5 on the whole batch as one ODE; error norm = max over inits of the RMS."""
    y0, field, *_ = flat_problem(inits, precision, start)

    def per_init_rms(err):
        return jnp.max(jnp.sqrt(jnp.mean(err**2, axis=1)))

    # times in the state's dtype: float64 times would promote a float32 state
    t0, t1 = jnp.zeros((), y0.dtype), jnp.asarray(t1, y0.dtype)

    @jax.jit
    def solve(y0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: field(y)), diffrax.Tsit5(), t0, t1, None, y0,
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=rtol / 100,
                                                      norm=per_init_rms, dtmin=None),
            saveat=diffrax.SaveAt(t1=True), max_steps=200_000, throw=False,
        )  # fmt: skip
        return sol.ys[-1], sol.stats["num_steps"]

    start = time.perf_counter()
    jax.block_until_ready(solve(y0))
    first = time.perf_counter() - start  # compile and one run
    start = time.perf_counter()
    final, steps = jax.block_until_ready(solve(y0))
    seconds = time.perf_counter() - start
    assert final.dtype == y0.dtype, (final.dtype, y0.dtype)
    return {"contender": "diffrax Tsit5, batch as one ODE", "solver": "tsit5", "rtol": rtol,
            "error": error(np.asarray(final), reference), "seconds": seconds,
            "compile_seconds": first - seconds, "evaluations": int(steps) * 6}  # fmt: skip


def field_alone_row(cfg: dict, row: dict) -> dict:
    """The floor under ``row`` (a gflow row): its mean evaluations per init of the vector field
    -grad L and nothing else, each init in sequence on each local device as gflow's CPU flows
    run (a negligible update keeps every evaluation live). Steady state, best of 3."""
    model, params = simulation.prepare(simulation.as_config(cfg))
    grad = jax.grad(model.loss)
    count = round(row["mean_evaluations"])

    def one(p):
        def evaluate(_, y):
            return jax.tree.map(lambda a, g: a - 1e-30 * g, y, grad(y))

        return jax.lax.fori_loop(0, count, evaluate, p)

    mesh = distributed.local_mesh()
    run = jax.jit(distributed.per_device(lambda ps: jax.lax.map(one, ps), mesh))
    width = -(-cfg["init"]["count"] // mesh.size) * mesh.size
    params = distributed.shard_inits(distributed.pad_to(params, width), mesh)
    jax.block_until_ready(run(params))
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(run(params))
        best = min(best, time.perf_counter() - start)
    return {"contender": "floor: Tsit5's vector-field evaluations alone", "solver": "none",
            "rtol": row["rtol"], "error": row["error"], "seconds": best,
            "evaluations": count}  # fmt: skip


def torch_rows(
    inits: int, t1: float, tolerances: list[float], reference: np.ndarray, device: str = "cpu",
    precision: str = "float64", start: Path | None = None,
) -> list:  # fmt: skip
    """torchdiffeq dopri5 and torchode Tsit5 on the same batch (the same initial values)."""
    import torch
    import torchdiffeq
    import torchode

    def seconds_since(start: float) -> float:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    y0_jax, _, grad, _, _ = flat_problem(inits, precision, start)
    torch.set_default_dtype(getattr(torch, precision))
    y0 = torch.tensor(np.asarray(y0_jax), device=device)
    counter = {"calls": 0}
    field = torch_peers.ufm_ce_field(device, counter)  # on gflow's public layout, raveled

    # the same vector field as gflow's, checked once
    check = field(0.0, y0[:1]).cpu().numpy()[0]
    close = {"float64": (1e-10, 1e-14), "float32": (1e-4, 1e-7)}[precision]
    assert np.allclose(check, -np.asarray(grad(y0_jax[0])), *close)
    rows = []
    for rtol in tolerances:
        counter["calls"] = 0
        start = time.perf_counter()
        ends = torch.tensor([0.0, t1], device=device)
        out = torchdiffeq.odeint(field, y0, ends, rtol=rtol, atol=rtol / 100, method="dopri5")
        rows.append(
            {
                "contender": "torchdiffeq dopri5",
                "solver": "dopri5",
                "rtol": rtol,
                "seconds": seconds_since(start),
                "error": error(out[-1].cpu().numpy(), reference),
                "evaluations": counter["calls"],
            }
        )
        term = torchode.ODETerm(field)
        method = torchode.Tsit5(term=term)
        controller = torchode.IntegralController(atol=rtol / 100, rtol=rtol, term=term)
        solver = torchode.AutoDiffAdjoint(method, controller)
        problem = torchode.InitialValueProblem(
            y0=y0, t_start=torch.zeros(len(y0), device=device),
            t_end=torch.full((len(y0),), t1, device=device))  # fmt: skip
        counter["calls"] = 0
        start = time.perf_counter()
        sol = solver.solve(problem)
        rows.append({"contender": "torchode Tsit5", "solver": "tsit5", "rtol": rtol,
                     "seconds": seconds_since(start),
                     "error": error(sol.ys[:, -1].cpu().numpy(), reference),
                     "evaluations": int(sol.stats["n_f_evals"].max())})  # fmt: skip
        print(rows[-2], rows[-1], sep="\n", flush=True)
    return rows


def seconds_at_error(rows: list[dict], error: float) -> float:
    """The least time any of ``rows``' contenders needs for ``error``: along each contender's
    curve, log-log interpolation between the two runs around ``error``, or its fastest run
    already within it; inf where none reaches it."""
    best = np.inf
    for name in dict.fromkeys(r["contender"] for r in rows):
        curve = sorted((r["error"], r["seconds"]) for r in rows if r["contender"] == name)
        within = [t for e, t in curve if e <= error]
        best = min([best, *within])
        for (e0, t0), (e1, t1) in zip(curve, curve[1:], strict=False):
            if e0 <= error <= e1 and e0 < e1:
                w = np.log(error / e0) / np.log(e1 / e0)
                best = min(best, float(np.exp((1 - w) * np.log(t0) + w * np.log(t1))))
    return best


def _ratio(seconds: float, than: float) -> float | None:
    return seconds / than if np.isfinite(than) else None


def equal_error(rows: list[dict]) -> list[dict]:
    """Each PyTorch run against gflow at the same final error (the fastest gflow solver there,
    :func:`seconds_at_error`), and against the floor of evaluations alone."""
    ours = [r for r in rows if r["contender"].startswith("gflow")]
    floor = [r for r in rows if r["contender"].startswith("floor")]
    out = []
    for peer in (r for r in rows if r["contender"].startswith("torch")):
        gflow, bound = seconds_at_error(ours, peer["error"]), seconds_at_error(floor, peer["error"])
        out.append({"peer": peer["contender"], "rtol": peer["rtol"], "error": peer["error"],
                    "peer_seconds": peer["seconds"], "gflow_seconds": gflow,
                    "speedup": _ratio(peer["seconds"], gflow),
                    "floor_speedup": _ratio(peer["seconds"], bound)})  # fmt: skip
    return out


def plot(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True, sharey=True)
    contenders = dict.fromkeys(row["contender"] for row in record["rows"])
    for index, name in enumerate(contenders):
        rows = sorted(
            (r for r in record["rows"] if r["contender"] == name), key=lambda r: r["error"]
        )
        style = dict(marker="os^vD<>ph*"[index % 10], label=name, color=f"C{index}")
        if name.startswith("floor"):
            style.update(color="grey", ls="--", marker="")
        axes[0].plot([r["seconds"] for r in rows], [r["error"] for r in rows], **style)
        axes[1].plot([r["evaluations"] for r in rows], [r["error"] for r in rows], **style)
    axes[0].set(xscale="log", yscale="log", xlabel="wall time, steady state (s)",
                ylabel="relative error of the state at t1 (max over inits)")  # fmt: skip
    axes[1].set(xscale="log", xlabel="vector-field evaluations (per init)")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"UFM-CE gradient flow to t1 = {record['t1']:g}, B = {record['inits']}, "
                 f"{record.get('precision', 'float64')} (reference: float64)")  # fmt: skip
    fig.savefig(path, dpi=150)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inits", type=int, default=64)
    parser.add_argument("--t1", type=float, default=5000.0)
    parser.add_argument("--quick", action="store_true", help="one tolerance, Tsit5 only, no torch")
    parser.add_argument("--torch-device", default="auto", help="auto: cuda if PyTorch sees one")
    parser.add_argument("--precision", choices=sorted(TOLERANCES), default="float64",
                        help="of every contender (the reference is float64)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="default: results/work_precision[_float32].json")
    args = parser.parse_args()
    precision = args.precision
    suffix = "" if precision == "float64" else f"_{precision}"
    out = args.out or RESULTS / f"work_precision{suffix}.json"
    tolerances = [1e-6] if args.quick else TOLERANCES[precision]
    with tempfile.TemporaryDirectory() as tmp:
        start = write_start(args.inits, precision, Path(tmp) / "start.npz")
        record = measure(args, precision, tolerances, start)
    record["equal_error"] = equal_error(record["rows"])
    for row in record["equal_error"]:
        print(f"{row['peer']} at {row['error']:.2g}: gflow {row['speedup'] or 0:.1f}x faster "
              f"(evaluations alone: {row['floor_speedup'] or 0:.1f}x; 0: not reached)")  # fmt: skip
    bench.write_record(record, out, plot)


def measure(args, precision: str, tolerances: list[float], start: Path) -> dict:
    """Every row of the record, all contenders starting from ``start``."""

    def cfg(solver: str, rtol: float, dt0: float | None = None) -> dict:
        return config(args.inits, args.t1, solver, rtol, dt0, precision, start)

    ref = simulation.simulate(config(args.inits, args.t1, "dopri8", 1e-12, start=start))
    reference = state(ref)
    rows = []
    # no implicit solver at B = 64: Kvaerno5's dense Jacobians (6,730^2 float64 per init) asked
    # for 46 GB on this 24 GB box (measured); implicit solvers suit small stiff states instead
    solvers = ["tsit5"] if args.quick else ["bosh3", "tsit5", "dopri5", "dopri8"]
    for solver in solvers:
        for rtol in tolerances:
            rows.append(gflow_row(cfg(solver, rtol), reference, f"gflow {solver}"))
            print(rows[-1], flush=True)
    for row in [r for r in rows if r["solver"] == "tsit5"]:
        rows.append(field_alone_row(cfg("tsit5", row["rtol"]), row))
        print(rows[-1], flush=True)
    if not args.quick:
        for dt in (1.0, 0.25):  # Euler has no error estimate: fixed steps
            rows.append(gflow_row(cfg("euler", 1e-6, dt), reference, "gflow euler (fixed dt)"))
            print(rows[-1], flush=True)
        for rtol in tolerances[:2]:  # Heun is adaptive in diffrax; 1e-8 takes ~40,000 steps
            rows.append(gflow_row(cfg("heun", rtol), reference, "gflow heun"))
            print(rows[-1], flush=True)
    for rtol in tolerances:
        rows.append(joint_row(args.inits, args.t1, rtol, reference, precision, start))
        print(rows[-1], flush=True)
    if not args.quick:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        device = device if args.torch_device == "auto" else args.torch_device
        rows += torch_rows(args.inits, args.t1, tolerances, reference, device, precision, start)
    return {
        "benchmark": "work_precision",
        "machine": bench.machine(),
        "inits": args.inits,
        "t1": args.t1,
        "precision": precision,
        "reference": "diffrax dopri8 rtol 1e-12 atol 1e-14, float64, from the same start",
        "reference_W_norm_sq": float(ref["W_norm_sq"].values[:, -1].mean()),
        "rows": rows,
    }


if __name__ == "__main__":
    main()
