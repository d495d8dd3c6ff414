"""The regression UFM: neural regression collapse (Andriopoulos, Dong, Guo, Zhao & Ross,
NeurIPS 2024, arXiv 2409.04180).

    L(H, W, b) = (1/(2N)) ||H W^T + 1 b^T - Y||_F^2 + wd_W/2 ||W||_F^2 + wd_H/2 ||H||_F^2

Free features H (N, d), W (m, d), bias b (m,) (not decayed), targets Y (N, m), d >= m. The
targets are data, an array leaf of the model: drawn from ``target_seed`` so that the centred
target covariance Sigma = (1/N) Yc^T Yc has exactly the eigenvalues ``target_spectrum``
(:func:`regression_targets`), or given (:func:`ufm_regression_with_targets`). The weight decays
stay traced leaves: one compiled solve serves every wd_W, wd_H. ``target_seed`` and
``target_spectrum`` are nonetheless structure options (static fields of the model) although
they change values, not shapes: a batch of inits shares its data leaves (gflow.simulation
solves the configs of one structure key with the first one's data), so configs with other
targets must be solved apart.

There are no classes. The results' ``class`` axis is the m target dimensions (W (m, d),
b (m,), ``class_count`` N for each) and every sample has label 0, so gflow's classification
metrics are undefined here: NC1, NC3 and the other class-mean metrics come out NaN, NC2 (W W^T
against a simplex ETF) and NC4 are computed but mean nothing. The run is judged by NRC1-NRC3
(observables, all 0 at the optimum with wd_W, wd_H > 0), with Hc = H - 1 hbar^T the centred
features and c = N wd_W wd_H:

- ``nrc1`` = ||Hc - Hc P_m||_F^2 / ||Hc||_F^2 = sum_{j > m} s_j^2 / sum_j s_j^2, P_m the
  projector on the top m principal directions of the features (s_j: Hc's singular values):
  the features' energy outside an m-dimensional subspace;
- ``nrc2`` = ||Hc - Hc P_W||_F^2 / ||Hc||_F^2, P_W = W^+ W the projector on the span of W's
  rows: the features' energy outside the classifier's row space;
- ``nrc3`` = || W W^T/||W W^T||_F - A/||A||_F ||_F, A = sum_i (sqrt(mu_i) - sqrt(c))_+ u_i u_i^T
  (Sigma = sum_i mu_i u_i u_i^T): W W^T against the closed form's direction (NaN where every
  mu_i <= c and A = 0);
- ``train_mse`` = (1/(2N)) ||H W^T + 1 b^T - Y||_F^2, the fit part of the loss.

These follow the paper's three statements (features in an m-dimensional principal subspace,
in W's row space, W W^T of the closed form's shape) in gflow's own normalization: energy
fractions, and the known c in place of a fit of it; each vanishes exactly at the optimum. The
closed form, F* and W W^T, with rank #{mu_i > c}: :mod:`gflow.theory.regression`. Results carry
Y as the variable ``targets`` (sample, target) (:meth:`RegressionUFM.saved_data`;
:func:`saved_targets` reads it, and the attribute ``target_values`` of files written before).
Their figures draw NRC1-NRC3 and ``train_mse`` against the closed form and W W^T beside the
closed form's (:data:`SPEC`'s ``gram``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from gflow import linalg, theory
from gflow.models.base import Model, Readout, scalars, standard_normal
from gflow.models.options import (
    DIM,
    MINIBATCH_KINDS,
    STRUCTURE,
    WD_H,
    WD_W,
    ModelSpec,
    Option,
    OptionError,
)  # fmt: skip
from gflow.models.ufm import mean_squared_error

NRC_METRICS = ("nrc1", "nrc2", "nrc3")


def regression_targets(samples: int, spectrum: Sequence[float], seed: int) -> np.ndarray:
    """Targets whose centred covariance (1/N) Yc^T Yc has exactly the eigenvalues ``spectrum``.

    Y = sqrt(N) Q diag(sqrt(mu)) R^T + 1 ybar^T with Q (N, m) orthonormal columns orthogonal
    to 1 (QR of centred Gaussian columns), R a Haar-random orthogonal (m, m) and
    ybar ~ N(0, I_m), all drawn from ``seed``.

    Args:
        samples: N, > m.
        spectrum: the m eigenvalues mu of the centred covariance.
        seed: the NumPy seed of Q, R and ybar.

    Returns:
        Y, (N, m) float64.
    """
    mu = np.asarray(spectrum, float)
    m = mu.size
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((samples, m))
    Q, _ = np.linalg.qr(G - G.mean(axis=0))
    R, upper = np.linalg.qr(rng.standard_normal((m, m)))
    R = R * np.sign(np.diag(upper))  # Haar: fix QR's sign convention
    mean = rng.standard_normal(m)
    return math.sqrt(samples) * (Q * np.sqrt(mu)) @ R.T + mean


class RegressionUFM(Model):
    """Free H (N, d), W (m, d), b (m,) fitting the targets Y (N, m).

    Attributes:
        feature_dim: d (static).
        target_seed: the seed Y was drawn from, None where Y was given (static).
        target_spectrum: the eigenvalues Y was drawn with, None where Y was given (static).
        Y: the targets, (N, m), a data leaf.
        target_eigvals: Sigma's eigenvalues, (m,), ascending (data, for NRC3).
        target_eigvecs: Sigma's eigenvectors as columns, (m, m) (data, for NRC3).
        wd_W: weight decay of W (0-d leaf).
        wd_H: weight decay of H (0-d leaf).
        init_scale: ``init(key)`` draws H, W, b i.i.d. ``init_scale * N(0, 1)`` (0-d leaf).
    """

    feature_dim: int = eqx.field(static=True)
    target_seed: int | None = eqx.field(static=True)  # None: targets given
    target_spectrum: tuple[float, ...] | None = eqx.field(static=True)
    Y: Array
    target_eigvals: Array
    target_eigvecs: Array
    wd_W: Array
    wd_H: Array
    init_scale: Array

    name = "ufm-regression"

    @property
    def dim(self) -> int:
        return self.feature_dim

    @property
    def bias(self) -> bool:
        return True

    @property
    def num_classes(self) -> int:  # the target dimensions m: rows of W
        return self.Y.shape[1]

    @property
    def num_samples(self) -> int:
        return self.Y.shape[0]

    @property
    def labels(self) -> np.ndarray:  # no classes: one group
        return np.zeros(self.Y.shape[0], np.int32)

    def init(self, key):
        """One random start: H (N, d), W (m, d), b (m,) i.i.d. ``init_scale * N(0, 1)``.

        Args:
            key: a JAX PRNG key.

        Returns:
            The parameters ``{"H", "W", "b"}``.
        """
        kh, kw, kb = jax.random.split(key, 3)
        N, m, d, dtype = self.num_samples, self.num_classes, self.feature_dim, self.dtype
        return {
            "H": self.init_scale * standard_normal(kh, (N, d), dtype),
            "W": self.init_scale * standard_normal(kw, (m, d), dtype),
            "b": self.init_scale * standard_normal(kb, (m,), dtype),
        }

    def readout(self, params):
        """The (W, H, b, labels) view: W's m rows as the "classes", every label 0.

        Args:
            params: the parameters.

        Returns:
            The :class:`~gflow.models.base.Readout`.
        """
        return Readout(params["W"], params["H"], params["b"], jnp.asarray(self.labels))

    def saved_data(self):
        """The targets for the results file.

        Returns:
            ``{"targets": (("sample", "target"), Y)}``, Y (N, m) as float64 NumPy.
        """
        return {"targets": (("sample", "target"), np.asarray(self.Y, np.float64))}

    def outputs(self, params):
        """The predictions.

        Args:
            params: the parameters.

        Returns:
            H W^T + 1 b^T, (N, m).
        """
        return params["H"] @ params["W"].T + params["b"]

    def weighted_loss(self, params, weights):
        """(1/(2N)) sum_i w_i ||W h_i + b - y_i||^2 + wd_W/2 ||W||^2 + wd_H/2 ||H||^2.

        Args:
            params: the parameters.
            weights: per-sample weights w, (N,), on the data term (``loss``: w = 1).

        Returns:
            The loss, a scalar.
        """
        decay = self.wd_W * jnp.sum(params["W"] ** 2) + self.wd_H * jnp.sum(params["H"] ** 2)
        return mean_squared_error(self.outputs(params), self.Y, 1, weights) + 0.5 * decay

    def observables(self, params):
        """NRC1-NRC3 and the fit (see the module docstring), c = N wd_W wd_H.

        Args:
            params: the parameters.

        Returns:
            ``nrc1``, ``nrc2``, ``nrc3`` and ``train_mse``, scalars.
        """
        W, H = params["W"], params["H"]
        m = self.num_classes
        Hc = H - jnp.mean(H, axis=0)
        energy = jnp.sum(Hc**2)
        s = linalg.singular_values(Hc)
        outside_w = Hc - Hc @ (linalg.pinv(W) @ W)
        c = self.num_samples * self.wd_W * self.wd_H
        shrunk = jnp.maximum(jnp.sqrt(jnp.maximum(self.target_eigvals, 0.0)) - jnp.sqrt(c), 0.0)
        A = (self.target_eigvecs * shrunk) @ self.target_eigvecs.T
        G = W @ W.T
        return {
            "nrc1": jnp.sum(s[m:] ** 2) / energy,
            "nrc2": jnp.sum(outside_w**2) / energy,
            "nrc3": jnp.linalg.norm(G / jnp.linalg.norm(G) - A / jnp.linalg.norm(A)),
            "train_mse": mean_squared_error(self.outputs(params), self.Y),
        }


def ufm_regression_with_targets(
    Y,
    dim: int,
    wd_W: float = 5e-2,
    wd_H: float = 5e-2,
    init_scale: float = 0.1,
    dtype=jnp.float32,
    target_seed: int | None = None,
    target_spectrum: tuple[float, ...] | None = None,
) -> RegressionUFM:
    """A :class:`RegressionUFM` for the given targets.

    Args:
        Y: the targets, (N, m).
        dim: d >= m.
        wd_W: weight decay of W.
        wd_H: weight decay of H.
        init_scale: the standard deviation of the random starts.
        dtype: the dtype of the parameters and data.
        target_seed: the seed Y was drawn from (a record; None: given).
        target_spectrum: the eigenvalues Y was drawn with (a record; None: given).

    Returns:
        The model.

    Raises:
        ValueError: dim < m.
    """
    dtype = jnp.dtype(dtype)
    Y = np.asarray(Y, float)
    N, m = Y.shape
    if dim < m:
        raise ValueError(f"ufm_regression: needs dim >= m = {m}, got {dim}")
    mu, U = np.linalg.eigh(theory.target_covariance(Y))
    return RegressionUFM(
        counts=(N,) * m, dtype_name=dtype.name, feature_dim=dim, target_seed=target_seed,
        target_spectrum=target_spectrum, Y=jnp.asarray(Y, dtype),
        target_eigvals=jnp.asarray(mu, dtype), target_eigvecs=jnp.asarray(U, dtype),
        **scalars(dtype, wd_W=wd_W, wd_H=wd_H, init_scale=init_scale),
    )  # fmt: skip


def ufm_regression(
    samples: int = 20,
    targets: int = 2,
    dim: int = 4,
    target_spectrum: Sequence[float] = (4.0, 1.0),
    target_seed: int = 0,
    wd_W: float = 5e-2,
    wd_H: float = 5e-2,
    init_scale: float = 0.1,
    dtype=jnp.float32,
) -> RegressionUFM:
    """A :class:`RegressionUFM` with seeded targets (:func:`regression_targets`).

    Args:
        samples: N.
        targets: m, the columns of Y.
        dim: d >= m.
        target_spectrum: Sigma's m eigenvalues.
        target_seed: the seed of Y.
        wd_W: weight decay of W.
        wd_H: weight decay of H.
        init_scale: the standard deviation of the random starts.
        dtype: the dtype of the parameters and data.

    Returns:
        The model.

    Raises:
        ValueError: ``target_spectrum`` does not have ``targets`` values, or dim < m.
    """
    spectrum = tuple(float(v) for v in target_spectrum)
    if len(spectrum) != targets:
        raise ValueError(f"ufm_regression: needs {targets} eigenvalues, got {len(spectrum)}")
    Y = regression_targets(samples, spectrum, target_seed)
    return ufm_regression_with_targets(
        Y, dim, wd_W=wd_W, wd_H=wd_H, init_scale=init_scale, dtype=dtype,
        target_seed=target_seed, target_spectrum=spectrum,
    )  # fmt: skip


def saved_targets(ds) -> np.ndarray:
    """The targets of a ufm-regression results Dataset.

    Args:
        ds: the results: its variable ``targets`` (sample, target), or the attribute
            ``target_values`` (Y row-major) of files written before that variable.

    Returns:
        Y, (N, m).

    Raises:
        KeyError: ``ds`` holds neither.
    """
    if "targets" in ds.variables:
        return np.asarray(ds["targets"].transpose("sample", "target").values, float)
    if "target_values" not in ds.attrs:
        raise KeyError("saved_targets: no variable 'targets' (or attribute 'target_values')")
    values = np.asarray(ds.attrs["target_values"], float)
    return values.reshape(ds.sizes["sample"], ds.sizes["class"])


# --------------------------------------------------------------------------- declarations

SAMPLES = Option(
    "samples", "int", 20, "N, the number of samples (rows of the targets Y)", STRUCTURE, low=2,
    bad=1,
)  # fmt: skip
TARGETS = Option(
    "targets", "int", 2, "m, the target dimension (columns of Y, rows of W)", STRUCTURE, low=1,
    bad=0,
)  # fmt: skip
TARGET_SPECTRUM = Option(
    "target_spectrum", "tuple[float, ...]", (4.0, 1.0),
    "the m eigenvalues of the centred target covariance (1/N) Yc^T Yc", STRUCTURE, above=0.0,
    bad=[1.0, -1.0],
)  # fmt: skip
TARGET_SEED = Option(
    "target_seed", "int", 0, "seed of the targets (their directions and mean; data, not a "
    "hyperparameter)", STRUCTURE, low=0, bad=-1,
)  # fmt: skip


def _check(o: Mapping) -> None:
    m = o["targets"]
    if len(o["target_spectrum"]) != m:
        raise OptionError(
            f"model.target_spectrum: needs one eigenvalue per target ({m}), got "
            f"{len(o['target_spectrum'])}"
        )
    if o["dim"] < m:
        raise OptionError(f"model.dim: ufm-regression needs dim >= targets ({m}), got {o['dim']}")
    if o["samples"] <= m:
        raise OptionError(
            f"model.samples: needs samples > targets ({m}) for centred targets of rank {m}, got "
            f"{o['samples']}"
        )


def _optimum(o: Mapping):
    if not (o["wd_W"] > 0 and o["wd_H"] > 0):
        return None
    return theory.regression_spectrum_optimum(
        o["target_spectrum"], o["samples"], o["wd_W"], o["wd_H"]
    )


def _closed_form(o: Mapping, counts) -> dict:
    """With wd_W, wd_H > 0, the optimum: ``theory_loss`` F*, ``theory_train_mse`` (its fit
    part), ``theory_rank``, ``theory_rank_threshold`` c = N wd_W wd_H,
    ``theory_W_gram_eigenvalues`` (W W^T's spectrum, descending, paired with the sorted
    target spectrum), ``theory_W_norm_sq`` and ``theory_H_norm_sq``. With a zero weight decay
    the infimum 0 (``theory_loss``; not attained unless both are 0). (The targets are the
    variable ``targets``, :meth:`RegressionUFM.saved_data`.)"""
    opt = _optimum(o)
    if opt is None:
        return {"theory_loss": 0.0}
    return {
        "theory_loss": opt.loss,
        "theory_train_mse": opt.train_mse,
        "theory_rank": opt.rank,
        "theory_rank_threshold": opt.threshold,
        "theory_W_gram_eigenvalues": [float(v) for v in opt.W_gram_eigenvalues],
        "theory_W_norm_sq": opt.W_norm_sq,
        "theory_H_norm_sq": opt.H_norm_sq,
    }


def _gram(o: Mapping, counts) -> tuple[str, np.ndarray] | None:
    """The closed form's W W^T (m, m) for the seeded targets (None without weight decay: then
    any exact fit is optimal)."""
    if not (o["wd_W"] > 0 and o["wd_H"] > 0):
        return None
    Y = regression_targets(o["samples"], o["target_spectrum"], o["target_seed"])
    return "closed form", theory.regression_optimum(Y, o["wd_W"], o["wd_H"]).W_gram


def _geometry(o: Mapping) -> str:
    opt = _optimum(o)
    if opt is None:
        return "no collapse without weight decay: any exact fit H W^T = Yc"
    if opt.rank == 0:
        return "W = H = 0, b = mean target (every eigenvalue of Sigma <= N wd_W wd_H)"
    return (
        f"rank-{opt.rank} regression collapse: features in W's row space, b = mean target, "
        "W W^T = sqrt(N wd_H/wd_W) (Sigma^(1/2) - sqrt(c))_+, c = N wd_W wd_H"
    )


SPEC = ModelSpec(
    name="ufm-regression",
    summary="free features H, W (m, d), bias b fitting seeded targets Y (N, m) of a given "
    "covariance spectrum; MSE + weight decay (Andriopoulos et al. 2024)",
    options=(
        SAMPLES, TARGETS, DIM.with_default(4), TARGET_SPECTRUM, TARGET_SEED,
        WD_W.with_default(5e-2), WD_H.with_default(5e-2),
    ),  # fmt: skip
    build=ufm_regression,
    kinds=MINIBATCH_KINDS,
    num_samples=lambda o: o["samples"],
    pinned={"wd_b": 0.0},  # b is not decayed (it always learns: bias keeps its default)
    check=_check,
    closed_form=_closed_form,
    targets=lambda o: NRC_METRICS,
    gram=_gram,
    geometry=_geometry,
)  # fmt: skip
