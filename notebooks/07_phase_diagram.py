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
# # A phase diagram of the UFM-CE in one batched solve
#
# Zhu et al. (2021): the regularized UFM with cross-entropy has its global minimizers at a
# collapsed simplex ETF when $K\sqrt{n\lambda_W\lambda_H} < 1$ and at $W = H = 0$ beyond. A
# sweep over $(\lambda_W, \lambda_H)$ changes only hyperparameters, which are inputs of the
# compiled solve, so `gflow sweep` folds every (point, init) pair into one batch: one
# compilation for the whole grid. The red curve is the closed form's boundary.

# %%
import os
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import gflow
from gflow import plots, sweep

FIGURES = Path(os.environ.get("GFLOW_FIGURES", "../runs/notebooks"))
FIGURES.mkdir(parents=True, exist_ok=True)
# 16 x 16 points for the figure; a 4 x 4 grid when run headless by the test suite
SIDE = 4 if os.environ.get("GFLOW_HEADLESS") == "1" else 16
values = ", ".join(f"{v:.6g}" for v in np.geomspace(1e-4, 0.5, SIDE))
config = f"""
[model]
name = "ufm-ce"
classes = 4
dim = 8
per_class = 5
wd_W = [{values}]
wd_H = [{values}]

[dynamics]
t1 = 10000.0

[init]
count = 8

[run]
precision = "float64"
"""

# %%
work = Path(tempfile.mkdtemp())
(work / "phase.toml").write_text(config)
start = time.perf_counter()
sweep.run(work / "phase.toml", work / "out", progress=False)
print(f"{SIDE * SIDE} points x 8 inits in {time.perf_counter() - start:.1f} s;",
      gflow.simulation.cache_info())  # fmt: skip

# %% [markdown]
# The index holds each point's median final metrics and the closed form's values; the whole
# sweep opens as one Dataset with `wd_W` and `wd_H` as dimensions.

# %%
index = sweep.open_index(work / "out").load()
whole = sweep.open_sweep(work / "out")
print(dict(whole.sizes))
# every point that the closed form says collapses ends at its optimum
collapsed = index.theory_collapsed == 1
gap = np.abs(index.loss - index.theory_loss).where(collapsed)
print(f"largest |L - L*| over the collapsed region: {float(gap.max()):.2e}")

# %%
fig = plots.plot_sweep(index)
plots.savefig(fig, FIGURES / "phase_diagram.png")
plt.show()
