"""Deep unconstrained features model (Súkeník, Mondelli & Lampert 2023; Súkeník et al. 2024;
Garrod & Keating 2024): free features, then ``depth`` weight layers, weight decay on all.

    a_0 = H (N, d),  a_l = act(a_{l-1} W_l^T) (N, d) for l = 1 .. L-1,  Z = a_{L-1} W_L^T (N, K)
    F = (1/N) sum_i CE(z_i, y_i)  [or (1/(2N)) ||Z - Y||_F^2]
        + lam_W/2 sum_l ||W_l||_F^2 + lam_H/2 ||H||_F^2

W_l (d, d) for l < L, W_L (K, d), no bias; ``activation`` is linear or relu, applied after each
hidden weight layer (Súkeník et al.) and never to H itself (the free features stay signed, as
in the extended UFM) nor to the logits; depth 1 has no hidden layer, so it is the plain UFM
without bias whatever the activation. The readout is (W_L, a_{L-1}, b = 0).

Deep linear CE has a low-rank bias (:mod:`gflow.theory.deep`): the simplex ETF is optimal at
depth 1, but for L >= 2 lower-rank class means can beat it (K = 6, n = 5, lam = 5e-3: the
octahedron, rank 3, at L = 2, 3) while the ETF stays a local minimum.

Observables, per layer l = 0 .. L-1 (0: H; l: a_l): ``nc1_layer{l}``, ``nc2_layer{l}`` (the
centred class means against a simplex ETF), ``nc3_layer{l}`` (the centred class means against
the linear map that reads them, W_L ... W_{l+1}; with relu the ReLUs in between are left out),
``sv{j}_layer{l}`` (j < K: the singular values of the (K, d) class-mean matrix over the largest);
``class_mean_rank`` (the numerical rank of the readout's class means, singular values above
:data:`gflow.theory.deep.RANK_TOL` of the largest: K-1 at the ETF, 3 at the octahedron, 2 at a
polygon; with the loss it names the candidate reached, :func:`gflow.theory.deep.nearest_candidate`),
``train_error``, and for depth >= 2 ``balancedness`` max_l ||W_{l+1}^T W_{l+1} - W_l W_l^T||_F
(linear: it decays exactly like e^{-2 lam_W t} under the flow).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from gflow import linalg, metrics, theory
from gflow.models.base import Model, Readout, counts_of, cross_entropy, scalars, standard_normal
from gflow.models.networks import _linear_chain_observables
from gflow.models.options import (
    CLASSES,
    DIM,
    ETF_METRICS,
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
from gflow.theory.deep import RANK_TOL

ACTIVATIONS = ("linear", "relu")
LOSSES = ("ce", "mse")


class DeepUFM(Model):
    """Free features H (N, ``width``) -> ``depth`` weight layers, ``activation`` between them,
    ``loss_kind`` "ce" or "mse"; weight decay wd_W on every weight layer, wd_H on H."""

    width: int = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    loss_kind: str = eqx.field(static=True)
    wd_W: Array
    wd_H: Array
    init_scale: Array

    name = "deep-ufm"

    @property
    def dim(self) -> int:
        return self.width

    def init(self, key):
        """``{"H": (N, d), "W": [W_1 (d, d), ..., W_L (K, d)]}`` (``init.from`` names W/0 ..
        W/L-1): H entries init_scale N(0, 1), W_l entries init_scale N(0, 1)/sqrt(d) (as
        deep-linear)."""
        L, d, K = self.depth, self.width, self.num_classes
        kh, *kw = jax.random.split(key, L + 1)
        shapes = [(d, d)] * (L - 1) + [(K, d)]
        return {
            "H": self.init_scale * standard_normal(kh, (self.num_samples, d), self.dtype),
            "W": [
                self.init_scale / math.sqrt(d) * standard_normal(k, shape, self.dtype)
                for k, shape in zip(kw, shapes, strict=True)
            ],
        }

    def representations(self, params) -> list:
        """The features at every layer.

        Args:
            params: the parameter pytree.

        Returns:
            [a_0 = H, a_1, ..., a_{L-1}], each (N, width).
        """
        act = jax.nn.relu if self.activation == "relu" else (lambda x: x)
        reps = [params["H"]]
        for W in params["W"][:-1]:
            reps.append(act(reps[-1] @ W.T))
        return reps

    def readout(self, params):
        """(W_L, a_{L-1}, b = 0, labels)."""
        H = self.representations(params)[-1]
        zeros = jnp.zeros((self.num_classes,), H.dtype)
        return Readout(params["W"][-1], H, zeros, jnp.asarray(self.labels))

    def weighted_loss(self, params, weights):
        """CE (or MSE) of Z = a_{L-1} W_L^T with per-sample weights w (N,), plus lam_W/2
        sum_l ||W_l||^2 and lam_H/2 ||H||^2."""
        W, H, _, _ = self.readout(params)
        fit = cross_entropy if self.loss_kind == "ce" else mean_squared_error
        # logits as (K, N), the sample axis minor, as in the UFM
        value = fit(W @ H.T, self.onehot(axis=0), 0, weights)
        decay = sum(jnp.sum(V**2) for V in params["W"])
        return value + 0.5 * self.wd_W * decay + 0.5 * self.wd_H * jnp.sum(params["H"] ** 2)

    def observables(self, params):
        """The per-layer NC metrics, singular values, ``class_mean_rank``, ``train_error`` and
        (depth >= 2) ``balancedness`` of the module docstring."""
        labels, K = jnp.asarray(self.labels), self.num_classes
        layers = params["W"]
        out = {}
        reader = layers[-1]  # W_L ... W_{l+1}, from l = L-1 down
        reps = self.representations(params)
        for l in range(self.depth - 1, -1, -1):
            a = reps[l]
            sv = linalg.singular_values(metrics.class_means(a, labels, K))
            sv = jnp.pad(sv, (0, K - sv.size))  # width < K: the missing ones are 0
            out[f"nc1_layer{l}"] = metrics.nc1(a, labels, K)
            out[f"nc2_layer{l}"] = metrics.nc2_features(a, labels, K)
            out[f"nc3_layer{l}"] = metrics.nc3(reader, a, labels, K)
            for j in range(K):
                out[f"sv{j}_layer{l}"] = sv[j] / sv[0]
            if l == self.depth - 1:
                out["class_mean_rank"] = jnp.sum(sv > RANK_TOL * sv[0]).astype(a.dtype)
            if l > 0:
                reader = reader @ layers[l - 1]
        logits = reps[-1] @ layers[-1].T
        out["train_error"] = jnp.mean((jnp.argmax(logits, axis=1) != labels).astype(logits.dtype))
        if self.depth >= 2:
            chain = _linear_chain_observables(layers, reps[-1], labels, self.onehot(), K)
            out["balancedness"] = chain["balancedness"]
        return dict(sorted(out.items()))


def deep_ufm(
    classes: int,
    dim: int,
    per_class: int | tuple[int, ...],
    depth: int = 3,
    activation: str = "linear",
    loss: str = "ce",
    wd_W: float = 5e-3,
    wd_H: float = 5e-3,
    init_scale: float = 1.0,
    dtype=jnp.float32,
) -> DeepUFM:
    """A :class:`DeepUFM`.

    Args:
        classes: K.
        dim: d, the width of H and of the hidden layers.
        per_class: n for every class, or the K counts n_k.
        depth: L, the number of weight layers (1: the plain UFM without bias).
        activation: "linear" or "relu", after each hidden weight layer.
        loss: "ce" or "mse".
        wd_W: lam_W, the weight decay of every weight layer.
        wd_H: lam_H, the weight decay of H.
        init_scale: the scale of the initial entries (see :meth:`DeepUFM.init`).
        dtype: the dtype of parameters and hyperparameters (0-d arrays).

    Returns:
        The model.
    """
    dtype = jnp.dtype(dtype)
    return DeepUFM(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, width=dim, depth=depth,
        activation=activation, loss_kind=loss,
        **scalars(dtype, wd_W=wd_W, wd_H=wd_H, init_scale=init_scale),
    )  # fmt: skip


def layer_names(depth: int, metric: str = "nc1") -> tuple[str, ...]:
    """The observables' names of ``metric`` at every layer.

    Args:
        depth: L.
        metric: the metric's prefix ("nc1", "nc2", "nc3", "sv0", ...).

    Returns:
        (metric_layer0, ..., metric_layer{L-1}).
    """
    return tuple(f"{metric}_layer{l}" for l in range(depth))


# --------------------------------------------------------------------------- declarations

DEPTH = Option(
    "depth", "int", 3, "L, the number of weight layers (deep-ufm: 1 is the plain UFM without "
    "bias)", STRUCTURE, low=1, bad=0,
)  # fmt: skip
ACTIVATION = Option(
    "activation", "str", "linear", "between the weight layers (not on H, not on the logits)",
    STRUCTURE, choices=ACTIVATIONS, bad="tanh",
)  # fmt: skip
LOSS = Option("loss", "str", "ce", "cross-entropy, or MSE against the one-hot labels", STRUCTURE,
              choices=LOSSES, bad="hinge")  # fmt: skip


def _linear(o) -> bool:
    return o["activation"] == "linear" or o["depth"] == 1


def _balanced(counts: tuple[int, ...]) -> int | None:
    return counts[0] if len(set(counts)) == 1 else None


def _closed_form(o, counts) -> dict:
    """Linear, balanced, d >= K, both weight decays > 0: CE, the candidates of
    :func:`gflow.theory.deep_ce_candidates` (theory_loss: the lowest); MSE, the orthogonal
    frame of :func:`gflow.theory.deep_mse_optimum`."""
    n, K, L = _balanced(counts), o["classes"], o["depth"]
    if n is None or not _linear(o) or o["wd_W"] <= 0 or o["wd_H"] <= 0 or o["dim"] < K:
        return {}
    if o["loss"] == "mse":
        return {"theory_loss": theory.deep_mse_optimum(K, n, o["wd_W"], o["wd_H"], L).loss}
    found = theory.deep_ce_candidates(K, n, o["wd_W"], o["wd_H"], L)
    best = min(found.values(), key=lambda cand: cand.loss)
    attrs = {"theory_loss": best.loss, "theory_candidate": best.name}
    attrs.update({f"theory_loss_{name}": cand.loss for name, cand in found.items()})
    return attrs


def _targets(o) -> tuple[str, ...]:
    layers = layer_names(o["depth"])
    if not _linear(o):
        return ("nc1", "nc4", *layers)
    if o["loss"] == "mse":
        return (*ORTHOGONAL_METRICS, *layers)
    if o["depth"] == 1:
        return ETF_METRICS
    # every candidate: collapsed layers, each read by the map after it (equal singular values)
    return ("nc1", "nc3", "nc4", *layers, *layer_names(o["depth"], "nc3"))


def _geometry(o) -> str:
    if not _linear(o):
        return "collapsed layers (ReLU: no closed form)"
    if o["loss"] == "mse":
        return "orthogonal frame at every layer (Zbar = s I), or zero"
    return (
        "simplex ETF at depth 1; low-rank (rank < K-1) candidates beat it for depth >= 2 (K = 6,"
        " n = 5, lam = 5e-3: the octahedron, rank 3, at L = 2, 3; a regular polygon, rank 2, at "
        "L = 4), the ETF staying a local minimum; candidates, not proven global"
    )


SPEC = ModelSpec(
    name="deep-ufm",
    summary="free features -> `depth` weight layers (linear or ReLU); CE or MSE + weight decay, "
    "no bias: the low-rank bias of depth (Súkeník et al. 2023, 2024; Garrod & Keating 2024)",
    options=(CLASSES, DIM, PER_CLASS, DEPTH, ACTIVATION, LOSS, WD_W, WD_H),
    build=deep_ufm,
    kinds=MINIBATCH_KINDS,
    pinned=NO_BIAS,
    closed_form=_closed_form,
    targets=_targets,
    geometry=_geometry,
)  # fmt: skip
