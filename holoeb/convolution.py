"""Stride-1 2-D convolution (cross-correlation) of NHWC arrays with HWIO kernels.

    out[b, i, j, o] = sum_{p, q, c} x_pad[b, i + p, j + q, c] w[p, q, c, o]

Two implementations of the same map:
- "xla": ``lax.conv_general_dilated`` for every evaluation; on CPU differentiated through
  the im2col form (see ``_xla_conv``); the default ("auto") on every backend;
- "im2col": the kh*kw shifted windows of the padded input are concatenated along
  channels and multiplied by the kernel reshaped to (kh*kw*C, O) in one matmul. Its
  transpose (the state gradient of a conv energy term) is one matmul plus the
  transposes of slicing and padding.
Measured on the 2-core CPU (narrow DCHN, batch 128, experiments/benchmark_dchn.py), "xla"
is 1.1-1.6x faster than "im2col" for every estimator's step (C-EP, TBP, RBP, true, and the
asymmetric conv net's Cauchy step); before its derivative went through im2col it was 3x
(C-EP) to 10x (TBP) slower (autodiff's transposed convolution, see ``_xla_conv``).

A complex input with a real kernel is computed as one real convolution of twice
the batch (real and imaginary parts stacked), which keeps the map holomorphic.

``conv2d_transpose`` is the transpose of x -> conv2d(x, w) (the input gradient of a
convolution term of an energy), written out rather than left to autodiff: with "xla" it is
a correlation with the spatially flipped kernel, in/out channels physically swapped, and
the complementary padding (kh - 1 - pad). Autodiff's own transpose of an XLA convolution
(a kernel with swapped 'oi' dimension labels) runs ~13x slower than this form inside a
relaxation loop on XLA's CPU backend; with "im2col" it is
autodiff's transpose (one matmul and the transposes of slicing and padding).
"""
import functools

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero

IMPLS = ("auto", "xla", "im2col")
_DN = ("NHWC", "HWIO", "NHWC")


def _pads(padding, kh, kw):
    if isinstance(padding, tuple):  # explicit ((top, bottom), (left, right))
        return padding
    if padding == "SAME":
        return ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)
    if padding == "VALID":
        return (0, 0), (0, 0)
    raise ValueError(f"padding must be 'SAME' or 'VALID', got {padding!r}")


def _im2col(x, w, padding):
    kh, kw, c, o = w.shape
    ph, pw = _pads(padding, kh, kw)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    B, H, W, _ = xp.shape
    h, wd = H - kh + 1, W - kw + 1
    cols = jnp.concatenate([xp[:, p : p + h, q : q + wd, :] for p in range(kh) for q in range(kw)], axis=-1)
    return (cols.reshape(B * h * wd, kh * kw * c) @ w.reshape(kh * kw * c, o)).reshape(B, h, wd, o)


def check_impl(impl):
    """Raise a ValueError naming ``impl`` unless it is one of IMPLS."""
    if impl not in IMPLS:
        raise ValueError(f"unknown convolution impl {impl!r}; choose one of {IMPLS}")


def _resolve(impl):
    check_impl(impl)
    if impl == "auto":
        return "xla"
    return impl


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _xla_conv(x, w, padding):
    """XLA's convolution, differentiated through the im2col form of the same bilinear map:
    autodiff's transpose of an XLA convolution swaps the kernel's in/out labels (HWOI),
    which XLA's CPU backend runs ~13x slower than the HWIO form inside a loop, while the
    transpose of the im2col matmul is fast. The primal (and every forward evaluation) stays XLA's."""
    pads = list(_pads(padding, w.shape[0], w.shape[1]))
    return jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_DN)


def _xla_conv_jvp(padding, primals, tangents):
    """Tangent of the bilinear map: im2col(dx, w) + im2col(x, dw), each term only where its tangent
    is not a symbolic zero (the state-only derivatives of a relaxation, e.g. forward-mode d/dbeta or
    the Hutchinson products of holoeb.homeostasis, have dw = 0: no matmul with a zero kernel)."""
    x, w = primals
    dx, dw = tangents
    out = _xla_conv(x, w, padding)
    terms = []
    if not isinstance(dx, SymbolicZero):
        terms.append(_im2col(dx, w, padding))
    if not isinstance(dw, SymbolicZero):
        terms.append(_im2col(x, dw, padding))
    if not terms:
        return out, jnp.zeros_like(out)
    return out, terms[0] if len(terms) == 1 else terms[0] + terms[1]


_xla_conv.defjvp(_xla_conv_jvp, symbolic_zeros=True)


def _real_conv(x, w, padding, impl):
    if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
        raise ValueError(f"conv2d needs NHWC input and HWIO kernel with matching channels, got {x.shape} and {w.shape}")
    if _resolve(impl) == "xla":
        return _xla_conv_for_backend(x, w, padding)
    return _im2col(x, w, padding)


def _xla_conv_for_backend(x, w, padding):
    """``_xla_conv`` on CPU; elsewhere XLA's convolution with autodiff's own transpose (cuDNN
    runs the transposed convolution well)."""
    if jax.default_backend() == "cpu":
        return _xla_conv(x, w, padding)
    pads = list(_pads(padding, w.shape[0], w.shape[1]))
    return jax.lax.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=_DN)


def conv2d(x, w, padding="SAME", impl="auto"):
    """Stride-1 convolution of NHWC ``x`` with HWIO ``w``; 'SAME' or 'VALID' padding."""
    if jnp.iscomplexobj(x) and not jnp.iscomplexobj(w):
        n = x.shape[0]
        w = w.astype(x.real.dtype)
        out = _real_conv(jnp.concatenate([x.real, x.imag], 0), w, padding, impl)
        return jax.lax.complex(out[:n], out[n:])
    dt = jnp.result_type(x.dtype, w.dtype)
    return _real_conv(x.astype(dt), w.astype(dt), padding, impl)


def _real_conv_transpose(d, w, padding, impl):
    kh, kw, c, o = w.shape
    if d.ndim != 4 or w.ndim != 4 or d.shape[-1] != o:
        raise ValueError(f"conv2d_transpose needs an NHWC cotangent with {o} channels for kernel {w.shape}, got {d.shape}")
    (pt, pb), (pl, pr) = _pads(padding, kh, kw)
    if _resolve(impl) == "xla":
        flipped = jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)  # HWIO of the transposed map: (kh, kw, o, c)
        pads = ((kh - 1 - pt, kh - 1 - pb), (kw - 1 - pl, kw - 1 - pr))
        return _xla_conv_for_backend(d, flipped, pads)
    B, h, wd, _ = d.shape
    x_shape = (B, h + kh - 1 - pt - pb, wd + kw - 1 - pl - pr, c)
    _, vjp = jax.vjp(lambda x: _im2col(x, w, padding), jnp.zeros(x_shape, d.dtype))
    return vjp(d)[0]


def conv2d_transpose(d, w, padding="SAME", impl="auto"):
    """The transpose of x -> conv2d(x, w, padding) applied to an NHWC ``d`` (stride 1): the
    input gradient sum_o d[b, i, j, o] d out[b, i, j, o] / d x (see the module docstring)."""
    if jnp.iscomplexobj(d) and not jnp.iscomplexobj(w):
        n = d.shape[0]
        out = _real_conv_transpose(jnp.concatenate([d.real, d.imag], 0), w.astype(d.real.dtype), padding, impl)
        return jax.lax.complex(out[:n], out[n:])
    dt = jnp.result_type(d.dtype, w.dtype)
    return _real_conv_transpose(d.astype(dt), w.astype(dt), padding, impl)
