"""Deep convolutional Hopfield network (comparative study, Sec. 3, Eqs. 18-19, Table 5).

State s = (s_1, ..., s_5), NHWC, batch first: for a 32 x 32 x n_in input and
channels (128, 256, 512, 512) the layers are 16x16x128, 8x8x256, 4x4x512,
2x2x512 and the n_out output units. The primitive function is (Eq. 97)

    Phi = sum_{k=1}^{4} s_k . P(w_k * s_{k-1}) + s_5 . (flat(s_4) w_5) + sum_k b_k . s_k,

with * a 3x3 convolution (stride 1, padding 1), P a 2x2 max pooling (stride 2) and
. the scalar product; E = 1/2 ||s||^2 - Phi (Eq. 96). Hidden layers are clipped to
[0, 1] by the hard sigmoid, the output is unclipped. The state gradients dPhi/ds_k
(which contain the transposed convolutions through the pooling) come from
autodiff. Initialisation: U(-c, c) with c = alpha_k / sqrt(fan_in), fan_in =
c_in * 3 * 3 for convolutions and size_pre for the dense layer (Eq. 102); biases
use the same bound.
"""
from holoeb.errors import ConfigError
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb.convolution import check_impl, conv2d, conv2d_transpose
from holoeb.energy import check_cost_scale
from holoeb.models.base import EnergyModel
from holoeb.solvers import check_schedule
from holoeb.initializers import gain_uniform
from holoeb.models.hopfield import broadcast_gains


def conv3x3(x, w, impl="auto"):
    """3x3 convolution, stride 1, padding 1 (NHWC input, HWIO kernel, computed in the state's dtype)."""
    return conv2d(x, w.astype(x.dtype), "SAME", impl)


POOL_TIES = ("split", "first")


