"""Extended unconstrained features model (Tirer & Bruna, ICML 2022): one more layer and a ReLU
between the free features and the classifier, MSE loss, weight decay on every layer:

    L = (1/(2N)) || relu(H1 W1^T) W2^T - Y ||_F^2
        + lam_W/2 ||W2||_F^2 + lam_W1/2 ||W1||_F^2 + lam_H/2 ||H1||_F^2

H1 (N, d) free features, W1 (hidden, d), W2 (K, hidden), Y one-hot. The classifier sees the
post-ReLU features H2 = relu(H1 W1^T) (N, hidden): ``readout`` reports (W2, H2). The paper's
global minimizers have NC1 in H1 and in H2 and post-ReLU class means forming an orthogonal frame
(non-negative features cannot form an ETF), with W2 aligned to them. ``observables`` add the NC
metrics of the pre-ReLU features Z = H1 W1^T and of H1.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from gflow import metrics
from gflow.models.base import Model, Readout, counts_of, scalars, standard_normal
from gflow.models.options import (
    CLASSES,
    DIM,
    MINIBATCH_KINDS,
    NO_BIAS,
    ORTHOGONAL_METRICS,
    PER_CLASS,
    STRUCTURE,
    WD_H,
    WD_W,
    ModelSpec,
    Option,
)  # fmt: skip
from gflow.models.ufm import mean_squared_error


class ExtendedUFM(Model):
    """Extended UFM with ``free_dim`` free-feature dimensions and a ReLU layer of width
    ``hidden``."""

    free_dim: int = eqx.field(static=True)
    hidden: int = eqx.field(static=True)
    wd_W: Array
    wd_W1: Array
    wd_H: Array
    init_scale: Array

    name = "extended-ufm"

    @property
    def dim(self) -> int:
        return self.hidden

    def init(self, key):
        """``{"H1": (N, d), "W1": (hidden, d), "W2": (K, hidden)}``, i.i.d.
        init_scale N(0, 1)."""
        kh, k1, k2 = jax.random.split(key, 3)
        shapes = {
            "H1": (self.num_samples, self.free_dim),
            "W1": (self.hidden, self.free_dim),
            "W2": (self.num_classes, self.hidden),
        }
        return {
            name: self.init_scale * standard_normal(k, shape, self.dtype)
            for k, (name, shape) in zip((kh, k1, k2), shapes.items(), strict=True)
        }

    def readout(self, params):
        """(W2, H2 = relu(H1 W1^T), b = 0, labels)."""
        H2 = jax.nn.relu(params["H1"] @ params["W1"].T)
        return Readout(
            params["W2"], H2, jnp.zeros((self.num_classes,), H2.dtype), jnp.asarray(self.labels)
        )

    def weighted_loss(self, params, weights):
        """The MSE of H2 W2^T with per-sample weights w (N,), plus the three weight decays."""
        W2, H2, _, _ = self.readout(params)
        return (
            mean_squared_error(H2 @ W2.T, self.onehot(), 1, weights)
            + 0.5 * self.wd_W * jnp.sum(W2**2)
            + 0.5 * self.wd_W1 * jnp.sum(params["W1"] ** 2)
            + 0.5 * self.wd_H * jnp.sum(params["H1"] ** 2)
        )

    def observables(self, params):
        """``nc1_pre``, ``nc2_pre`` (of Z = H1 W1^T) and ``nc1_free`` (of H1)."""
        labels, K = jnp.asarray(self.labels), self.num_classes
        Z = params["H1"] @ params["W1"].T
        return {
            "nc1_pre": metrics.nc1(Z, labels, K),
            "nc2_pre": metrics.nc2_features(Z, labels, K),
            "nc1_free": metrics.nc1(params["H1"], labels, K),
        }


def extended_ufm(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    hidden: int,
    wd_W: float = 5e-3,
    wd_W1: float = 5e-3,
    wd_H: float = 5e-3,
    init_scale: float = 0.3,
    dtype=jnp.float32,
) -> ExtendedUFM:
    """An :class:`ExtendedUFM`.

    Args:
        classes: K.
        dim: d, the free features' dimension.
        per_class: n for every class, or the K counts n_k.
        hidden: the width of the ReLU layer.
        wd_W: lam_W, the weight decay of W2.
        wd_W1: lam_W1, the weight decay of W1.
        wd_H: lam_H, the weight decay of H1.
        init_scale: the parameters' entries are i.i.d. ``init_scale * N(0, 1)``.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The model.
    """
    dtype = jnp.dtype(dtype)
    return ExtendedUFM(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, free_dim=dim, hidden=hidden,
        **scalars(dtype, wd_W=wd_W, wd_W1=wd_W1, wd_H=wd_H, init_scale=init_scale),
    )  # fmt: skip


SPEC = ModelSpec(
    name="extended-ufm",
    summary="free features -> ReLU layer of width `hidden` -> W; MSE + weight decay (Tirer & "
    "Bruna 2022)",
    options=(
        CLASSES, DIM, PER_CLASS,
        Option("hidden", "int", 16, "width of the ReLU layer", STRUCTURE, low=1, bad=0),
        WD_W,
        Option("wd_W1", "float", 5e-3, "weight decay of the extra layer", low=0.0, bad=-1.0),
        WD_H,
    ),
    build=extended_ufm,
    kinds=MINIBATCH_KINDS,
    pinned=NO_BIAS,
    targets=lambda o: ORTHOGONAL_METRICS,
    geometry=lambda o: "post-ReLU class means in an orthogonal frame, W2 aligned with them",
)  # fmt: skip
