"""Locally elastic feature dynamics, LE-ODE and LE-SDE (Zhang, Wang & Su, "Imitating Deep Learning
Dynamics via Locally Elastic Stochastic Differential Equations", NeurIPS 2021, arXiv 2110.05960;
reviewed by Kothapalli, TMLR 2023).

The features of sample i of class c are its K logits X_{c,i} in R^K. A gradient step on a
sample of class c' moves the features of every class-c sample by E_{cc'} times that step
(local elasticity: E has the intra-class impact alpha on its diagonal and the inter-class
impact beta off it). Linearized, the cross-entropy step on class c' points along
u_{c'} = e_{c'} - 1/K (the descent direction of CE at uniform logits) with the size of the
class mean's component on it, P_{c'} X_bar_{c'}, P_c = u_c u_c^T / ||u_c||^2. Hence

    LE-ODE:  dX_{c,i}/dt = sum_{c'} pi_{c'} E_{cc'} P_{c'} X_bar_{c'}
    LE-SDE:  dX_{c,i} = (same drift) dt + sigma dW_{c,i}

with class proportions pi_{c'} = n_{c'}/N (1/K when balanced). This is the continuous-time form
of the authors' own LE-ODE simulator (``fwd_euler`` in github.com/zjiayao/le_sde, src/utils.py,
whose unit step is the Euler step of this ODE); in the SDE sigma^2 plays the learning rate's part.

Exact facts of this linear system (derived here, tested in tests/test_elastic.py), balanced
classes: the projection coefficient y_c = u_c . X_bar_c / ||u_c||^2 is class c's mean margin
(1/(K-1)) sum_{j != c} (X_bar_c[c] - X_bar_c[j]), and

    dy/dt = M y,   M = (1/K) (alpha I - beta/(K-1) (11^T - I)),

so the class-averaged margin obeys  m(t) = m(0) exp((alpha - beta) t / K)  exactly, and class
contrasts (y orthogonal to 1) grow at (alpha + beta/(K-1))/K. The transition sits at alpha = beta:
for alpha > beta the average margin grows without bound; for alpha < beta it decays to 0, and
since the mean CE is >= softplus(-m(t)) (Jensen) the training loss tends to >= log 2 and never
vanishes. Within a class all samples share the drift, so within-class deviations stay fixed (ODE)
or diffuse as sigma^2 t (SDE) while the class means separate exponentially: NC1 -> 0. With
beta > 0 the contrasts outgrow the average, so unequal initial class margins eventually turn the
weakest class's margin negative: this linearization is a model of the early, separating phase.
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array

from gflow import theory
from gflow.models.base import Model, Readout, counts_of, cross_entropy, scalars, standard_normal
from gflow.models.options import CLASSES, NO_BIAS, PER_CLASS, ModelSpec, Option


def elastic_coupling(classes: int, alpha: float, beta: float, dtype=jnp.float32):
    """The coupling matrix E of the classes' impacts on each other.

    Args:
        classes: K.
        alpha: the intra-class impact (the diagonal).
        beta: the inter-class impact (off the diagonal).
        dtype: the dtype.

    Returns:
        E, (K, K).
    """
    eye = jnp.eye(classes, dtype=dtype)
    return alpha * eye + beta * (1 - eye)


def margin_directions(classes: int, dtype=jnp.float32):
    """The CE descent direction of each class at uniform logits.

    Args:
        classes: K.
        dtype: the dtype.

    Returns:
        The rows u_c = e_c - 1/K, (K, K).
    """
    return jnp.eye(classes, dtype=dtype) - 1.0 / classes


class LocallyElastic(Model):
    """LE-ODE / LE-SDE features (the drift above; the diffusion sigma is the SDE dynamics' noise).

    ``params = {"X": (N, K)}``, initialized as X_{c,i} = init_margin * u_c + init_scale * N(0, I):
    every class starts with mean margin ``init_margin``. ``loss`` is the mean cross-entropy of the
    logits, which reports separability (it vanishes only if every margin grows without bound);
    the dynamics follow ``drift``, which is not its gradient. ``readout`` is (I_K, X, 0): the
    features are the logits. Observables: ``mean_margin`` (the class-averaged margin m(t)),
    ``within_variance`` and ``between_variance`` (mean squared deviation of the samples from
    their class mean, and of the class means from the global mean).
    """

    model_name: str = eqx.field(static=True)
    alpha: Array
    beta: Array
    init_margin: Array
    init_scale: Array

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.model_name

    @property
    def dim(self) -> int:
        return self.num_classes

    def _counts(self):
        return jnp.asarray(self.counts, self.dtype)

    def class_means(self, X):
        """The class means X_bar_c of X (N, K) as rows, (K, K)."""
        return (self.onehot().T @ X) / self._counts()[:, None]

    def init(self, key):
        """``{"X": (N, K)}``, X_{c,i} = init_margin * u_c + init_scale * N(0, I)."""
        labels = jnp.asarray(self.labels)
        noise = standard_normal(key, (self.num_samples, self.num_classes), self.dtype)
        directions = margin_directions(self.num_classes, self.dtype)
        return {"X": self.init_margin * directions[labels] + self.init_scale * noise}

    def drift(self, params):
        """The LE-ODE vector field of the module docstring, ``{"X": (N, K)}``: not -grad loss."""
        K, labels = self.num_classes, jnp.asarray(self.labels)
        directions = margin_directions(K, self.dtype)
        proportions = self._counts() / self.num_samples
        coupling = elastic_coupling(K, self.alpha, self.beta, self.dtype)
        means = self.class_means(params["X"])
        # y_c = u_c . X_bar_c / ||u_c||^2: the size of class c's step along u_c
        y = jnp.sum(means * directions, axis=1) / jnp.sum(directions**2, axis=1)
        per_class_push = coupling @ (proportions[:, None] * y[:, None] * directions)
        return {"X": per_class_push[labels]}

    def readout(self, params):
        """(I_K, X, 0, labels): the features are the logits."""
        K = self.num_classes
        eye, zeros = jnp.eye(K, dtype=self.dtype), jnp.zeros((K,), self.dtype)
        return Readout(eye, params["X"], zeros, jnp.asarray(self.labels))

    def loss(self, params):
        """The mean cross-entropy of the logits X (reported; the dynamics follow ``drift``)."""
        return cross_entropy(params["X"], self.onehot())

    def observables(self, params):
        """``mean_margin``, ``within_variance`` and ``between_variance`` (see the class)."""
        X, onehot, K = params["X"], self.onehot(), self.num_classes
        means = self.class_means(X)
        own = jnp.sum(X * onehot, axis=1, keepdims=True)
        sample_margins = jnp.sum((own - X) * (1 - onehot), axis=1) / (K - 1)
        global_mean = jnp.mean(X, axis=0)
        return {
            "mean_margin": jnp.mean(sample_margins),
            "within_variance": jnp.mean(
                jnp.sum((X - means[jnp.asarray(self.labels)]) ** 2, axis=1)
            ),
            "between_variance": jnp.mean(jnp.sum((means - global_mean) ** 2, axis=1)),
        }


def locally_elastic(
    classes: int,
    per_class: int | tuple[int, ...],
    alpha: float = 1.0,
    beta: float = 0.5,
    init_margin: float = 1.0,
    init_scale: float = 0.1,
    dtype=jnp.float32,
    name: str = "le-ode",
) -> LocallyElastic:
    """A :class:`LocallyElastic` model.

    Args:
        classes: K.
        per_class: n for every class, or the K counts n_k.
        alpha: the intra-class impact.
        beta: the inter-class impact.
        init_margin: every class's mean margin at the start.
        init_scale: the scale of the initial noise.
        dtype: the dtype of parameters and hyperparameters (0-d arrays).
        name: "le-ode" or "le-sde".

    Returns:
        The model.
    """
    dtype = jnp.dtype(dtype)
    return LocallyElastic(
        counts=counts_of(classes, per_class), dtype_name=dtype.name, model_name=name,
        **scalars(dtype, alpha=alpha, beta=beta, init_margin=init_margin, init_scale=init_scale),
    )  # fmt: skip


def le_ode(classes: int, per_class, **kwargs) -> LocallyElastic:
    """The LE-ODE model (run it with gradient-flow dynamics: they follow ``model.drift``).

    Args:
        classes: K.
        per_class: n for every class, or the K counts n_k.
        **kwargs: the other arguments of :func:`locally_elastic`.

    Returns:
        The :class:`LocallyElastic` model named "le-ode".
    """
    return locally_elastic(classes, per_class, name="le-ode", **kwargs)


def le_sde(classes: int, per_class, **kwargs) -> LocallyElastic:
    """The LE-SDE model: the LE-ODE drift, run with ``kind = "sde"`` (noise = sigma).

    Args:
        classes: K.
        per_class: n for every class, or the K counts n_k.
        **kwargs: the other arguments of :func:`locally_elastic`.

    Returns:
        The :class:`LocallyElastic` model named "le-sde".
    """
    return locally_elastic(classes, per_class, name="le-sde", **kwargs)


# --------------------------------------------------------------------------- declarations

_ELASTIC_OPTIONS = (
    CLASSES, PER_CLASS,
    Option("alpha", "float", 1.0, "intra-class impact (the diagonal of E)", above=0.0, bad=0),
    Option("beta", "float", 0.5, "inter-class impact (off the diagonal of E)", low=0.0,
           bad=-0.5),
    Option("init_margin", "float", 1.0, "every class's mean margin at t = 0",
           nonzero="margins are followed relative to it", bad=0),
)  # fmt: skip
_NO_WEIGHTS = {**NO_BIAS, "wd_W": 0.0, "wd_H": 0.0}  # features only: nothing to decay


def _closed_form(o, counts) -> dict:
    """The class-averaged margin grows like exp(rate t), rate = (alpha - beta)/K, exactly."""
    if len(set(counts)) != 1:
        return {}
    return {"theory_margin_rate": theory.le_margin_rate(o["classes"], o["alpha"], o["beta"])}


def _elastic(name: str, kind: str, dynamics_defaults: dict) -> ModelSpec:
    return ModelSpec(
        name=name,
        summary=f"locally elastic feature dynamics, {kind == 'sde' and 'stochastic' or 'ODE'} "
        "(Zhang, Wang & Su 2021)",
        options=_ELASTIC_OPTIONS,
        build=functools.partial(locally_elastic, name=name),
        kinds=(kind,),
        pinned=_NO_WEIGHTS,
        features_are_logits=True,
        gradient_system=False,
        closed_form=_closed_form,
        targets=lambda o: ("nc1", "nc2_features"),
        geometry=lambda o: (
            "margin m(t) = m(0) exp((alpha - beta) t / K); NC1 -> 0 when alpha > beta"
        ),
        dynamics_defaults=dynamics_defaults,
    )


LE_ODE = _elastic("le-ode", "flow", {"t1": 40.0})
LE_SDE = _elastic("le-sde", "sde", {"kind": "sde", "t1": 40.0, "dt0": 0.01, "noise": 0.1})
