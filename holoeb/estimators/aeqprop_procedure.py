"""One Aeqprop step ("Agnostic Physics-Driven Deep Learning", Scellier, Mishra, Bengio,
Ollivier, arXiv:2205.15021, Section 2, Eqs. 5-6; Appendix A, Eqs. 27-28), on any
`holoeb.models.base.EnergyModel` with parameters theta = {"net": ..., "readout": ...}:

    phase 1: present x with nudge beta_1; the homeostatic controller sets the knobs u_t so
             that theta stays at theta_{t-1}:  theta_{t-1} = argmin_theta min_s calE(u_t, ., ., beta_1)
    phase 2: clamp u_t, nudge beta_2, let (s, theta) reach the joint equilibrium:
             theta_t = argmin_theta min_s calE(u_t, theta, s, beta_2)

with calE = ||u - theta||^2 / 2 eps + E(theta, x, s) + beta C(s, y) (Eq. 4; eps may be a
pytree of per-component couplings, Appendix A). Theorem 1: theta_t = theta_{t-1}
- eps (beta_2 - beta_1) dL/dtheta + O(eps^2 beta + eps beta^2).

Simulators (holoeb.estimators.aeqprop_relaxation):
  relaxation="exact":    block-exact minimisation (the model's block minimiser, generic parameter argmin)
  relaxation="gradient": gradient descent on calE (Eqs. 14-17), autodiff of the global energy
  controller="one_step":  u = theta + eps dE/dtheta(theta, x, s_{beta_1})   (Section 5.3)
  controller="iterative": proportional controller u += eta_u (theta_{t-1} - theta)  (Eq. 16)
"""
from typing import Any, NamedTuple

import jax

from holoeb.errors import ConfigError
from holoeb.estimators.aeqprop_box import check_nudge
from holoeb.estimators.aeqprop_coupling import eps_tree, one_step_controller
from holoeb.estimators.aeqprop_relaxation import exact_homeostasis, exact_phase2, gradient_relax, relax_state
from holoeb.solvers import Relaxation

RELAXATIONS = ("exact", "gradient")
CONTROLLERS = ("one_step", "iterative")


class AeqpropStep(NamedTuple):
    theta: Any  # theta_t, read at the end of phase 2
    u: Any  # the clamped control knobs u_t
    state1: Any  # equilibrium state of phase 1 (nudge beta_1, theta held)
    state2: Any  # equilibrium state of phase 2 (nudge beta_2, theta floating)
    theta1: Any  # theta at the end of phase 1 (= theta_{t-1} up to the controller's accuracy)
    residual1: Any  # (B,) state change at the last iteration of phase 1
    residual2: Any  # (B,) state change at the last iteration of phase 2


def check_options(relaxation, controller):
    if relaxation not in RELAXATIONS:
        raise ConfigError(f"unknown relaxation {relaxation!r}; choose one of {list(RELAXATIONS)}")
    if controller not in CONTROLLERS:
        raise ConfigError(f"unknown controller {controller!r}; choose one of {list(CONTROLLERS)}")


def aeqprop_step(model, theta, x, y, *, eps, beta1, beta2, relaxation="exact", controller="one_step",
                 steps1=50, steps2=50, s0=None, u0=None, controller_gain=1.0, input_shortcut=False):
    """Run phases 1 and 2 of Aeqprop on the batch (x, y) from parameters theta = theta_{t-1}.

    beta1 < beta2 are Python floats (see holoeb.estimators.aeqprop_variants.nudges).
    ``steps1`` / ``steps2``: each phase's `holoeb.solvers.Relaxation` (or its number of
    iterations). ``s0``: initial state (default model.init_state); ``u0``: initial knobs for
    the iterative controller (default theta: the knobs left where the parameters are).
    ``input_shortcut``: phase 2 of the exact relaxation without materialising w1 (dense
    Hopfield only, see aeqprop_relaxation.dense_input_phase2; same result)."""
    check_options(relaxation, controller)
    phase1, phase2 = Relaxation.coerce(steps1, "phase 1"), Relaxation.coerce(steps2, "phase 2")
    concrete = all(isinstance(b, (int, float)) for b in (beta1, beta2))
    if concrete:  # traced nudges (e.g. a jitted sweep over beta) skip these Python-level checks
        if not beta2 > beta1:
            raise ConfigError(f"need beta_2 > beta_1, got beta_1={beta1}, beta_2={beta2}")
        for b in (beta1, beta2):
            check_nudge(model, b)
    eps_t = eps_tree(eps, theta)
    s0 = model.init_state(x) if s0 is None else s0
    u0 = theta if u0 is None else u0

    if relaxation == "exact":
        if controller == "one_step":
            s1, res1 = relax_state(model, theta, x, y, beta1, s0, phase1)
            u = one_step_controller(model, theta, x, s1, eps_t)
            theta1 = theta
        else:
            s1, theta1, u, res1 = exact_homeostasis(model, theta, u0, eps_t, x, y, beta1, s0, phase1, controller_gain)
        s2, theta2, res2 = exact_phase2(model, u, eps_t, x, y, beta2, s1, phase2, input_shortcut)
    else:
        if input_shortcut:
            raise ConfigError("input_shortcut applies to the exact relaxation only")
        if controller == "one_step":
            r1 = gradient_relax(model, u0, theta, s0, x, y, eps_t, beta1, phase1, float_theta=False)
            u = one_step_controller(model, theta, x, r1.state, eps_t)
            theta1 = theta
        else:
            r1 = gradient_relax(model, u0, theta, s0, x, y, eps_t, beta1, phase1, theta_target=theta)
            u, theta1 = r1.u, r1.theta
        s1, res1 = r1.state, r1.residual
        r2 = gradient_relax(model, u, theta1, s1, x, y, eps_t, beta2, phase2)
        s2, theta2, res2 = r2.state, r2.theta, r2.residual
    return AeqpropStep(theta2, u, s1, s2, theta1, res1, res2)


def aeqprop_gradient(theta_prev, theta_new, eps, dbeta):
    """The estimator's gradient (theta_{t-1} - theta_t) / (eps (beta_2 - beta_1)) (Theorem 1)."""
    eps_t = eps_tree(eps, theta_prev)
    return jax.tree_util.tree_map(lambda a, b, e: (a - b) / (e * dbeta), theta_prev, theta_new, eps_t)
