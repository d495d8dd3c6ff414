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
# # A wide network on scikit-learn's digits, trained by GD with weight decay
#
# Jacot et al.: a ReLU layer of width $m$ followed by $L \ge 2$ linear layers
# $V_1, \dots, V_L$, trained on real data with MSE and weight decay. Weight decay drives the
# linear layers to balancedness ($V_{l+1}^\top V_{l+1} = V_l V_l^\top$) and low rank, and the
# penultimate features collapse. Without weight decay the network still fits the data, but NC1
# stalls.
#
# Data: 10 classes × 10 images of scikit-learn's bundled digits (8×8 pixels; no download).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import gflow

FIGURES = Path(os.environ.get("GFLOW_FIGURES", "../runs/notebooks"))
FIGURES.mkdir(parents=True, exist_ok=True)


def train(wd_W: float):
    return gflow.simulate({
        "model": {"name": "wide-net", "classes": 10, "per_class": 10, "width": 64, "depth": 2,
                  "dataset": "digits", "wd_W": wd_W},
        "dynamics": {"kind": "gd", "lr": 0.1, "steps": 12000, "saves": 25},
        "init": {"count": 4, "seed": 0, "scale": 1.0},
        "run": {"precision": "float32"},
    })  # fmt: skip


runs = {"weight decay 2e-3": train(2e-3), "no weight decay": train(0.0)}
for name, ds in runs.items():
    last = ds.isel(time=-1).median("init")
    print(f"{name:18s}: train error {float(last.train_error):.3f}, NC1 {float(last.nc1):.2e}, "
          f"balancedness {float(last.balancedness):.2e}, "
          f"condition number {float(last.condition_number):.3g}")  # fmt: skip

# %% [markdown]
# ## Training error, balancedness, conditioning and NC1 along training
# Median over 4 initializations, 10–90% band; step on a log axis.

# %%
panels = [("train_error", "training error", False), ("balancedness", "balancedness", True),
          ("condition_number", r"largest $\sigma_1/\sigma_K$ of the $V_l$", False),
          ("nc1", "NC1 of the penultimate features", True)]  # fmt: skip
colors = {"weight decay 2e-3": "#1f4e79", "no weight decay": "#c0392b"}
fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), layout="constrained")
for ax, (var, title, logy) in zip(axes, panels, strict=True):
    for name, ds in runs.items():  # median and 10-90% band, as in gflow's own figures
        gflow.plots.band(ax, ds.time.values, ds[var], label=name, logy=logy, color=colors[name])
    ax.set(title=title, xlabel="GD step", ylabel=var.replace("_", " "))
axes[0].legend(frameon=False)
gflow.plots.savefig(fig, FIGURES / "wide_net.png")
plt.show()

# %% [markdown]
# Weight decay: zero training error and a collapse that goes on; without it NC1 stays higher.

# %%
with_wd = runs["weight decay 2e-3"].isel(time=-1).median("init")
without = runs["no weight decay"].isel(time=-1).median("init")
assert float(with_wd.train_error) == 0.0
assert float(with_wd.nc1) < float(without.nc1)
print(f"NC1 without / with weight decay: {float(without.nc1 / with_wd.nc1):.1f}x")
