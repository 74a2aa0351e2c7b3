"""Loss and Lyapunov functions of Aeqprop ("Agnostic Physics-Driven Deep Learning", Scellier,
Mishra, Bengio, Ollivier, arXiv:2205.15021, Theorems 2, 3 and 8).

    s_beta(theta) = argmin_s E(theta, x, s) + beta C(s, y)                     (Eq. 10)
    F(beta, theta) = min_s E + beta C                                          (Eq. 37)
    L(theta) = C(s_0(theta), y)                                                (Eq. 9)
    L_{b1;b2}(theta) = 1/(b2 - b1) int_{b1}^{b2} C(s_b(theta), y) db           (Eq. 24)
                     = (F(b2, theta) - F(b1, theta)) / (b2 - b1)               (Theorem 8, Eq. 58)

Optimistic Aeqprop has L_{0;beta} (written L_beta), pessimistic L_{-beta;0} (L_{-beta}),
centered L_{-beta/2;beta/2}; L_{0;beta} <= L <= L_{-beta;0} (Eq. 13 / 33). All values are
batch means (the batch energy is the mean over examples). The minimisations use the
model's exact block sweeps (exact when the state energy is convex, e.g. Section 5.2).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from holoeb.errors import ConfigError
from holoeb.estimators.aeqprop_coupling import state_energy
from holoeb.estimators.aeqprop_relaxation import relax_state


def equilibrium(model, theta, x, y, beta, num_steps=100, s0=None):
    """s_beta(theta) by exact sweeps from s0 (zeros by default); jitted once per model/num_steps."""
    s0 = model.init_state(x) if s0 is None else s0
    dtype = jax.tree_util.tree_leaves(s0)[0].dtype
    return _relaxed(model, int(num_steps), theta, x, y, jnp.asarray(beta, dtype), s0)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _relaxed(model, num_steps, theta, x, y, beta, s0):
    return relax_state(model, theta, x, y, beta, s0, num_steps)[0]


def free_energy(model, theta, x, y, beta, num_steps=100):
    """F(beta, theta) = min_s mean[E + beta C] (Eq. 37)."""
    s = equilibrium(model, theta, x, y, beta, num_steps)
    return state_energy(model, theta, x, y, s, beta)


def loss(model, theta, x, y, num_steps=100):
    """L(theta) = mean C(s_0(theta), y) (Eq. 9)."""
    return jnp.mean(model.cost(theta, equilibrium(model, theta, x, y, 0.0, num_steps), y))


def lyapunov(model, theta, x, y, beta1, beta2, num_steps=100):
    """L_{b1;b2}(theta) from free energies (Theorem 8, Eq. 58)."""
    if not beta2 > beta1:
        raise ConfigError(f"need beta_2 > beta_1, got {beta1}, {beta2}")
    f2 = free_energy(model, theta, x, y, beta2, num_steps)
    f1 = free_energy(model, theta, x, y, beta1, num_steps)
    return (f2 - f1) / (beta2 - beta1)


def lyapunov_quadrature(model, theta, x, y, beta1, beta2, order=16, num_steps=100):
    """L_{b1;b2}(theta) as the average of C(s_b) over [b1, b2] (Eq. 24), Gauss-Legendre."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    mid, half = 0.5 * (beta1 + beta2), 0.5 * (beta2 - beta1)
    total = 0.0
    for t, w in zip(nodes, weights):
        s = equilibrium(model, theta, x, y, float(mid + half * t), num_steps)
        total = total + 0.5 * w * jnp.mean(model.cost(theta, s, y))
    return total
