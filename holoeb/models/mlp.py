"""Layered networks with reciprocal, independent forward and backward weights
(generalized hEP paper, App. D.2 and Fig. 1b):

    u_1 <- x W_in + sigma(u_2) W^b_2 + b_1
    u_l <- sigma(u_{l-1}) W^f_l + sigma(u_{l+1}) W^b_{l+1} + b_l
    u_L <- sigma(u_{L-1}) W^f_L + b_L  (+ beta * readout nudge, see holoeb.dynamics)

Row-vector convention (batch first): W^f_l has shape (n_{l-1}, n_l) and W^b_l
has shape (n_l, n_{l-1}); weight symmetry means W^b_l = (W^f_l)^T. The initial
asymmetry control of Sec. 4 sets W^b <- sin(a) W^b + cos(a) W^f^T (a = 0: exact
symmetry).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb import holomorphic, readout
from holoeb.activations import get_activation
from holoeb.initializers import gain_uniform
from holoeb.models.base import FixedPointModel
from holoeb.models.layout import DenseLayout


@dataclasses.dataclass(frozen=True)
class ReciprocalMLP(DenseLayout, FixedPointModel):
    """Reciprocal MLP of App. D.2 (2 hidden layers of 256 by default)."""

    in_features: int = 784
    hidden: tuple = (256, 256)
    num_classes: int = 10
    asymmetry: float = 0.0  # initial angle a in radians between W^b and W^f^T
    activation_name: str = "shifted_sigmoid"
    dtype: str = "float32"

    def __post_init__(self):
        self.normalize_hidden()
        get_activation(self.activation_name)

    def activation(self, layer, u):
        return get_activation(self.activation_name)(u)

    def init(self, rng):
        dt = jnp.dtype(self.dtype)
        sizes = self.sizes
        keys = jax.random.split(rng, 2 * len(sizes) + 1)
        net = {"w_in": gain_uniform(keys[0], (self.in_features, sizes[0]), self.in_features, 1.0, dt)}
        for l in range(len(sizes)):
            net[f"b{l + 1}"] = jnp.zeros((sizes[l],), dt)
        for l in range(1, len(sizes)):
            wf = gain_uniform(keys[2 * l], (sizes[l - 1], sizes[l]), sizes[l - 1], 1.0, dt)
            wb = gain_uniform(keys[2 * l + 1], (sizes[l], sizes[l - 1]), sizes[l], 1.0, dt)
            net[f"wf{l + 1}"] = wf
            net[f"wb{l + 1}"] = math.sin(self.asymmetry) * wb + math.cos(self.asymmetry) * wf.T
        return {"net": net, "readout": readout.init(keys[-1], sizes[-1], self.num_classes, dt)}

    def init_state(self, x):
        return tuple(jnp.zeros((x.shape[0], n), x.dtype) for n in self.sizes)

    def drive(self, net, x):
        """Input-dependent constants: x W_in + b_1 for layer 1, b_l elsewhere."""
        first = holomorphic.matmul(x, net["w_in"]) + net["b1"]
        return (first,) + tuple(net[f"b{l + 1}"] for l in range(1, self.num_layers))

    def phi_layers(self, net, u, drive, layers):
        return self.activity_map(net, self.activities(u), drive, layers)

    has_activity_coordinates = True

    def phi_activity(self, net, s, drive):
        """The free map as a function of the activities s = sigma(u) (affine in s)."""
        return self.activity_map(net, s, drive, tuple(range(self.num_layers)))

    def activity_map(self, net, s, drive, layers):
        """New pre-activations of ``layers`` from the activities s."""
        out = []
        for l in layers:
            v = drive[l]
            if l > 0:
                v = v + holomorphic.matmul(s[l - 1], net[f"wf{l + 1}"])
            if l < self.num_layers - 1:
                v = v + holomorphic.matmul(s[l + 1], net[f"wb{l + 2}"])
            out.append(v)
        return tuple(out)

    def weight_pairs(self, net):
        """(name, W^f, (W^b)^T) pairs for the forward/backward weight angle."""
        return [(f"w{l + 1}", net[f"wf{l + 1}"], net[f"wb{l + 1}"].T) for l in range(1, self.num_layers)]


@dataclasses.dataclass(frozen=True)
class LoopMLP(DenseLayout, FixedPointModel):
    """'Loop' MLP (generalized hEP paper, Fig. 4e): a feed-forward chain whose output
    layer feeds back directly to the first hidden layer; no backward connections
    between adjacent layers.

        u_1 <- x W_in + sigma(u_L) W^loop + b_1,   u_l <- sigma(u_{l-1}) W^f_l + b_l.
    """

    in_features: int = 784
    hidden: tuple = (256, 256)
    num_classes: int = 10
    activation_name: str = "shifted_sigmoid"
    dtype: str = "float32"

    def __post_init__(self):
        self.normalize_hidden()
        get_activation(self.activation_name)

    activation = ReciprocalMLP.activation

    def init(self, rng):
        dt = jnp.dtype(self.dtype)
        sizes = self.sizes
        keys = jax.random.split(rng, len(sizes) + 2)
        net = {"w_in": gain_uniform(keys[0], (self.in_features, sizes[0]), self.in_features, 1.0, dt)}
        for l in range(len(sizes)):
            net[f"b{l + 1}"] = jnp.zeros((sizes[l],), dt)
        for l in range(1, len(sizes)):
            net[f"wf{l + 1}"] = gain_uniform(keys[l], (sizes[l - 1], sizes[l]), sizes[l - 1], 1.0, dt)
        net["w_loop"] = gain_uniform(keys[-2], (sizes[-1], sizes[0]), sizes[-1], 1.0, dt)
        return {"net": net, "readout": readout.init(keys[-1], sizes[-1], self.num_classes, dt)}

    init_state = ReciprocalMLP.init_state
    drive = ReciprocalMLP.drive

    phi_layers = ReciprocalMLP.phi_layers
    has_activity_coordinates = True
    phi_activity = ReciprocalMLP.phi_activity

    def activity_map(self, net, s, drive, layers):
        """New pre-activations of ``layers`` from the activities s."""
        out = []
        for l in layers:
            w, src = (net["w_loop"], s[-1]) if l == 0 else (net[f"wf{l + 1}"], s[l - 1])
            out.append(drive[l] + holomorphic.matmul(src, w))
        return tuple(out)

    def weight_pairs(self, net):
        """No reciprocal pairs: the loop network has no backward weights."""
        return []
