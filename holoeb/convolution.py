"""Stride-1 2-D convolution (cross-correlation) of NHWC arrays with HWIO kernels.

    out[b, i, j, o] = sum_{p, q, c} x_pad[b, i + p, j + q, c] w[p, q, c, o]

Two implementations of the same map:
- "xla": ``lax.conv_general_dilated`` (cuDNN on GPU);
- "im2col": the kh*kw shifted windows of the padded input are concatenated along
  channels and multiplied by the kernel reshaped to (kh*kw*C, O) in one matmul. Its
  transpose (the state gradient of a conv energy term) is one matmul plus the
  transposes of slicing and padding. On XLA's CPU backend this is 4-8x faster than
  the native convolution for the DCHN's shapes (experiments/benchmark_dchn.py), so
  it is the default there.

A complex input with a real kernel is computed as one real convolution of twice
the batch (real and imaginary parts stacked), which keeps the map holomorphic.
"""
import jax
import jax.numpy as jnp

IMPLS = ("auto", "xla", "im2col")
_DN = ("NHWC", "HWIO", "NHWC")


def _pads(padding, kh, kw):
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
        return "im2col" if jax.default_backend() == "cpu" else "xla"
    return impl


def _real_conv(x, w, padding, impl):
    if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
        raise ValueError(f"conv2d needs NHWC input and HWIO kernel with matching channels, got {x.shape} and {w.shape}")
    if _resolve(impl) == "xla":
        return jax.lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)
    return _im2col(x, w, padding)


def conv2d(x, w, padding="SAME", impl="auto"):
    """Stride-1 convolution of NHWC ``x`` with HWIO ``w``; 'SAME' or 'VALID' padding."""
    if jnp.iscomplexobj(x) and not jnp.iscomplexobj(w):
        n = x.shape[0]
        w = w.astype(x.real.dtype)
        out = _real_conv(jnp.concatenate([x.real, x.imag], 0), w, padding, impl)
        return jax.lax.complex(out[:n], out[n:])
    dt = jnp.result_type(x.dtype, w.dtype)
    return _real_conv(x.astype(dt), w.astype(dt), padding, impl)
