"""Simulated energy minimisation for Aeqprop (Agnostic-EqProp paper, Section 5.1 and 5.3).

Two simulators of the physics, both inside `lax` loops:

* exact coordinate-wise minimisation (Section 5.3) for energies that are quadratic in each
  variable given the others (Hopfield-like): the system provides `state_sweep` (each layer
  set to clip(-b/2a)) and `argmin_params` (all parameters in parallel); phases alternate them.
* generic gradient descent (Section 5.1, Eqs. 14-17) for any differentiable energy:

      s     <- s - eta_s grad_s calE                                     (14)
      theta <- theta + eta_theta (u - theta)/eps - eta_theta grad_theta E  (15)
      u     <- u + eta_u (theta_target - theta),   eta_u = eta_theta/(4 eps)   (16, 17)

  with the paper's adaptive step sizes: a step that lowers calE is kept and its step size
  multiplied by 1.05; a step that raises it is undone and the step size halved. (The paper
  multiplies or divides by 1.05 at random when calE is unchanged; we keep the step and the
  step size, which keeps the simulation deterministic.) eta_s starts at 1 and eta_theta at
  eps (componentwise); the state step uses the per-example energy (the sum over the batch),
  so eta_s does not depend on the batch size. States are projected on the box S if any.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from holoeb.agnostic.coupling import eps_tree, global_energy


def state_change(new, old):
    """Per-example Euclidean norm of the change of the state, shape (B,)."""
    return jnp.sqrt(sum(jnp.sum(jnp.reshape(a - b, (a.shape[0], -1)) ** 2, 1) for a, b in zip(new, old)))


def project(system, s):
    bounds = system.bounds() if hasattr(system, "bounds") else None
    if bounds is None:
        return s
    return tuple(jnp.clip(v, lo, hi) for v, (lo, hi) in zip(s, bounds))


# ---- exact coordinate-wise minimisation ------------------------------------------------
def relax_state(system, theta, x, y, beta, s0, num_steps, backward=None):
    """s_beta(theta) = argmin_s E + beta C at fixed theta (Eq. 10) by `num_steps` exact sweeps.
    Layers go first-to-last for beta = 0 and last-to-first when nudged (Appendix C).
    Returns (state, per-example change at the last sweep)."""
    if backward is None:
        backward = not (isinstance(beta, (int, float)) and beta == 0)
    kwargs = {}
    if hasattr(system, "first_drive"):  # input drive computed once at fixed parameters
        kwargs["first_drive"] = system.first_drive(theta, x)
    sweep = lambda s: system.state_sweep(theta, x, y, beta, s, backward=backward, **kwargs)

    def body(_, c):
        s, _ = c
        new = sweep(s)
        return new, state_change(new, s)

    res0 = jnp.full((x.shape[0],), jnp.inf, x.dtype)
    return jax.lax.fori_loop(0, int(num_steps), body, (s0, res0))


def exact_phase2(system, u, eps, x, y, beta, s0, num_steps):
    """Clamped knobs u, nudge beta: `num_steps` x [layers last-to-first, then parameters].
    Returns (state, theta, per-example last state change)."""
    eps = eps_tree(eps, u)
    if hasattr(system, "phase2_relax"):
        return system.phase2_relax(u, eps, x, y, beta, s0, int(num_steps))

    def body(_, c):
        s, theta, _ = c
        new = system.state_sweep(theta, x, y, beta, s, backward=True)
        return new, system.argmin_params(u, eps, x, new), state_change(new, s)

    theta0 = system.argmin_params(u, eps, x, s0)
    res0 = jnp.full((x.shape[0],), jnp.inf, x.dtype)
    return jax.lax.fori_loop(0, int(num_steps), body, (s0, theta0, res0))


def exact_homeostasis(system, theta_target, u0, eps, x, y, beta, s0, num_steps, gain=1.0):
    """Iterative (proportional) controller with exact relaxation (Section 5.1, Eq. 16 with the
    physics relaxed exactly): repeat [state sweep; theta <- argmin_theta calE; u <- u + gain
    (theta_target - theta)]. gain = 1 is dead-beat. Returns (state, theta, u, last state change)."""
    eps = eps_tree(eps, theta_target)
    backward = not (isinstance(beta, (int, float)) and beta == 0)

    def body(_, c):
        s, theta, u, _ = c
        new = system.state_sweep(theta, x, y, beta, s, backward=backward)
        theta = system.argmin_params(u, eps, x, new)
        u = jax.tree_util.tree_map(lambda a, t, p: a + gain * (t - p), u, theta_target, theta)
        return new, theta, u, state_change(new, s)

    theta0 = system.argmin_params(u0, eps, x, s0)
    res0 = jnp.full((x.shape[0],), jnp.inf, x.dtype)
    return jax.lax.fori_loop(0, int(num_steps), body, (s0, theta0, u0, res0))


# ---- generic gradient-descent relaxation -----------------------------------------------
class GradientRelaxation(NamedTuple):
    state: Any
    theta: Any
    u: Any
    residual: Any  # (B,) per-example state change at the last step
    eta_s: Any  # final adaptive step-size factors
    eta_theta: Any


def gradient_relax(system, u, theta, s, x, y, eps, beta, num_steps, *, theta_target=None, float_theta=True,
                   eta_s=1.0, eta_theta=1.0):
    """Eqs. (14)-(17) with adaptive step sizes. ``theta_target`` given: homeostatic phase, the
    proportional controller (16) adjusts u; None: knobs clamped (eta_u = 0). ``float_theta``
    False keeps theta fixed (state relaxation only). ``eta_theta`` is a factor on eps."""
    eps_t = eps_tree(eps, theta)
    B = x.shape[0]
    energy = lambda uu, th, ss: global_energy(system, uu, th, ss, x, y, eps_t, beta)
    dtype = jax.tree_util.tree_leaves(theta)[0].dtype

    def body(_, c):
        s, th, uu, fs, ft, _ = c
        e0 = energy(uu, th, s)
        gs = jax.grad(lambda v: energy(uu, th, v))(s)
        s_new = project(system, tuple(a - fs * B * g for a, g in zip(s, gs)))
        e1 = energy(uu, th, s_new)
        ok = e1 <= e0
        s_next = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), s_new, s)
        fs = jnp.where(e1 < e0, fs * 1.05, jnp.where(ok, fs, fs * 0.5))
        if float_theta:
            e0 = energy(uu, th, s_next)
            gt = jax.grad(lambda p: energy(uu, p, s_next))(th)
            th_new = jax.tree_util.tree_map(lambda p, g, e: p - ft * e * g, th, gt, eps_t)
            e1 = energy(uu, th_new, s_next)
            okt = e1 <= e0
            th_next = jax.tree_util.tree_map(lambda a, b: jnp.where(okt, a, b), th_new, th)
            if theta_target is not None:
                uu = jax.tree_util.tree_map(
                    lambda a, t, p: jnp.where(okt, a + (ft / 4.0) * (t - p), a), uu, theta_target, th_next
                )
            ft = jnp.where(e1 < e0, ft * 1.05, jnp.where(okt, ft, ft * 0.5))
            th = th_next
        return s_next, th, uu, fs, ft, state_change(s_next, s)

    c0 = (s, theta, u, jnp.asarray(eta_s, dtype), jnp.asarray(eta_theta, dtype), jnp.full((B,), jnp.inf, dtype))
    s, th, uu, fs, ft, res = jax.lax.fori_loop(0, int(num_steps), body, c0)
    return GradientRelaxation(s, th, uu, res, fs, ft)
