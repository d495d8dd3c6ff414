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
# # UFM with MSE: an orthogonal frame without bias, a simplex ETF with it
#
# $$L = \frac1{2N}\|HW^\top + \mathbf 1 b^\top - Y\|_F^2 + \frac{\lambda_W}2\|W\|_F^2
#   + \frac{\lambda_H}2\|H\|_F^2$$
# (Tirer & Bruna 2022). With $s = 1 - K\sqrt{n\lambda_H\lambda_W} > 0$ the minimizers have
# collapsed features and
#
# - no bias: $\bar H W^\top = s\,I_K$ — the class means and classifier rows form an
#   orthogonal frame;
# - a free bias: $\bar H W^\top = s\,(I_K - \frac1K \mathbf 1\mathbf 1^\top)$ and $b = \frac1K
#   \mathbf 1$ — a simplex ETF.
#
# Here $\bar H$ is the $K\times d$ matrix of class means.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import gflow

FIGURES = Path(os.environ.get("GFLOW_FIGURES", "../runs/notebooks"))
FIGURES.mkdir(parents=True, exist_ok=True)
K, n, lam = 4, 5, 5e-3


def run(bias: bool):
    return gflow.simulate({
        "model": {"name": "ufm-mse", "classes": K, "dim": 8, "per_class": n,
                  "wd_W": lam, "wd_H": lam, "bias": bias},
        "dynamics": {"kind": "flow", "solver": "tsit5", "t1": 2e4, "rtol": 1e-10,
                     "atol": 1e-12, "max_steps": 50000, "saves": 30},
        "init": {"count": 16, "seed": 0, "scale": 0.1},
        "run": {"precision": "float64"},
    })  # fmt: skip


runs = {"no bias": run(False), "with bias": run(True)}
s = 1 - K * np.sqrt(n * lam * lam)
print(f"s = 1 - K sqrt(n lam_H lam_W) = {s:.11f}")

# %% [markdown]
# ## The product of class means and classifier, against the closed form


# %%
def means_times_classifier(ds, init=0):
    H, W = ds.H.isel(init=init).values, ds.W.isel(init=init).values
    labels = ds.labels.values
    means = np.stack([H[labels == k].mean(axis=0) for k in range(K)])
    return means @ W.T


products = {name: means_times_classifier(ds) for name, ds in runs.items()}
closed = {"no bias": s * np.eye(K), "with bias": s * (np.eye(K) - np.ones((K, K)) / K)}
for name in runs:
    err = np.abs(products[name] - closed[name]).max()
    print(f"{name:9s}: max |H_bar W^T - closed form| = {err:.2e}")
    assert err < 1e-6
b = runs["with bias"].b.isel(init=0).values
print("bias:", b, "(closed form 1/K =", 1 / K, ")")

# %%
fig = gflow.plots.plot_matrices(
    {
        r"$\bar H W^\top$, no bias": products["no bias"],
        r"$\bar H W^\top$, with bias": products["with bias"],
        r"$s(I - \mathbf{1}\mathbf{1}^\top/K)$": closed["with bias"],
    },
    label="entry",
)
gflow.plots.savefig(fig, FIGURES / "mse_frames.png")
plt.show()

# %% [markdown]
# ## The geometry metrics over time
# `orthogonal_classifier` (distance of $WW^\top$ from a multiple of the identity) goes to zero
# without bias; `nc2` (distance from the simplex ETF) goes to zero with it.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3), layout="constrained", sharey=True)
for ax, (name, ds) in zip(axes, runs.items(), strict=True):
    t = ds.time.values[1:]
    for metric, label in (("orthogonal_classifier", "orthogonal frame"),
                          ("nc2", "simplex ETF (NC2)")):  # fmt: skip
        ax.loglog(t, ds[metric].median("init").values[1:], label=label)
    ax.set(title=name, xlabel="flow time", ylabel="distance (median over inits)")
    ax.legend(frameon=False)
gflow.plots.savefig(fig, FIGURES / "mse_metrics.png")
plt.show()
