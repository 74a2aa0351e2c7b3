"""Asymmetric recurrent convolutional network (generalized hEP paper, App. D.2, Fig. 4i):

    u_1 <- P(w^f_1 * x)        + Pt(u_1, w^b_2, u_2) + b_1
    u_l <- P(w^f_l * s_{l-1})  + Pt(u_l, w^b_{l+1}, u_{l+1}) + b_l
    u_L <- P(w^f_L * s_{L-1})  + b_L  (+ beta * readout nudge, see holoeb.dynamics)

with s = sigma(u) (the sigmoid-weighted unit of D.2), P the softmax pooling
(holoeb.pooling; window 2x2, stride 2), 3x3 kernels with 'same' padding except
the last layer ('valid'), and the backward module

    Pt(u_l, w^b, u_{l+1}) := d/d s_l [ top_{l+1} . P(w^b * s_l) ],

evaluated with a vjp of the forward module s_l -> P(w^b * s_l) (a transposed
convolution through the pooling's derivative). With tied kernels (w^b = w^f) the
backward module is exactly the transpose of the forward path.

``feedback`` selects ``top_{l+1}``:
- "activity" (default): top = s_{l+1} = sigma(u_{l+1}), as in the authors'
  released implementation. Then the free map is a function of the activities
  alone, Phi(s) = dE/ds with E = sum_l s_{l+1} . P(w_{l+1} * s_l) + ... for tied
  kernels, so in activity coordinates J = dPhi/ds - I is a (state-dependent,
  through the pooling) Hessian: symmetric exactly when w^b = w^f. The model
  exposes ``phi_activity`` for homeostasis in those coordinates.
- "pre_activation": top = u_{l+1}, the formula as printed in App. D.2. No
  coordinates make the Jacobian symmetric for tied weights; homeostasis then
  uses pre-activation coordinates (``phi_activity`` is absent).

Biases are added after pooling; softmax pooling commutes with a per-channel
constant, P(z + b) = P(z) + b, so this equals a bias inside the convolution.
Every operation is holomorphic in the state (real weights x complex activity are
computed as two real convolutions), so complex nudges work.

Shapes: input (H, W, C); layer l < L has spatial size H / 2^l, the last layer
(h_{L-1} - k + 1) / 2 (32x32 input, channels (128, 256, 512, 512): (16,16,128),
(8,8,256), (4,4,512), (1,1,512) as in the paper).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb import readout
from holoeb.activations import get_activation
from holoeb.convolution import check_impl, conv2d, conv2d_transpose
from holoeb.errors import ConfigError
from holoeb.models.base import FixedPointModel
from holoeb.pooling import softmax_pool

@dataclasses.dataclass(frozen=True)
class AsymConvNet(FixedPointModel):
    """Recurrent conv net with independent forward/backward kernels (App. D.2)."""

    in_shape: tuple = (32, 32, 3)
    channels: tuple = (128, 256, 512, 512)
    num_classes: int = 10
    kernel_size: int = 3
    pool_window: int = 2
    asymmetry: float = math.pi / 2  # initial angle between w^b and w^f; pi/2: independent kernels
    feedback: str = "activity"  # "activity" (sigma(u_{l+1})) or "pre_activation" (u_{l+1}, literal D.2)
    activation_name: str = "sigmoid_weighted"
    dtype: str = "float32"
    conv_impl: str = "auto"  # holoeb.convolution: "auto" (= "xla"), "xla", "im2col"

    def __post_init__(self):
        object.__setattr__(self, "in_shape", tuple(int(v) for v in self.in_shape))
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if len(self.in_shape) != 3:
            raise ConfigError(f"in_shape must be (H, W, C), got {self.in_shape}")
        if not self.channels or min(self.channels) < 1:
            raise ConfigError(f"channels must be a non-empty tuple of positive ints, got {self.channels}")
        if self.feedback not in ("activity", "pre_activation"):
            raise ConfigError(f"feedback must be 'activity' or 'pre_activation', got {self.feedback!r}")
        get_activation(self.activation_name)
        check_impl(self.conv_impl)
        self.state_shapes  # validates the spatial sizes

    # ---- shapes ---------------------------------------------------------------
    @property
    def input_shape(self):
        return self.in_shape

    @property
    def num_layers(self):
        return len(self.channels)

    def padding(self, l):
        """Padding of the convolution into layer l (0-based): 'SAME' except the last."""
        return "SAME" if l < self.num_layers - 1 else "VALID"

    @property
    def state_shapes(self):
        h, w = self.in_shape[:2]
        shapes = []
        for l, c in enumerate(self.channels):
            if self.padding(l) == "VALID":
                h, w = h - self.kernel_size + 1, w - self.kernel_size + 1
            if h < 1 or w < 1 or h % self.pool_window or w % self.pool_window:
                raise ConfigError(
                    f"input {self.in_shape} with channels {self.channels}: layer {l + 1} has spatial size {h}x{w} before "
                    f"pooling, which must be positive and divisible by the pool window {self.pool_window}"
                )
            h, w = h // self.pool_window, w // self.pool_window
            shapes.append((h, w, c))
        return tuple(shapes)

    @property
    def sizes(self):
        return tuple(int(math.prod(s)) for s in self.state_shapes)

    def activation(self, layer, u):
        return get_activation(self.activation_name)(u)

    # ---- parameters -------------------------------------------------------------
    def init(self, rng):
        """Kernels ~ U(+-sqrt(3 / fan_in)) (variance 1/fan_in), zero biases;
        w^b = sin(a) w_rand + cos(a) w^f (a = asymmetry)."""
        dt = jnp.dtype(self.dtype)
        k = self.kernel_size
        cin = (self.in_shape[2],) + self.channels[:-1]
        keys = jax.random.split(rng, 2 * self.num_layers + 1)
        net = {}
        for l, c in enumerate(self.channels):
            shape = (k, k, cin[l], c)
            bound = math.sqrt(3.0 / (k * k * cin[l]))
            layer = {"wf": jax.random.uniform(keys[2 * l], shape, dt, -bound, bound), "b": jnp.zeros((c,), dt)}
            if l > 0:
                wb = jax.random.uniform(keys[2 * l + 1], shape, dt, -bound, bound)
                layer["wb"] = math.sin(self.asymmetry) * wb + math.cos(self.asymmetry) * layer["wf"]
            net[f"layer{l + 1}"] = layer
        return {"net": net, "readout": readout.init(keys[-1], self.sizes[-1], self.num_classes, dt)}

    def init_state(self, x):
        return tuple(jnp.zeros((x.shape[0],) + s, x.dtype) for s in self.state_shapes)

    # ---- dynamics ----------------------------------------------------------------
    def forward_module(self, w, s, l):
        """P(w * s): the forward path into layer l (0-based)."""
        return softmax_pool(conv2d(s, w, self.padding(l), self.conv_impl), self.pool_window, self.pool_window)

    def backward_module(self, w, s, top, l):
        """Pt = d/ds [top . P(w * s)] = (dP(w * s)/ds)^T top: feedback from layer l into l-1, as
        w^T *' (dP/dz)^T top at z = w * s (the pooling's vjp, then the transposed convolution
        holoeb.convolution.conv2d_transpose, much faster than autodiff's on CPU)."""
        z = conv2d(s, w, self.padding(l), self.conv_impl)
        _, pull = jax.vjp(lambda v: softmax_pool(v, self.pool_window, self.pool_window), z)
        g = pull(top.astype(z.dtype))[0]
        return conv2d_transpose(g, w, self.padding(l), self.conv_impl)

    def drive(self, net, x):
        first = self.forward_module(net["layer1"]["wf"], x, 0) + net["layer1"]["b"]
        return (first,) + tuple(net[f"layer{l + 1}"]["b"] for l in range(1, self.num_layers))

    def _phi(self, net, s, top, drive, layers):
        out = []
        for l in layers:
            v = drive[l]
            if l > 0:
                v = v + self.forward_module(net[f"layer{l + 1}"]["wf"], s[l - 1], l)
            if l < self.num_layers - 1:
                v = v + self.backward_module(net[f"layer{l + 2}"]["wb"], s[l], top[l + 1], l + 1)
            out.append(jnp.broadcast_to(v, v.shape if v.ndim == 4 else (s[l].shape[0],) + self.state_shapes[l]))
        return tuple(out)

    def phi_layers(self, net, u, drive, layers):
        s = self.activities(u)
        return self._phi(net, s, s if self.feedback == "activity" else u, drive, layers)

    @property
    def has_activity_coordinates(self):
        """Activity coordinates exist only for feedback='activity'."""
        return self.feedback == "activity"

    def phi_activity(self, net, s, drive):
        """The free map as a function of the activities s (only when feedback == 'activity')."""
        if self.feedback != "activity":
            raise ConfigError(
                "AsymConvNet with feedback='pre_activation' has no activity coordinates: use coordinates='pre_activation'"
            )
        return self._phi(net, s, s, drive, tuple(range(self.num_layers)))

    def weight_pairs(self, net):
        """(name, w^f, w^b) pairs: kernels have the same HWIO shape, tied means equal."""
        return [(f"layer{l + 1}", net[f"layer{l + 1}"]["wf"], net[f"layer{l + 1}"]["wb"]) for l in range(1, self.num_layers)]
