"""Nudged relaxations batched over several (real or complex) nudges.

Each nudge beta_k relaxes u <- Phi(u) + beta_k * nudge(u, y) from the same start
(the free state), and all k run in one vmapped `lax` loop, so N phases cost one
loop over a K-times larger batch rather than K loops.
"""
import jax
import jax.numpy as jnp

from holoeb import dynamics
from holoeb.solvers import relax


def nudged_relaxations(model, params, drive, y, u_start, betas, T_nudge, tol=None):
    """Stacked `Relaxation` (leading axis k) of the nudged dynamics for each beta_k."""
    betas = jnp.asarray(betas)
    dtype = jnp.result_type(jax.tree_util.tree_leaves(u_start)[0].dtype, betas.dtype)
    u0 = dynamics.cast_state(u_start, dtype)
    drive = tuple(d.astype(dtype) if jnp.iscomplexobj(betas) else d for d in drive)

    def one(beta):
        step = lambda u: dynamics.nudged_map(model, params, u, drive, y, beta)
        return relax(step, u0, T_nudge, tol=tol)

    return jax.vmap(one)(betas.astype(dtype))


def weighted_activity_sum(model, states, s_ref, weights):
    """sum_k w_k (sigma(u_k) - s_ref) over a stacked state, per layer."""
    weights = jnp.asarray(weights)
    out = []
    for l, (uk, s0) in enumerate(zip(states, s_ref)):
        sk = model.activation(l, uk) - s0[None].astype(uk.dtype)
        out.append(jnp.tensordot(weights.astype(sk.dtype), sk, axes=1))
    return tuple(out)
