"""Control knobs coupled to floating parameters, and the global energy (Eq. 4 / Eq. 23).

    calE(u, theta, s) = sum_k ||u_k - theta_k||^2 / (2 eps_k) + mean_i [E(theta, x_i, s_i) + beta C(s_i, y_i)]

with one coupling strength eps_k per parameter leaf (Appendix A: a per-component coupling
gives per-component step sizes eps_k * beta). For a mini-batch the physical energy is the
*mean* over examples (each example has its own state s_i, all share theta), so that the
Aeqprop step is eps*beta times the gradient of the mean loss.

The one-step homeostatic controller (Section 5.3, "Homeostatic control") sets the knobs to
the value for which theta is at equilibrium, d calE / d theta = 0:

    u = theta + eps * dE/dtheta(theta, x, s_{beta_1})      (partial derivative; C has no theta).
"""
import math

import jax
import jax.numpy as jnp


def check_eps(eps, theta=None):
    """eps: a positive finite scalar or a pytree of positive scalars/arrays shaped like theta."""
    leaves = jax.tree_util.tree_leaves(eps)
    if not leaves:
        raise ValueError(f"eps must be a positive number or a pytree like the parameters, got {eps!r}")
    for leaf in leaves:
        if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            if not math.isfinite(leaf) or leaf <= 0:
                raise ValueError(f"eps (coupling strength) must be finite and > 0, got {leaf!r}")
        elif not isinstance(leaf, jax.core.Tracer):
            arr = jnp.asarray(leaf)
            if not bool(jnp.all(jnp.isfinite(arr) & (arr > 0))):
                raise ValueError("eps (coupling strength) must be finite and > 0 in every component")
    if theta is not None and not isinstance(eps, (int, float)):
        if jax.tree_util.tree_structure(eps) != jax.tree_util.tree_structure(theta):
            raise ValueError(
                "per-component eps must have the parameters' tree structure: "
                f"{jax.tree_util.tree_structure(eps)} vs {jax.tree_util.tree_structure(theta)}"
            )
    return eps


def eps_tree(eps, theta):
    """Broadcast a scalar eps to a pytree like theta (or check a given pytree)."""
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        return jax.tree_util.tree_map(lambda p: jnp.asarray(eps, p.dtype), theta)
    return jax.tree_util.tree_map(lambda e, p: jnp.asarray(e, p.dtype), eps, theta)


def coupling_energy(u, theta, eps):
    """sum_k ||u_k - theta_k||^2 / (2 eps_k)  (the control energy U(u, theta)/eps of Eq. 23)."""
    eps = eps_tree(eps, theta)
    terms = jax.tree_util.tree_map(lambda a, p, e: jnp.sum((a - p) ** 2 / (2.0 * e)), u, theta, eps)
    return sum(jax.tree_util.tree_leaves(terms))


def state_energy(system, theta, x, y, s, beta):
    """mean_i [E(theta, x_i, s_i) + beta C(s_i, y_i)]: the energy at fixed parameters (Eq. 10)."""
    e = system.energy(theta, x, s)
    if isinstance(beta, (int, float)) and beta == 0:
        return jnp.mean(e)
    return jnp.mean(e + beta * system.cost(s, y))


def global_energy(system, u, theta, s, x, y, eps, beta):
    """The global energy calE of Eq. (4) (per-component eps as in Eq. 23)."""
    return coupling_energy(u, theta, eps) + state_energy(system, theta, x, y, s, beta)


def energy_param_grad(system, theta, x, s):
    """Partial derivative dE/dtheta at fixed state (mean over the batch)."""
    return jax.grad(lambda p: jnp.mean(system.energy(p, x, s)))(theta)


def one_step_controller(system, theta, x, s, eps):
    """u = theta + eps * dE/dtheta(theta, x, s)  (Section 5.3): theta is then an equilibrium."""
    g = energy_param_grad(system, theta, x, s)
    return jax.tree_util.tree_map(lambda p, e, gi: p + e * gi, theta, eps_tree(eps, theta), g)
