"""Closed forms of gflow.theory against the worked numbers of the papers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gflow import theory
from gflow.models import ufm_ce


@pytest.mark.parametrize("K, d", [(2, 1), (3, 2), (4, 8), (10, 9), (10, 32)])
def test_simplex_etf_rows_are_unit_and_equiangular(K, d):
    E = theory.simplex_etf(K, d)
    assert E.shape == (K, d)
    np.testing.assert_allclose(E @ E.T, theory.etf_gram(K), atol=1e-14)
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-14)
    cos = (E @ E.T)[~np.eye(K, dtype=bool)]
    np.testing.assert_allclose(cos, -1.0 / (K - 1), atol=1e-14)
    np.testing.assert_allclose(E.sum(axis=0), 0.0, atol=1e-14)


def test_simplex_etf_needs_k_minus_1_dims():
    with pytest.raises(ValueError, match="dim >= 3"):
        theory.simplex_etf(4, 2)


def test_ufm_ce_worked_values_k4_n5():
    opt = theory.ufm_ce_optimum(4, 5, 5e-3, 5e-3)
    assert opt.collapsed
    assert opt.c == pytest.approx(math.sqrt(0.2), rel=1e-15)
    assert opt.rho == pytest.approx(29.91511460643, rel=1e-11)
    assert opt.H_norm_sq == pytest.approx(29.91511460643, rel=1e-11)


def test_ufm_ce_worked_value_k10_n20():
    # the worked number printed is 143.93; the formula gives 143.9211 (hand: (9/sqrt(0.05)) *
    # log((sqrt(0.05) - 0.045)/0.005)), which is also where gradient flow ends (performance notes:
    # 143.92). The printed value is a rounding slip; the formula is what is checked.
    c = math.sqrt(0.05)
    expected = 9 / c * math.log((c - 9 * 5e-3) / 5e-3)
    assert theory.ufm_ce_optimum(10, 20, 5e-3, 5e-3).rho == pytest.approx(expected, rel=1e-14)
    assert expected == pytest.approx(143.92, abs=0.005)


@pytest.mark.parametrize(
    "K, n, wd_W, wd_H", [(4, 5, 5e-3, 5e-3), (3, 4, 1e-2, 2e-3), (5, 3, 2e-3, 1e-2)]
)
def test_closed_form_point_is_stationary_with_the_stated_loss(K, n, wd_W, wd_H):
    """Build W = sqrt(rho/K) * ETF, h_i = c w_{y_i}, b = 0: gradient 0, loss = f(rho)."""
    opt = theory.ufm_ce_optimum(K, n, wd_W, wd_H)
    model = ufm_ce(K, K + 1, n, wd_W=wd_W, wd_H=wd_H, wd_b=1e-3, dtype=jnp.float64)
    W = math.sqrt(opt.rho / K) * theory.simplex_etf(K, K + 1)
    params = {"W": jnp.asarray(W), "H": jnp.asarray(opt.c * W[model.labels]), "b": jnp.zeros(K)}
    np.testing.assert_allclose(W @ W.T, opt.W_gram, atol=1e-12)
    assert float(model.loss(params)) == pytest.approx(opt.loss, rel=1e-13)
    grads = jax.grad(model.loss)(params)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-12
    # and rho minimizes the 1-d reduction f(rho) = log(1 + (K-1) e^{-c rho/(K-1)}) + wd_W rho
    f = lambda r: math.log1p((K - 1) * math.exp(-opt.c * r / (K - 1))) + wd_W * r  # noqa: E731
    assert f(opt.rho) < min(f(opt.rho * 0.999), f(opt.rho * 1.001))


def test_collapse_threshold_gives_zero_solution():
    # K sqrt(n wd_W wd_H) = 4 * sqrt(5 * 0.05 * 0.05) = 0.447 < 1: collapsed; 0.3 -> 2.68 >= 1: zero
    assert theory.collapse_threshold(4, 5, 0.05, 0.05) == pytest.approx(4 * math.sqrt(5) * 0.05)
    assert theory.ufm_ce_optimum(4, 5, 0.05, 0.05).collapsed
    zero = theory.ufm_ce_optimum(4, 5, 0.3, 0.3)
    assert not zero.collapsed and zero.rho == 0.0 and zero.loss == pytest.approx(math.log(4))


def test_ulpm_max_margin():
    assert theory.ulpm_max_margin(4, 5) == pytest.approx(1 / (math.sqrt(5) * 3), rel=1e-15)
    assert theory.ulpm_max_margin(10, 20) == pytest.approx(1 / (math.sqrt(20) * 9), rel=1e-15)
