"""Closed-form solutions the simulations are checked against, one module per family.

- :mod:`gflow.theory.balanced`: the seed papers' balanced optima (simplex ETF, UFM-CE and
  UFM-MSE optima, the ULPM max margin, the fixed-ETF optimum, the layer-peeled elastic rates).

Every function here is plain NumPy/SciPy in float64 and names its source in its docstring.
"""

from gflow.theory.balanced import (
    FixedETFOptimum,
    UFMCEOptimum,
    UFMMSEOptimum,
    collapse_threshold,
    etf_gram,
    le_contrast_rate,
    le_margin_rate,
    simplex_etf,
    ufm_ce_fixed_etf_optimum,
    ufm_ce_optimum,
    ufm_mse_optimum,
    ulpm_max_margin,
)

__all__ = [
    "FixedETFOptimum",
    "UFMCEOptimum",
    "UFMMSEOptimum",
    "collapse_threshold",
    "etf_gram",
    "le_contrast_rate",
    "le_margin_rate",
    "simplex_etf",
    "ufm_ce_fixed_etf_optimum",
    "ufm_ce_optimum",
    "ufm_mse_optimum",
    "ulpm_max_margin",
]
