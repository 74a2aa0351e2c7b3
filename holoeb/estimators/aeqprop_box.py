"""Exact minimisation of a one-dimensional quadratic on an interval, and the nudged output
update of an energy model built from it.

"Agnostic Physics-Driven Deep Learning" (Scellier, Mishra, Bengio, Ollivier, arXiv:2205.15021),
Section 5.3 ("Energy minimization"): given all other variables, the global energy is
z -> a z^2 + b z + const for each variable z, minimised on [p, q] at

    z* = min(max(p, -b / 2a), q)        (a > 0).

For a <= 0 (e.g. a negative nudge beta_1 that cancels the state's own quadratic term) the
minimum over a bounded interval is at an end point; we compare the two ends. With an
unbounded side the energy is unbounded below and z* is +-inf (the caller must prevent it:
`check_nudge`).

Output layer of an EnergyModel (E = 1/2 ||s||^2 - Phi, C = c ||o - t||^2): given a = dPhi/do,
E + beta C = (1 + 2 beta c)/2 o^2 - (a + 2 beta c t) o + const per unit, so the exact nudged
output is `box_quadratic_argmin((1 + 2 beta c)/2, -(a + 2 beta c t), lo, hi)`. The target t is
read off the model's own nudge (-dC/do = 2 c (t - o), at o = 0), so classifiers (one-hot t)
and regression models (real t) need no special case.
"""
import jax.numpy as jnp

from holoeb.errors import ConfigError


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


def output_bounds(model):
    """The output box (lo, hi) of an energy model; (-inf, inf) when unbounded (the
    EnergyModel default: S = [0, 1]^hidden x R^out; a model with a boxed output has the
    field ``output_bounds``). Hidden layers are always [0, 1]."""
    b = model.output_bounds
    return (-float("inf"), float("inf")) if b is None else tuple(b)


def is_zero(beta):
    return isinstance(beta, (int, float)) and beta == 0


def check_nudge(model, beta):
    """E + beta C must be bounded below on the state space: with an unbounded output this
    needs 1 + 2 beta c > 0 (a bounded box admits every beta). Concrete beta only."""
    bounded = model.output_bounds is not None
    c = model.cost_scale
    if not bounded and 1.0 + 2.0 * beta * c <= 0:
        raise ConfigError(
            f"nudge beta={beta} makes E + beta C unbounded below for {type(model).__name__} "
            f"(need 1 + 2 beta c > 0 with c = cost_scale = {c}); bound the output or use a smaller |beta|"
        )


def cost_target(model, params, like, y):
    """The target t of C = c ||o - t||^2, read off the model's nudge at o = 0 (shape of ``like``)."""
    zero = tuple(jnp.zeros_like(v) for v in like)
    return model.nudge(params, zero, y)[-1] / (2.0 * model.cost_scale)


def output_argmin(model, params, like, y, beta):
    """The output update (a, o) -> argmin_{o in box} 1/2 o^2 - a o + beta C(o) (exact;
    beta may be traced). ``like``: a state (for the target's shape and dtype)."""
    lo, hi = output_bounds(model)
    if is_zero(beta):
        return lambda a, o: jnp.clip(a, lo, hi)
    k = beta * model.cost_scale
    t = cost_target(model, params, like, y)

    def update(a, o):
        return box_quadratic_argmin(0.5 * (1.0 + 2.0 * k), -(a + 2.0 * k * t.astype(a.dtype)), lo, hi).astype(a.dtype)

    return update
