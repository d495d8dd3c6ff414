"""Closed-form solutions the simulations are checked against, one module per family.

- :mod:`gflow.theory.balanced`: the seed papers' balanced optima (simplex ETF, UFM-CE and
  UFM-MSE optima, the ULPM max margin, the fixed-ETF optimum, the layer-peeled elastic rates).
- :mod:`gflow.theory.imbalanced`: SELI (unregularized CE, imbalanced), the imbalanced UFM-MSE
  optimum and its class deaths, the CE minority merge and its convex reduction.
- :mod:`gflow.theory.deep`: deep linear UFM candidates (simplex ETF, regular polygon,
  octahedron) and the deep MSE optimum.
- :mod:`gflow.theory.losses`: label smoothing and focal loss on the UFM (the ETF's 1-d reduction,
  the zero solution's thresholds), the supervised contrastive loss (ETF, orthogonal frame).
- :mod:`gflow.theory.regression`: neural regression collapse (W W^T, the rank, the loss).
- :mod:`gflow.theory.sphere`: normalized features and classifier (ETF, K-gon, octahedron).

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
from gflow.theory.deep import (
    Candidate,
    balanced_factors,
    candidate_logits,
    deep_ce_candidates,
    deep_ce_optimum,
    deep_mse_optimum,
    nearest_candidate,
    numerical_rank,
)
from gflow.theory.imbalanced import (
    SELI,
    UFMCEImbalancedOptimum,
    UFMMSEImbalancedOptimum,
    minority_merge_threshold,
    seli,
    seli_distance,
    ufm_ce_imbalanced_optimum,
    ufm_mse_imbalanced_optimum,
)
from gflow.theory.losses import (
    LossOptimum,
    SupConOptimum,
    etf_loss_profile,
    supcon_etf_loss,
    supcon_loss,
    supcon_optimum,
    supcon_orthogonal_loss,
    ufm_loss_optimum,
    zero_global_threshold_wd,
    zero_loss,
    zero_stability_kappa,
    zero_threshold_wd,
)
from gflow.theory.regression import (
    RegressionOptimum,
    regression_optimum,
    regression_spectrum_optimum,
    target_covariance,
)
from gflow.theory.sphere import (
    SphereOptimum,
    sphere_etf_loss,
    sphere_min_angle,
    sphere_octahedron_loss,
    sphere_optimum,
    sphere_polygon_loss,
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
    "Candidate",
    "balanced_factors",
    "candidate_logits",
    "deep_ce_candidates",
    "deep_ce_optimum",
    "deep_mse_optimum",
    "nearest_candidate",
    "numerical_rank",
    "SELI",
    "UFMCEImbalancedOptimum",
    "UFMMSEImbalancedOptimum",
    "minority_merge_threshold",
    "seli",
    "seli_distance",
    "ufm_ce_imbalanced_optimum",
    "ufm_mse_imbalanced_optimum",
    "LossOptimum",
    "SupConOptimum",
    "etf_loss_profile",
    "supcon_etf_loss",
    "supcon_loss",
    "supcon_optimum",
    "supcon_orthogonal_loss",
    "ufm_loss_optimum",
    "zero_global_threshold_wd",
    "zero_loss",
    "zero_stability_kappa",
    "zero_threshold_wd",
    "SphereOptimum",
    "sphere_etf_loss",
    "sphere_min_angle",
    "sphere_octahedron_loss",
    "sphere_optimum",
    "sphere_polygon_loss",
    "RegressionOptimum",
    "regression_optimum",
    "regression_spectrum_optimum",
    "target_covariance",
]
