"""Parameterized cross-entropy readout (generalized hEP paper, App. D.2; Laborieux et al. 2021).

The loss is L = CE(softmax(w_ro s_L + b_ro), y) on the output activity s_L = sigma(u_L).
Its nudge, added to the output layer's update with weight beta, is

    nudge = -dL/ds_L = w_ro^T (y - softmax(w_ro s_L + b_ro)),

a gradient with respect to the *activity* s_L, not the pre-activation u_L.
(w_ro, b_ro) do not act on the free dynamics (beta = 0); they are trained from
the loss at the free fixed point directly.
"""
import jax
import jax.numpy as jnp

from holoeb import holomorphic
from holoeb.initializers import gain_uniform


def init(rng, n_features, num_classes, dtype=jnp.float32):
    w = gain_uniform(rng, (n_features, num_classes), n_features, 1.0, dtype)
    return {"w": w, "b": jnp.zeros((num_classes,), dtype)}


def logits(ro, s):
    return holomorphic.matmul(s, ro["w"]) + ro["b"]


def one_hot(y, num_classes, dtype):
    return jax.nn.one_hot(y, num_classes, dtype=dtype)


def nudge(ro, s, y):
    """w_ro^T (y - softmax(w_ro s + b_ro)) for integer labels y; holomorphic in s."""
    p = holomorphic.softmax(logits(ro, s))
    t = one_hot(y, p.shape[-1], p.dtype)
    return holomorphic.matmul(t - p, ro["w"].T)


def cross_entropy(ro, s, y):
    """Per-example cross-entropy, shape (B,)."""
    lp = holomorphic.log_softmax(logits(ro, s))
    return -jnp.take_along_axis(lp, y[:, None], axis=-1)[:, 0]
