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
# # A tour of gflow: UFM-CE from many initializations to the simplex ETF
#
# The unconstrained features model with cross-entropy and weight decay (Zhu et al. 2021):
#
# $$L(W, H, b) = \frac1N \sum_i \mathrm{CE}(W h_i + b, y_i) + \frac{\lambda_W}2\|W\|_F^2
#   + \frac{\lambda_H}2\|H\|_F^2 + \frac{\lambda_b}2\|b\|^2 .$$
#
# Below the threshold $K\sqrt{n\lambda_W\lambda_H} < 1$ every minimizer is a simplex ETF with
# $\|W\|_F^2 = \rho = \frac{K-1}{c}\log\frac{c-(K-1)\lambda_W}{\lambda_W}$,
# $c = \sqrt{\lambda_W/(n\lambda_H)}$. We run gradient flow from 32 random initializations and
# watch NC1–NC4 go to zero.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import gflow

FIGURES = Path(os.environ.get("GFLOW_FIGURES", "../runs/notebooks"))
FIGURES.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# A configuration is a TOML file or the same thing as nested dicts. Float64 and a tight
# tolerance, so the final state can be compared with the closed form to many digits.

# %%
cfg = {
    "model": {"name": "ufm-ce", "classes": 4, "dim": 8, "per_class": 5,
              "wd_W": 5e-3, "wd_H": 5e-3, "wd_b": 5e-3},
    "dynamics": {"kind": "flow", "solver": "tsit5", "t1": 1e4, "rtol": 1e-9, "atol": 1e-11,
                 "saves": 40},
    "init": {"count": 32, "seed": 0, "scale": 0.1},
    "run": {"precision": "float64"},
}  # fmt: skip
ds = gflow.simulate(cfg)
ds

# %% [markdown]
# The results are an xarray Dataset: every metric has dimensions `(init, time)`; the final
# parameters are kept; the attributes carry the config, versions, device, seed and timings.

# %%
print(gflow.results.summary(ds))
print({key: ds.attrs[key] for key in ("device", "seed", "compile_seconds", "run_seconds")})

# %% [markdown]
# ## Against the closed form

# %%
opt = gflow.theory.ufm_ce_optimum(classes=4, per_class=5, wd_W=5e-3, wd_H=5e-3)
final = ds.isel(time=-1)
print(f"closed form: loss {opt.loss:.10f}, ||W||^2 = rho = {opt.rho:.10f}")
print(f"median:      loss {float(final.loss.median()):.10f}, "
      f"||W||^2 = {float(final.W_norm_sq.median()):.10f}")  # fmt: skip
assert np.allclose(final.W_norm_sq, opt.rho, rtol=1e-6)
assert np.allclose(final.loss, opt.loss, rtol=1e-9)

# %% [markdown]
# ## NC1–NC4 over time
# Median across the 32 initializations with the 10–90% band, on log axes: the dynamics are
# multiscale (fast fitting, then a slow approach governed by the weight decay).

# %%
fig = gflow.plots.plot_trajectories(ds)
gflow.plots.savefig(fig, FIGURES / "tour_trajectories.png")
plt.show()

# %% [markdown]
# ## The Gram matrix of the classifier
# $WW^\top$, scaled to unit diagonal, next to the simplex ETF's $\frac{K}{K-1}(I - \frac1K
# 11^\top)$.

# %%
fig = gflow.plots.plot_gram(ds, init=0)
gflow.plots.savefig(fig, FIGURES / "tour_gram.png")
plt.show()
W = ds.W.isel(init=0).values
gram = W @ W.T / np.mean(np.diag(W @ W.T))
print("max |WW^T - ETF| =", np.abs(gram - gflow.theory.etf_gram(4)).max())
