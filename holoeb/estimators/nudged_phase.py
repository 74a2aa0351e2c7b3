"""Nudged relaxations batched over several (real or complex) nudges.

Each nudge beta_k relaxes u <- Phi(u) + beta_k * nudge(u, y) from the same start
(the free state), and all k run in one vmapped `lax` loop, so N phases cost one
loop over a K-times larger batch rather than K loops.
"""
import jax
import jax.numpy as jnp

from holoeb import dynamics
from holoeb.solvers import Relaxation


def nudged_relaxations(model, params, drive, y, u_start, betas, relaxation):
    """Stacked `Solution` (leading axis k) of the nudged dynamics for each beta_k, each
    relaxed with ``relaxation`` (a holoeb.solvers.Relaxation, or a number of steps) from ``u_start``."""
    relaxation = Relaxation.coerce(relaxation, "nudged relaxation")
    betas = jnp.asarray(betas)
    dtype = jnp.result_type(jax.tree_util.tree_leaves(u_start)[0].dtype, betas.dtype)
    u0 = dynamics.cast_state(u_start, dtype)
    if jnp.iscomplexobj(betas):
        drive = jax.tree_util.tree_map(lambda d: d.astype(dtype), drive)

    def one(beta):
        return relaxation.run_layers(dynamics.nudged_layers(model, params, drive, y, beta), u0, model.schedule)

    return jax.vmap(one)(betas.astype(dtype))


def weighted_activity_sum(model, states, s_ref, weights):
    """sum_k w_k (sigma(u_k) - s_ref) over a stacked state, per layer."""
    weights = jnp.asarray(weights)
    out = []
    for l, (uk, s0) in enumerate(zip(states, s_ref)):
        sk = model.activation(l, uk) - s0[None].astype(uk.dtype)
        out.append(jnp.tensordot(weights.astype(sk.dtype), sk, axes=1))
    return tuple(out)
