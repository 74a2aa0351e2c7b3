"""Relaxation of u <- step(u) to its fixed point inside `lax` loops.

Synchronous iterations update every layer from the previous state (comparative
study, Eq. 99); asynchronous ones update the even layers first, then the odd
layers from the refreshed even ones (Eqs. 100-101). Either runs for a fixed
number of steps or until the residual ||step(u) - u|| (the vector field's norm,
maximised over the batch) falls under a tolerance.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from holoeb.dynamics import state_norm


class Relaxation(NamedTuple):
    state: Any  # the final state (tuple of arrays)
    residual: Any  # (B,) per-example ||step(u) - u|| at the final state
    steps: Any  # number of iterations performed (int32 scalar)


def residual(step, u):
    """Per-example norm of the discrete vector field F(u) = step(u) - u, shape (B,)."""
    new = step(u)
    return state_norm(tuple(a - b for a, b in zip(new, u)))


def alternating(step, num_layers):
    """Asynchronous schedule built from a synchronous map: even layers (0, 2, ...)
    first, then odd layers computed from the refreshed even layers."""

    def async_step(u):
        new = step(u)
        u = tuple(new[l] if l % 2 == 0 else u[l] for l in range(num_layers))
        new = step(u)
        return tuple(u[l] if l % 2 == 0 else new[l] for l in range(num_layers))

    return async_step


def relax(step, u0, num_steps, *, tol=None):
    """Iterate ``u <- step(u)`` from ``u0``.

    Args:
      step: state -> state (a pure function; closures over params are fine).
      u0: initial state (tuple of arrays, batch first).
      num_steps: fixed number of iterations, or the maximum when ``tol`` is set.
      tol: if given, stop as soon as max_b ||step(u) - u|| <= tol.

    Returns:
      Relaxation(state, residual, steps).
    """
    num_steps = int(num_steps)
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    if tol is None:
        u = jax.lax.fori_loop(0, num_steps, lambda i, v: step(v), u0)
        return Relaxation(u, residual(step, u), jnp.asarray(num_steps, jnp.int32))

    def cond(c):
        i, _, res = c
        return (i < num_steps) & (jnp.max(res) > tol)

    def body(c):
        i, u, _ = c
        new = step(u)
        res = state_norm(tuple(a - b for a, b in zip(new, u)))
        return i + 1, new, res

    leaf = jax.tree_util.tree_leaves(u0)[0]
    res0 = jnp.full((leaf.shape[0],), jnp.inf, jnp.finfo(leaf.dtype).dtype)
    i, u, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), u0, res0))
    return Relaxation(u, residual(step, u), i)
