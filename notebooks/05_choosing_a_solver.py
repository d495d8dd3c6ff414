# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Choosing an ODE solver: work against precision
#
# Gradient flow is an ODE, $\dot\theta = -\nabla L(\theta)$, and diffrax offers many solvers.
# Which one reaches a given error fastest? `benchmarks/work_precision.py` answers this for the
# reference problem (UFM-CE, K = 10, d = 32, n = 20, B = 64 inits, t₁ = 5000, float64) against
# torchdiffeq and torchode; its records are in `benchmarks/results/`. Below: those records,
# then a small live measurement you can change.

# %%
import json
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import gflow

FIGURES = Path(os.environ.get("GFLOW_FIGURES", "../runs/notebooks"))
FIGURES.mkdir(parents=True, exist_ok=True)
RESULTS = Path("../benchmarks/results")

# %% [markdown]
# ## The recorded benchmark: error at t₁ against steady-state wall time
# Left: the 2-core CPU dev box; right: one H100 (where recorded). The dotted floor is the time
# of Tsit5's vector-field evaluations alone: no solver on that machine can beat it.

# %%
records = {name: json.loads((RESULTS / f"{name}.json").read_text())
           for name in ("work_precision", "work_precision_h100")
           if (RESULTS / f"{name}.json").is_file()}  # fmt: skip
fig, axes = plt.subplots(1, len(records), figsize=(5.2 * len(records), 4.6),
                         layout="constrained", squeeze=False, sharey=True)  # fmt: skip
names = sorted({r["contender"] for rec in records.values() for r in rec["rows"]})
colors = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
for ax, record in zip(axes[0], records.values(), strict=True):
    contenders = sorted({row["contender"] for row in record["rows"]})
    for contender in contenders:
        rows = sorted((r for r in record["rows"] if r["contender"] == contender),
                      key=lambda r: r["seconds"])  # fmt: skip
        # PyTorch peers dashed; the floor (vector-field evaluations alone, no solver) dotted
        style = "s--" if "torch" in contender else ":" if contender.startswith("floor") else "o-"
        ax.loglog([r["seconds"] for r in rows], [r["error"] for r in rows], style,
                  label=contender, ms=4, color=colors[contender])  # fmt: skip
    machine = record["machine"]
    where = (machine["device_kind"] if machine["platform"] == "gpu"
             else f"{machine['cpu']}, {machine['cores']} cores")  # fmt: skip
    ax.set(xlabel="wall time, steady state (s)", title=where)
axes[0, 0].set_ylabel("relative error of the state at t1")
handles = {h.get_label(): h for ax in axes[0] for h in ax.get_lines()}
fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=3, fontsize=7,
           frameon=False)  # fmt: skip
gflow.plots.savefig(fig, FIGURES / "work_precision.png")
plt.show()

# %% [markdown]
# ## A live measurement on a small problem
# K = 4, d = 8, n = 5, 16 inits, t₁ = 2000. The reference is Dopri8 at rtol 1e-12. Each run
# times its compilation apart (`compile_seconds`); `run_seconds` is the compiled solve alone.


# %%
def config(solver: str, rtol: float) -> dict:
    return {
        "model": {"name": "ufm-ce", "classes": 4, "dim": 8, "per_class": 5,
                  "wd_W": 5e-3, "wd_H": 5e-3, "wd_b": 5e-3},
        "dynamics": {"kind": "flow", "solver": solver, "t1": 2000.0, "rtol": rtol,
                     "atol": rtol / 100, "saves": 2, "max_steps": 100_000},
        "init": {"count": 16, "seed": 0},
        "run": {"precision": "float64"},
    }  # fmt: skip


def final_state(ds) -> np.ndarray:
    return np.concatenate([ds[v].values.reshape(ds.sizes["init"], -1) for v in ("W", "H", "b")], 1)


reference = final_state(gflow.simulate(config("dopri8", 1e-12)))
rows = []
for solver in ("bosh3", "tsit5", "dopri8"):
    ds = gflow.simulate(config(solver, 1e-7))
    error = np.max(np.linalg.norm(final_state(ds) - reference, axis=1)
                   / np.linalg.norm(reference, axis=1))  # fmt: skip
    rows.append((solver, error, ds.attrs["run_seconds"], int(ds.num_steps.max())))
print(f"{'solver':8s} {'error':>9s} {'run s':>7s} {'steps':>6s}")
for solver, error, seconds, steps in rows:
    print(f"{solver:8s} {error:9.2e} {seconds:7.3f} {steps:6d}")
assert all(error < 1e-5 for _, error, _, _ in rows)

# %% [markdown]
# Rules of thumb from these measurements: Tsit5 is the default for moderate tolerances; Dopri8
# takes the fewest steps at tight tolerances (below ~1e-8); Bosh3 is good for loose ones.
# Implicit solvers (Kvaerno5) form dense Jacobians of the whole state and only suit small,
# stiff problems. On an accelerator every solver runs 20× or more faster than the PyTorch
# peers at equal error.