def max_pool2(x, ties="split"):
    """2x2 max pooling, stride 2 (NHWC). Its value is the window maximum either way; ``ties``
    decides where the derivative of a window with several equal maxima goes (frequent with
    hard-sigmoid states: a window of zeros gives equal pre-activations):

      "split"  shared equally among them (JAX's derivative of max);
      "first"  all to the first one in row-major window order (0,0), (0,1), (1,0), (1,1),
               as PyTorch's max_pool2d (the comparative study's released code). Written as
               sum_j mask_j z_j with a stop-gradient one-hot mask, so it has derivatives of
               every order in both modes."""
    B, H, W, C = x.shape
    z = x.reshape(B, H // 2, 2, W // 2, 2, C)
    if ties == "split":
        return jnp.max(z, axis=(2, 4))
    if ties != "first":
        raise ConfigError(f"unknown pool_ties {ties!r}; choose one of {POOL_TIES}")
    parts = [z[:, :, i, :, j] for i in (0, 1) for j in (0, 1)]
    m = jax.lax.stop_gradient(jnp.max(z, axis=(2, 4)))
    out, taken = 0.0, jnp.zeros(m.shape, bool)
    for p in parts:
        hit = (jax.lax.stop_gradient(p) == m) & ~taken
        out = out + jnp.where(hit, p, 0.0)
        taken = taken | hit
    return out


def max_pool2_transpose(z, g, ties="split"):
    """The derivative of ``max_pool2`` at z applied to g: sum_ij g_ij d max_pool2(z)_ij / dz,
    i.e. each window's g sent to its maximum ("split": shared equally among tied maxima;
    "first": all to the first one in row-major window order), as autodiff of max_pool2 gives.
    The window masks are piecewise constant in z, so derivatives of this map treat them as
    constants, as autodiff's do."""
    B, H, W, C = z.shape
    zz = jax.lax.stop_gradient(z).reshape(B, H // 2, 2, W // 2, 2, C)
    m = jnp.max(zz, axis=(2, 4), keepdims=True)
    hit = zz == m
    if ties == "split":
        mask = hit.astype(g.dtype) / jnp.sum(hit, axis=(2, 4), keepdims=True).astype(g.dtype)
    elif ties == "first":
        first = jnp.zeros_like(hit)
        taken = jnp.zeros(m.shape, bool)
        for i in (0, 1):
            for j in (0, 1):
                h = hit[:, :, i:i + 1, :, j:j + 1] & ~taken
                first = first.at[:, :, i:i + 1, :, j:j + 1].set(h)
                taken = taken | h
        mask = first.astype(g.dtype)
    else:
        raise ConfigError(f"unknown pool_ties {ties!r}; choose one of {POOL_TIES}")
    return (mask * g[:, :, None, :, None, :]).reshape(z.shape)


def _dot(a, b):
    return jnp.sum((a * b).reshape(a.shape[0], -1), axis=1)


@dataclasses.dataclass(frozen=True)
class DCHN(EnergyModel):
    in_channels: int = 3
    image_size: int = 32
    channels: tuple = (128, 256, 512, 512)
    num_classes: int = 10
    gains: tuple = 0.5  # Table 5, comparative study
    schedule: str = "async"
    cost_scale: float = 1.0  # C = cost_scale ||o - y||^2 (1: Sec. 3 as printed; 1/2: the authors' released code)
    # bias init bound bias_gain / sqrt(fan_in); None: the layer's weight gain (the study's
    # released code uses 0.5 at every gain)
    bias_gain: float = None
    conv_impl: str = "auto"  # holoeb.convolution: "auto" (= "xla"), "xla", "im2col"
    # derivative of a pooling window's tied maxima: "split" equally (JAX), "first" to the first (PyTorch)
    pool_ties: str = "split"

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        if self.image_size % (2 ** len(self.channels)) != 0:
            raise ConfigError(
                f"image_size {self.image_size} must be divisible by 2^{len(self.channels)} (one pooling per conv layer)"
            )
        object.__setattr__(self, "gains", broadcast_gains(self.gains, len(self.channels) + 1))
        check_schedule(self.schedule)
        check_cost_scale(self.cost_scale)
        check_impl(self.conv_impl)
        if self.pool_ties not in POOL_TIES:
            raise ConfigError(f"unknown pool_ties {self.pool_ties!r}; choose one of {POOL_TIES}")
        b = self.bias_gain
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b) or b < 0):
            raise ConfigError(f"bias_gain must be a finite number >= 0 or None (the layer gains), got {b!r}")

    @property
    def input_shape(self):
        return (self.image_size, self.image_size, self.in_channels)

    @property
    def num_layers(self):
        return len(self.channels) + 1

    @property
    def layer_shapes(self):
        shapes, size = [], self.image_size
        for c in self.channels:
            size //= 2
            shapes.append((size, size, c))
        return tuple(shapes) + ((self.num_classes,),)

    def init(self, rng):
        keys = jax.random.split(rng, 2 * self.num_layers)
        net, c_in = {}, self.in_channels
        for k, (c, g) in enumerate(zip(self.channels, self.gains), start=1):
            fan = c_in * 9
            net[f"w{k}"] = gain_uniform(keys[2 * k - 2], (3, 3, c_in, c), fan, g, jnp.float32)
            net[f"b{k}"] = gain_uniform(keys[2 * k - 1], (c,), fan, g if self.bias_gain is None else self.bias_gain,
                                        jnp.float32)
            c_in = c
        L = self.num_layers
        fan = math.prod(self.layer_shapes[-2])
        net[f"w{L}"] = gain_uniform(keys[-2], (fan, self.num_classes), fan, self.gains[-1], jnp.float32)
        net[f"b{L}"] = gain_uniform(keys[-1], (self.num_classes,), fan,
                                    self.gains[-1] if self.bias_gain is None else self.bias_gain, jnp.float32)
        return {"net": net, "readout": {}}

    def init_state(self, x):
        return tuple(jnp.zeros((x.shape[0],) + s, x.dtype) for s in self.layer_shapes)

    def drive(self, net, x):
        """(P(w_1 * x),): the input term of layer 1, constant during a relaxation."""
        return (max_pool2(conv3x3(x, net["w1"], self.conv_impl), self.pool_ties),)

    def state_gradient(self, net, s, drive, layers):
        """dPhi/ds_k in closed form (Eq. 97): for a convolutional layer k,

            P(w_k * s_{k-1}) + w_{k+1}^T *' P'(w_{k+1} * s_k)^T s_{k+1} + b_k

        (*' the transposed convolution, P' the pooling derivative at w_{k+1} * s_k; the last
        hidden layer's second term is (w_5 s_5) reshaped), and flat(s_4) w_5 + b_5 for the
        output. Equal to autodiff of the primitive (tested, ties included), computed with the
        transposed convolution of holoeb.convolution.conv2d_transpose: 1.7x faster relaxations
        on CPU than autodiff's transpose (experiments/benchmark_dchn.py)."""
        L = self.num_layers
        out = []
        for l in layers:
            b = net[f"b{l + 1}"].astype(s[l].dtype)
            if l == L - 1:
                flat = s[L - 2].reshape(s[L - 2].shape[0], -1)
                out.append(flat @ net[f"w{L}"].astype(flat.dtype) + b)
                continue
            g = drive[0] if l == 0 else max_pool2(conv3x3(s[l - 1], net[f"w{l + 1}"], self.conv_impl), self.pool_ties)
            if l + 1 < L - 1:  # the conv layer above: w_{l+2} * s_l, pooled, meets s_{l+1}
                w = net[f"w{l + 2}"].astype(s[l].dtype)
                z = conv3x3(s[l], w, self.conv_impl)
                up = conv2d_transpose(max_pool2_transpose(z, s[l + 1], self.pool_ties), w, "SAME", self.conv_impl)
            else:  # the dense output layer above
                up = (s[L - 1] @ net[f"w{L}"].astype(s[L - 1].dtype).T).reshape(s[l].shape)
            out.append(g + up + b)
        return tuple(out)

    def primitive(self, net, s, drive):
        """Phi per example (B,) (Eq. 97)."""
        L = self.num_layers
        phi = _dot(s[0], drive[0])
        for k in range(2, L):
            phi = phi + _dot(s[k - 1], max_pool2(conv3x3(s[k - 2], net[f"w{k}"], self.conv_impl), self.pool_ties))
        flat = s[L - 2].reshape(s[L - 2].shape[0], -1)
        phi = phi + _dot(s[L - 1], flat @ net[f"w{L}"].astype(flat.dtype))
        for k in range(1, L + 1):
            phi = phi + _dot(s[k - 1], net[f"b{k}"].astype(s[k - 1].dtype))
        return phi
