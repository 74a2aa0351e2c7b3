"""Softmax pooling (generalized hEP paper, App. D.2, after Stergiou et al. [78]):

    y = sum_{i in R} ( e^{x_i} / sum_{j in R} e^{x_j} ) x_i,

over non-overlapping windows R (2x2, stride 2 in the paper) of an NHWC array,
channel by channel. Built from the holomorphic softmax, so it accepts complex
input and stays holomorphic (complex nudges propagate through it).

Its derivative, used by the tests as an independent ground truth for the
backward convolutional module, is dy/dx_j = p_j (1 + x_j - y) with
p = softmax(x_R).
"""
import jax.numpy as jnp

from holoeb import holomorphic


def _windows(x, window):
    b, h, w, c = x.shape
    if h % window or w % window:
        raise ValueError(f"softmax pooling with window {window} needs spatial sizes divisible by it, got {h}x{w}")
    return x.reshape(b, h // window, window, w // window, window, c)


def softmax_pool(x, window=2, stride=2):
    """Softmax pooling of an NHWC array over non-overlapping window x window regions."""
    if stride != window:
        raise ValueError(f"only non-overlapping softmax pooling (stride == window) is implemented, got window {window}, stride {stride}")
    if x.ndim != 4:
        raise ValueError(f"softmax pooling expects NHWC input, got shape {x.shape}")
    z = _windows(x, window)
    b, hh, _, ww, _, c = z.shape
    z = jnp.transpose(z, (0, 1, 3, 5, 2, 4)).reshape(b, hh, ww, c, window * window)
    p = holomorphic.softmax(z, axis=-1)
    return jnp.sum(p * z, axis=-1)


def softmax_pool_vjp(x, cotangent, window=2):
    """Closed-form transpose of the pooling's derivative: g_j = p_j (1 + x_j - y) c_R.

    Not used by the dynamics (they use jax.vjp); kept as the independent reference."""
    y = softmax_pool(x, window, window)
    z = _windows(x, window)
    m = jnp.max(jnp.real(z), axis=(2, 4), keepdims=True)
    e = jnp.exp(z - m)
    p = e / jnp.sum(e, axis=(2, 4), keepdims=True)
    up = lambda a: a[:, :, None, :, None, :]
    g = p * (1.0 + z - up(y)) * up(cotangent)
    return g.reshape(x.shape)
