"""Nudged fixed-point dynamics of a model (generalized hEP paper, Eq. 1 and App. D.2):

    u <- Phi(theta, u, x) + beta * nudge(u, y)      F_beta(u) = Phi + beta*nudge - u,

where Phi is the model's free map and nudge its readout nudge (the model contract
is `holoeb.models.base.FixedPointModel`). beta may be complex for holomorphic
models. The functions here are the model-generic pieces the estimators share.
"""
from typing import Any, NamedTuple

import jax.numpy as jnp

from holoeb.solvers import sweep


class Batch(NamedTuple):
    x: Any  # (B, *input_shape)
    y: Any  # (B,) integer labels


def nudged_layers(model, params, drive, y, beta):
    """Layer update of the nudged map, (u, layers) -> Phi_layers(u) + beta nudge_layers(u, y)."""
    net = params["net"]

    def update(u, layers):
        new = model.phi_layers(net, u, drive, layers)
        if isinstance(beta, (int, float)) and beta == 0:
            return new
        g = model.nudge(params, u, y)
        return tuple(a + beta * g[l] for a, l in zip(new, layers))

    return update


def nudged_map(model, params, u, drive, y, beta):
    """Phi(u) + beta * nudge(u, y) as one sweep of the model's schedule; beta may be complex."""
    return sweep(nudged_layers(model, params, drive, y, beta), u, model.schedule)


def loss_at(model, params, u, y):
    """Mean loss at state u."""
    return jnp.mean(model.cost(params, u, y))


def accuracy(model, params, u, y):
    return jnp.mean(jnp.argmax(jnp.real(model.predict(params, u)), -1) == y)


def cast_state(u, dtype):
    return tuple(v.astype(dtype) for v in u)
