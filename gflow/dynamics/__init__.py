"""Dynamics: each takes any loss and a parameter pytree and returns a Trajectory."""

from gflow.dynamics.descent import OPTIMIZERS, gradient_descent
from gflow.dynamics.flow import FIXED_STEP_SOLVERS, SOLVERS, gradient_flow
from gflow.dynamics.minibatch import stochastic_gradient_descent
from gflow.dynamics.trajectory import STATUS, Trajectory

__all__ = [
    "FIXED_STEP_SOLVERS",
    "OPTIMIZERS",
    "SOLVERS",
    "STATUS",
    "Trajectory",
    "gradient_descent",
    "gradient_flow",
    "stochastic_gradient_descent",
]
