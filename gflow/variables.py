"""What each variable of a results file means: its CF ``long_name`` and ``units``.

Every quantity of these models is dimensionless (CF units "1"); a count of steps or inits is
too. Variables a model adds (its observables) that are not listed here get their name as
``long_name``.
"""

from __future__ import annotations

LONG_NAMES: dict[str, str] = {
    "loss": "training loss L (data fit plus the weight decay terms)",
    "nc1": "NC1: tr(Sigma_W pinv(Sigma_B)) / K, within-class variability of the features",
    "nc2": "NC2: distance of the classifier's normalized Gram to the simplex ETF's",
    "nc3": "NC3: || W/||W|| - M/||M|| || with M the centred class means (self-duality)",
    "nc4": "NC4: fraction of samples where the classifier disagrees with the nearest class mean",
    "nc1_quotient": "NC1 as the quotient tr(Sigma_W) / tr(Sigma_B)",
    "nc2_features": "NC2 of the centred class means",
    "nc3_duality": "NC3 as || W M^T/||W M^T|| - P/sqrt(K-1) || (the other convention)",
    "nc3_uncentred": "|| W/||W|| - Mu/||Mu|| || with Mu the raw class means",
    "cdnv": "class-distance normalized variance (mean over class pairs)",
    "bias_relation": "|| W mu_G + b ||: the classifier's output at the global mean",
    "orthogonal_means": "distance of the raw class means' Gram to an equal-norm orthogonal frame",
    "orthogonal_classifier": "distance of the classifier's Gram to an equal-norm orthogonal frame",
    "equinorm_means": "std/mean of the centred class means' norms",
    "equinorm_classifier": "std/mean of the classifier rows' norms",
    "equiangular_means": "std of the centred class means' pairwise cosines",
    "equiangular_classifier": "std of the classifier rows' pairwise cosines",
    "angle_deviation_means": "max |cos + 1/(K-1)| over pairs of centred class means",
    "angle_deviation_classifier": "max |cos + 1/(K-1)| over pairs of classifier rows",
    "margin": "min over samples and other classes of (w_y - w_j) . h_i + b_y - b_j",
    "normalized_margin": "margin / (||W||^2/2 + ||H||^2/2)",
    "W_norm_sq": "||W||_F^2",
    "H_norm_sq": "||H||_F^2",
    "kkt_residual": "KKT residual of the min-norm separation problem (relative)",
    "kkt_slackness": "complementary slackness of the fitted multipliers (relative)",
    "seli_distance": "|| Z/||Z|| - Zhat/||Zhat|| ||, Z = H W^T, Zhat = Y - 11^T/K (SELI direction)",
    "hessian_min_eig": "smallest eigenvalue of the loss Hessian",
    "hessian_max_eig": "largest eigenvalue of the loss Hessian",
    "W_path": "classifier W at each saved time",
    "means_path": "class means at each saved time",
    "W": "classifier W at the end",
    "H": "features H at the end (rows grouped by class)",
    "b": "bias b at the end",
    "labels": "class of each sample",
    "status": "how the init's run ended: ok, max_steps, nan, diverged or failed",
    "num_steps": "accepted solver steps (flow, sde) or optimizer steps (gd)",
    "stop_time": "time of the final state (t1, or where the run stopped)",
    "class_count": "samples in each class",
    "balancedness": "max_l || V_{l+1}^T V_{l+1} - V_l V_l^T ||_F of consecutive linear layers",
    "condition_number": "largest sigma_1/sigma_K among the linear layers",
    "train_error": "fraction of training samples misclassified",
    "train_mse": "mean squared error of the outputs against the one-hot labels",
    "min_angle": "smallest angle between classifier rows (radians)",
    "nrc1": "NRC1: energy fraction of the centred features outside their top-m principal subspace",
    "nrc2": "NRC2: energy fraction of the centred features outside the row space of W",
    "nrc3": "NRC3: || W W^T/||W W^T|| - A/||A|| ||, A the closed form's W W^T direction",
    "targets": "regression targets Y (one row per sample, one column per target dimension)",
}
UNITS: dict[str, str] = {"min_angle": "rad"}
# a longer account of a variable (CF ``description``) and the paper it follows (``references``)
DESCRIPTIONS: dict[str, str] = {
    "targets": "the data the ufm-regression features fit: Y (N, m), drawn from model.target_seed "
    "with centred covariance (1/N) Yc^T Yc of eigenvalues model.target_spectrum",
}
REFERENCES: dict[str, str] = {
    "targets": "Andriopoulos, Dong, Guo, Zhao & Ross, The prevalence of neural collapse in neural "
    "multivariate regression, NeurIPS 2024, arXiv:2409.04180",
}
NOT_PHYSICAL = frozenset({"status", "labels"})  # no units: a label or a category


def attributes(name: str) -> dict[str, str]:
    """The CF attributes of the results variable ``name``.

    Args:
        name: a variable of a results file; ``initial_<p>`` is described like the parameter p.

    Returns:
        ``long_name`` and, for a physical quantity, ``units`` ("1": dimensionless); where the
        registry has them, ``description`` and ``references`` (the paper).
    """
    if name.startswith("initial_"):
        attrs = {"long_name": f"initial value of parameter {name[len('initial_') :]}"}
    else:
        attrs = {"long_name": LONG_NAMES.get(name, name.replace("_", " "))}
    if name not in NOT_PHYSICAL:
        attrs["units"] = UNITS.get(name, "1")
    for key, table in (("description", DESCRIPTIONS), ("references", REFERENCES)):
        if name in table:
            attrs[key] = table[name]
    return attrs
