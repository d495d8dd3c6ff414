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
# # Trajectory explorer: the geometry of collapse, snapshot by snapshot
#
# With `run.save_geometry = true`, gflow saves the classifier rows $W$ and the class means
# $\mu_k$ at every saved time (`W_path`, `means_path`, dims `(init, time, class, feature)`).
# Here they are projected on the top two principal directions of their final values: the
# classifier rows (arrows) and the centred class means (dots) rotate into alignment and spread
# into a simplex ETF (with K = 3 classes it is a triangle and lies in the plane; for larger K
# the plane shows a shadow of it). Each snapshot is scaled by its own largest norm, so the
# small early state stays visible. Colours mark classes, the same in every figure.
#
# In a live notebook a slider picks the time; run headless (as in the test suite, with
# `GFLOW_HEADLESS=1`) it draws a static grid of snapshots instead.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import gflow

FIGURES = Path(os.environ.get("GFLOW_FIGURES", "../runs/notebooks"))
FIGURES.mkdir(parents=True, exist_ok=True)
HEADLESS = os.environ.get("GFLOW_HEADLESS") == "1"

# %%
ds = gflow.simulate({
    "model": {"name": "ufm-ce", "classes": 3, "dim": 8, "per_class": 5,
              "wd_W": 5e-3, "wd_H": 5e-3, "wd_b": 5e-3},
    "dynamics": {"kind": "flow", "solver": "tsit5", "t1": 1e4, "rtol": 1e-8, "atol": 1e-10,
                 "saves": 30},
    "init": {"count": 4, "seed": 3, "scale": 0.1},
    "run": {"precision": "float64", "save_geometry": True},
})  # fmt: skip
ds.W_path

# %%
if HEADLESS:
    fig = gflow.plots.plot_snapshot_grid(ds, count=6, init=0)
    gflow.plots.savefig(fig, FIGURES / "explorer_grid.png")
    plt.show()
else:
    from IPython.display import display

    display(gflow.plots.explorer(ds, init=0))

# %% [markdown]
# The projected coordinates themselves, for your own plots: two `(time, K, 2)` arrays.

# %%
means_xy, W_xy = gflow.plots.principal_projection(ds, init=0)
print(means_xy.shape, W_xy.shape)
