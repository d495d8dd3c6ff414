"""Explicit Runge-Kutta steps with the stages written out: diffrax's Tsit5 and Bosh3, fused.

diffrax's :class:`~diffrax.AbstractRungeKutta` runs the stages of any tableau in a loop: stage i
forms z_i = y0 + sum_j a_ij k_j as a product of the full tableau row with the buffer of all s
stages (zeros included), k_j = h f(t0 + c_j h, z_j). On a small state that loop costs about
as much as the vector field itself. Here the same tableau (the class's ``tableau``:
``a_lower``, ``b_sol``, ``b_error``, ``c``) is unrolled at trace time: each z_i sums only its
nonzero a_ij k_j, the error estimate e = sum_j beta_j k_j (``b_error``) is formed once, and y1
is the last stage (both tableaus are SSAL: ``b_sol`` equals the last row of ``a_lower``). Each
stage's evaluation (f_i, k_i) runs inside a ``lax.cond`` whose predicate is true at run time,
so that XLA materializes k_i once instead of re-fusing it into every later stage (see ``step``).

FSAL as in diffrax: the solver state is (first_step, f_last); a step reuses f_last = f(t0, y0)
as its first stage unless it is the first step or follows a jump (``made_jump``), then it
evaluates f(t0, y0) (under vmap: for all of the batch if any needs it, as diffrax does).
diffeqsolve keeps the new state only when it accepts the step. A step returns what diffrax's
returns: (y1, y_error, dict(y0, y1, k), (False, f_last), RESULTS.successful), k the stacked
stage increments (s, *leaf shape) that the solver's ``interpolation_cls`` reads, so
interpolation, order, error order, controllers, SaveAt and events are all diffrax's own.

Only single-term FSAL ERK steps are fused (ODETerm, or any term with a cheap ``vf``); a term
diffrax marks expensive (adjoint terms with vector controls) runs diffrax's own step.
"""

from __future__ import annotations

import diffrax
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jax import lax


def _combine(base, pairs):
    """base + sum_j a_j x_j over the nonzero a_j, leaf by leaf (``base`` None: no base term)."""
    pairs = [(float(a), x) for a, x in pairs if a != 0]

    def leaf(b, *xs):
        total = b
        for (a, _), x in zip(pairs, xs, strict=True):
            term = a * x
            total = term if total is None else total + term
        return jnp.zeros_like(b) if total is None else total

    if base is None:
        xs = [x for _, x in pairs]
        return jax.tree.map(lambda *leaves: leaf(None, *leaves), *xs)
    return jax.tree.map(leaf, base, *[x for _, x in pairs])


class _FusedERK:
    """Mixin over a diffrax FSAL ERK solver class: its ``step`` with the stages unrolled."""

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        """One step from t0 to t1, diffrax's ``AbstractSolver.step`` with the stages unrolled.

        Args:
            terms: the term (an ODETerm, or any with a cheap ``vf``; others run diffrax's step).
            t0: the step's start.
            t1: the step's end.
            y0: the state at t0.
            args: the vector field's extra arguments.
            solver_state: ``(first_step, f_last)``, FSAL's last evaluation.
            made_jump: the previous step ended at a jump (f(t0, y0) is evaluated afresh).

        Returns:
            ``(y1, y_error, dense_info, solver_state, result)``, as diffrax's own step.
        """
        tab = self.tableau
        vf_expensive, fsal = self._common(terms, t0, t1, y0, args)
        if vf_expensive or not fsal or not isinstance(tab, diffrax.ButcherTableau):
            return super().step(terms, t0, t1, y0, args, solver_state, made_jump)
        dt = t1 - t0
        control = terms.contr(t0, t1)  # h = t1 - t0 for an ODETerm

        def stage(t, y):
            f = terms.vf(t, y, args)
            return f, terms.prod(f, control)  # k = h f, as diffrax's ``prod``

        # Each stage runs in a cond on a predicate true at run time: a boundary XLA does not fuse
        # across. Without it XLA's CPU backend recomputes every k_j from the vector field's last
        # products inside each later stage's fusion (wide fusions, split over threads): ~1.7x
        # slower steps in float32 on the reference problem (with a near-free field the conds
        # cost ~25% instead). Unbatched, so a branch under vmap.
        live = eqxi.unvmap_any(jnp.asarray(dt == dt))
        first_step, f0 = solver_state
        # as diffrax's stage loop: f(t0, y0) evaluated for the whole batch if any needs it
        fresh = eqxi.unvmap_any(first_step | made_jump)
        f0 = lax.cond(fresh, lambda: terms.vf(t0, y0, args), lambda: f0)
        zeros = lambda tree: jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), tree)  # noqa: E731
        skipped = lambda t, y: (zeros(f0), zeros(y0))  # noqa: E731  (never taken: a NaN step)
        ks = [terms.prod(f0, control)]
        y_stage = y0
        for c_i, a_i in zip(tab.c, tab.a_lower, strict=True):
            y_stage = _combine(y0, zip(a_i, ks, strict=True))
            # no rounding in the last time: t1 itself where c_i = 1, as diffrax
            t_i = t1 if c_i == 1 else t0 + float(c_i) * dt
            f_i, k_i = lax.cond(live, stage, skipped, t_i, y_stage)
            ks.append(k_i)
        if tab.ssal:  # y1 = the last stage point
            y1 = y_stage
        else:
            y1 = _combine(y0, zip(tab.b_sol, ks, strict=True))
        y_error = _combine(None, zip(tab.b_error, ks, strict=True))
        k = jax.tree.map(lambda *leaves: jnp.stack(leaves), *ks)
        dense_info = dict(y0=y0, y1=y1, k=k)
        return y1, y_error, dense_info, (False, f_i), diffrax.RESULTS.successful


class FusedTsit5(_FusedERK, diffrax.Tsit5):
    """diffrax's :class:`~diffrax.Tsit5` (5(4), 7 stages, FSAL: 6 evaluations a step) with the
    stages written out; same tableau, interpolation and controller behaviour."""


class FusedBosh3(_FusedERK, diffrax.Bosh3):
    """diffrax's :class:`~diffrax.Bosh3` (3(2), 4 stages, FSAL: 3 evaluations a step) with the
    stages written out; same tableau, Hermite interpolation and controller behaviour."""


__all__ = ["FusedBosh3", "FusedTsit5"]
