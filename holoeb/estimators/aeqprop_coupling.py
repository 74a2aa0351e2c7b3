"""Control knobs coupled to floating parameters, the global energy (Eq. 4 / Eq. 23) and the
one-step homeostatic controller of Aeqprop ("Agnostic Physics-Driven Deep Learning",
Scellier, Mishra, Bengio, Ollivier, arXiv:2205.15021):

    calE(u, theta, s) = sum_k ||u_k - theta_k||^2 / (2 eps_k) + mean_i [E(theta, x_i, s_i) + beta C(s_i, y_i)]

with one coupling strength eps_k per parameter leaf (Appendix A: a per-component coupling
gives per-component step sizes eps_k * beta). For a mini-batch the physical energy is the
*mean* over examples (each example has its own state s_i, all share theta), so that the
Aeqprop step is eps*beta times the gradient of the mean loss.

theta, u and eps are pytrees like the model's parameters {"net": ..., "readout": ...}; E is
`holoeb.energy.energy` of the model's "net" (an energy model's readout is empty, and has no
energy term: its dE/dtheta is zero).

The one-step controller (Section 5.3, "Homeostatic control") sets the knobs to the value for
which theta is at equilibrium, d calE / d theta = 0:

    u = theta + eps * dE/dtheta(theta, x, s_{beta_1})      (partial derivative; C has no theta).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np

from holoeb import energy
from holoeb.errors import ConfigError


def check_eps(eps, theta=None):
    """eps: a positive finite scalar or a pytree of positive scalars/arrays shaped like theta."""
    leaves = jax.tree_util.tree_leaves(eps)
    if not leaves:
        raise ConfigError(f"eps must be a positive number or a pytree like the parameters, got {eps!r}")
    for leaf in leaves:
        if isinstance(leaf, (int, float)) and not isinstance(leaf, bool):
            if not math.isfinite(leaf) or leaf <= 0:
                raise ConfigError(f"eps (coupling strength) must be finite and > 0, got {leaf!r}")
        elif not isinstance(leaf, jax.core.Tracer):
            arr = jnp.asarray(leaf)
            if not bool(jnp.all(jnp.isfinite(arr) & (arr > 0))):
                raise ConfigError("eps (coupling strength) must be finite and > 0 in every component")
    if theta is not None and not isinstance(eps, (int, float)):
        if jax.tree_util.tree_structure(eps) != jax.tree_util.tree_structure(theta):
            raise ConfigError(
                "per-component eps must have the parameters' tree structure: "
                f"{jax.tree_util.tree_structure(eps)} vs {jax.tree_util.tree_structure(theta)}"
            )
    return eps


def eps_tree(eps, theta):
    """Broadcast a scalar eps to a pytree like theta (or cast a given pytree)."""
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        return jax.tree_util.tree_map(lambda p: jnp.asarray(eps, p.dtype), theta)
    return jax.tree_util.tree_map(lambda e, p: jnp.asarray(e, p.dtype), eps, theta)


def tree_axpy(a, x, y):
    """a * x + y leafwise (a a pytree like x, or a scalar / 0-d array)."""
    if isinstance(a, (int, float, np.generic)) or (isinstance(a, (jax.Array, np.ndarray)) and a.ndim == 0):
        return jax.tree_util.tree_map(lambda xi, yi: a * xi + yi, x, y)
    return jax.tree_util.tree_map(lambda ai, xi, yi: ai * xi + yi, a, x, y)


def param_grad(model, theta, x, s):
    """dE/dtheta at fixed state (mean over the batch), a pytree like theta (zero readout)."""
    g = energy.energy_param_grad(model, theta["net"], x, s)
    return {**theta, "net": g, "readout": jax.tree_util.tree_map(jnp.zeros_like, theta["readout"])}


def coupling_energy(u, theta, eps):
    """sum_k ||u_k - theta_k||^2 / (2 eps_k)  (the control energy U(u, theta)/eps of Eq. 23)."""
    eps = eps_tree(eps, theta)
    terms = jax.tree_util.tree_map(lambda a, p, e: jnp.sum((a - p) ** 2 / (2.0 * e)), u, theta, eps)
    return sum(jax.tree_util.tree_leaves(terms), jnp.zeros((), jax.tree_util.tree_leaves(theta)[0].dtype))


def state_energy(model, theta, x, y, s, beta):
    """mean_i [E(theta, x_i, s_i) + beta C(s_i, y_i)]: the energy at fixed parameters (Eq. 10)."""
    e = energy.energy(model, theta["net"], x, s)
    if isinstance(beta, (int, float)) and beta == 0:
        return jnp.mean(e)
    return jnp.mean(e + beta * model.cost(theta, s, y))


def global_energy(model, u, theta, s, x, y, eps, beta):
    """The global energy calE of Eq. (4) (per-component eps as in Eq. 23)."""
    return coupling_energy(u, theta, eps) + state_energy(model, theta, x, y, s, beta)


def one_step_controller(model, theta, x, s, eps):
    """u = theta + eps * dE/dtheta(theta, x, s)  (Section 5.3): theta is then an equilibrium."""
    return tree_axpy(eps_tree(eps, theta), param_grad(model, theta, x, s), theta)
