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
# # ULPM: the normalized margin climbs to the max-margin limit
#
# The unconstrained layer-peeled model (Ji et al. 2022) is UFM-CE without bias or weight
# decay. The loss goes to zero and the parameters diverge, but their direction converges to a
# KKT point of the minimum-norm separation problem
# $\min \frac12\|W\|_F^2 + \frac12\|H\|_F^2$ s.t. $(w_{y_i} - w_j)^\top h_i \ge 1$.
# With balanced classes the normalized margin tends to $\gamma^\star = 1/(\sqrt n\,(K-1))$.
#
# The approach is logarithmically slow in $t$, so gflow integrates the same path on the clock
# $u = -\log L$ (`reparam = "loss"`): a few hundred solver steps reach $t = 10^{100}$.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt

import gflow

FIGURES = Path(os.environ.get("GFLOW_FIGURES", "../runs/notebooks"))
FIGURES.mkdir(parents=True, exist_ok=True)

# %%
K, n = 4, 5
cfg = {
    "model": {"name": "ulpm", "classes": K, "dim": 16, "per_class": n},
    "dynamics": {"kind": "flow", "solver": "tsit5", "t1": 1e100, "rtol": 1e-8, "atol": 1e-10,
                 "reparam": "loss", "saves": 40},
    "init": {"count": 8, "seed": 0, "scale": 0.1},
    "run": {"precision": "float64"},
}  # fmt: skip
ds = gflow.simulate(cfg)
limit = gflow.theory.ulpm_max_margin(K, n)
print(f"gamma* = 1/(sqrt(n)(K-1)) = {limit:.10f}")
print(ds.normalized_margin.isel(time=-1).values)

# %% [markdown]
# ## Margin and KKT residual over log time
# The right panel is the relative residual of the KKT conditions at the current direction
# (the best nonnegative multipliers, by NNLS): it falls to zero as the direction converges.

# %%
fig = gflow.plots.plot_margin(ds)
gflow.plots.savefig(fig, FIGURES / "ulpm_margin.png")
plt.show()

# %% [markdown]
# ## How close at the end
# The normalized margin is within a fraction of a percent of $\gamma^\star$ at $t = 10^{100}$.

# %%
final = ds.normalized_margin.isel(time=-1)
gap = float((limit - final).max() / limit)
print(f"largest relative gap to gamma*: {gap:.2e}")
assert 0 <= gap < 1e-2
separated = ds.kkt_residual.dropna("time")  # NaN until the data are separated
first, last = separated.isel(time=0), separated.isel(time=-1)
print(f"KKT residual: median {float(first.median()):.2f} once separated, "
      f"{float(last.median()):.3f} at the end")  # fmt: skip
assert float(last.max()) < 0.1 * float(first.min())
