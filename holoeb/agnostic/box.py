"""Exact minimisation of a one-dimensional quadratic on an interval.

Agnostic-EqProp paper, Section 5.3 ("Energy minimization"): given all other variables,
the global energy is a z -> a z^2 + b z + c for each variable z, minimised on [p, q] at

    z* = min(max(p, -b / 2a), q)        (a > 0).

For a <= 0 (e.g. a negative nudge beta_1 that cancels the state's own quadratic term) the
minimum over a bounded interval is at an end point; we compare the two ends. With an
unbounded side the energy is unbounded below and z* is +-inf (the caller must prevent it).
"""
import jax.numpy as jnp


def box_quadratic_argmin(a, b, lo=-jnp.inf, hi=jnp.inf):
    """argmin_{z in [lo, hi]} a z^2 + b z, elementwise (broadcasting)."""
    a = jnp.asarray(a)
    b = jnp.asarray(b)
    safe_a = jnp.where(a > 0, a, 1.0)
    interior = jnp.clip(-b / (2.0 * safe_a), lo, hi)
    f = lambda z: a * z * z + b * z
    f_lo = jnp.where(jnp.isfinite(lo), f(jnp.where(jnp.isfinite(lo), lo, 0.0)), jnp.where(b > 0, -jnp.inf, jnp.inf))
    f_hi = jnp.where(jnp.isfinite(hi), f(jnp.where(jnp.isfinite(hi), hi, 0.0)), jnp.where(b < 0, -jnp.inf, jnp.inf))
    ends = jnp.where(f_lo <= f_hi, lo, hi)
    return jnp.where(a > 0, interior, ends).astype(jnp.result_type(a, b))
