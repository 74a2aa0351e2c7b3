"""Fixed-point dynamics of a model with a readout nudge.

A model defines the free map Phi over a state u = (u_1, ..., u_L) (one array per
layer, batch first). The nudged discrete dynamics and vector field are
(generalized hEP paper, Eq. 1 and App. D.2):

    u <- Phi(theta, u, x) + beta * nudge(u, y)      F_beta(u) = Phi + beta*nudge - u,

where the nudge acts on the output layer only (see `holoeb.readout`). All of it
accepts complex u and complex beta.

Model protocol (see holoeb/models/): a frozen, hashable object with
  input_shape             per-example input shape (e.g. (784,))
  num_classes
  init(rng) -> {"net": ..., "readout": ...}
  init_state(x) -> tuple of zero arrays (dtype of x)
  drive(net, x) -> input-dependent constants (computed once per relaxation)
  phi(net, u, drive) -> new state (the free map)
  activation(l, u_l) -> sigma_l(u_l): the activity of layer l
  weight_pairs(net) -> [(name, w_f, w_b^T-shaped)] for the weight-angle diagnostic
Optional hooks replacing the cross-entropy readout (e.g. energy-based models with
a squared-error cost on the output layer):
  cost(params, u, y) -> (B,) per-example loss
  nudge(params, u, y) -> tuple like u: -dC/d(activity), the direction beta multiplies
  predict(params, u) -> (B, C) class scores
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from holoeb import readout


class Batch(NamedTuple):
    x: Any  # (B, *input_shape)
    y: Any  # (B,) integer labels


def output_features(model, u):
    """Activity of the output layer, flattened to (B, n_features)."""
    s = model.activation(len(u) - 1, u[-1])
    return s.reshape(s.shape[0], -1)


def output_nudge(model, params, u, y):
    """dF/dbeta: the model's `nudge` hook, else zeros on hidden layers and the
    readout nudge on the output layer."""
    if hasattr(model, "nudge"):
        return tuple(model.nudge(params, u, y))
    g = readout.nudge(params["readout"], output_features(model, u), y)
    return tuple(jnp.zeros_like(v) for v in u[:-1]) + (g.reshape(u[-1].shape).astype(u[-1].dtype),)


def nudged_map(model, params, u, drive, y, beta):
    """Phi(u) + beta * nudge(u, y); beta may be complex."""
    new = model.phi(params["net"], u, drive)
    if isinstance(beta, (int, float)) and beta == 0:
        return new
    if hasattr(model, "nudge"):
        return tuple(a + beta * g for a, g in zip(new, model.nudge(params, u, y)))
    g = readout.nudge(params["readout"], output_features(model, u), y)
    last = new[-1] + beta * g.reshape(new[-1].shape)
    return tuple(new[:-1]) + (last,)


def phi_full(model, net, u, x):
    """Phi with the input drive recomputed: the map whose theta-Jacobian enters Eq. 4/6."""
    return model.phi(net, u, model.drive(net, x))


def per_example_loss(model, params, u, y):
    """(B,) loss at state u: the model's `cost` hook, else the readout cross-entropy."""
    if hasattr(model, "cost"):
        return model.cost(params, u, y)
    return readout.cross_entropy(params["readout"], output_features(model, u), y)


def loss_at(model, params, u, y):
    """Mean loss at state u."""
    return jnp.mean(per_example_loss(model, params, u, y))


def scores(model, params, u):
    """(B, C) class scores: the model's `predict` hook, else the readout logits."""
    if hasattr(model, "predict"):
        return model.predict(params, u)
    return readout.logits(params["readout"], output_features(model, u))


def accuracy(model, params, u, y):
    return jnp.mean(jnp.argmax(jnp.real(scores(model, params, u)), -1) == y)


def activities(model, u):
    return tuple(model.activation(l, v) for l, v in enumerate(u))


def state_norm(u):
    """Per-example Euclidean norm over all layers, shape (B,)."""
    sq = sum(jnp.sum(jnp.abs(v.reshape(v.shape[0], -1)) ** 2, axis=1) for v in u)
    return jnp.sqrt(sq)


def tree_sub(a, b):
    return jax.tree_util.tree_map(lambda p, q: p - q, a, b)


def cast_state(u, dtype):
    return tuple(v.astype(dtype) for v in u)


def check_batch(model, batch):
    """Raise a ValueError naming what is wrong with a batch (shapes are static under jit)."""
    x, y = batch
    if tuple(x.shape[1:]) != tuple(model.input_shape):
        raise ValueError(
            f"input shape mismatch: model {type(model).__name__} expects examples of shape "
            f"{tuple(model.input_shape)}, got a batch of shape {tuple(x.shape)}"
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
    if not jnp.issubdtype(y.dtype, jnp.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")
