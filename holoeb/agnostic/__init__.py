"""Agnostic equilibrium propagation (Scellier, Mishra, Bengio, Ollivier): parameters as
floating variables held by homeostatically controlled knobs, one gradient step per nudge.

    variants       (beta_1, beta_2) of optimistic / pessimistic / centered Aeqprop
    coupling       global energy (Eq. 4), per-component eps, one-step controller
    box            exact 1-D quadratic minimisation on an interval (z = clip(-b/2a))
    relaxation     exact coordinate-wise and gradient-descent simulators, iterative controller
    procedure      one Aeqprop step (Eqs. 5-6 / 27-28)
    lyapunov       L, L_{b1;b2} (Theorems 2, 3, 8)
    linear_regression, dense_hopfield   the systems of Sections 5.2 and 5.3
The estimator behind the common interface is holoeb.estimators.aeqprop.Aeqprop ("aeqprop").
"""
from holoeb.agnostic.dense_hopfield import DenseHopfield
from holoeb.agnostic.linear_regression import FourierRegression
from holoeb.agnostic.procedure import AeqpropStep, aeqprop_gradient, aeqprop_step
from holoeb.agnostic.variants import VARIANTS, nudges

__all__ = ["AeqpropStep", "DenseHopfield", "FourierRegression", "VARIANTS", "aeqprop_gradient", "aeqprop_step", "nudges"]
