"""Dense layered Hopfield network: the DCHN energy (comparative study, Eq. 18) with
dense interactions everywhere, for small tests and MNIST-size runs.

    E(theta, x, s) = 1/2 sum_k ||s_k||^2 - Phi,
    Phi = sum_{k=1}^{L} s_k . (s_{k-1} W_k) + sum_k b_k . s_k,      s_0 = x,

row-vector convention (batch first), W_k of shape (n_{k-1}, n_k). Hidden layers
live in [0, 1] (hard sigmoid), the output layer in R. Weights are initialised with
the 'gain' Kaiming-uniform scheme U(-c, c), c = alpha_k / sqrt(fan_in) (Eq. 102),
biases with the same bound.

Options for the setting of "Agnostic Physics-Driven Deep Learning" (Scellier, Mishra,
Bengio, Ollivier, arXiv:2205.15021, Sec. 5.3 and App. C), defaults unchanged:
  init_scheme="xavier_half"  U(-c, c), c = alpha_k / 2 * sqrt(6 / (fan_in + fan_out)),
                             zero biases (Eq. 113; gains (0.8, 1.2) in its Table 2);
  output_bounds=(lo, hi)     the output layer lives in the box [lo, hi] (that paper uses
                             [-1, 2]); the free output update is then clip(dPhi/do, lo, hi),
                             the exact minimiser over the box. None (default) = unbounded.
                             Under a nudge the box-constrained minimiser is
                             holoeb.estimators.aeqprop_box.output_argmin;
  cost_scale=0.5             C = 1/2 ||o - y||^2 as in that paper (Sec. 5.2);
  dtype="float64"            parameters made by ``init`` in that dtype (float64 ground-truth tests).
Hidden layers always live in [0, 1] (the hard sigmoid of the EnergyModel contract).
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb import energy
from holoeb.energy import check_cost_scale
from holoeb.errors import ConfigError
from holoeb.models.base import EnergyModel
from holoeb.solvers import check_schedule
from holoeb.initializers import gain_uniform
from holoeb.models.layout import DenseLayout


def broadcast_gains(gains, n):
    gains = (float(gains),) * n if isinstance(gains, (int, float)) else tuple(float(g) for g in gains)
    if len(gains) != n or min(gains) <= 0:
        raise ConfigError(f"gains must be one positive number or {n} positive numbers, got {gains}")
    return gains


@dataclasses.dataclass(frozen=True)
class DenseHopfield(DenseLayout, EnergyModel):
    in_features: int = 784
    hidden: tuple = (256,)
    num_classes: int = 10
    gains: tuple = 0.5
    schedule: str = "async"
    cost_scale: float = 1.0  # C = cost_scale ||o - y||^2 (1: Sec. 3 as printed; 1/2: the authors' released code)
    init_scheme: str = "gain_uniform"  # 'gain_uniform' (Eq. 102, with biases) | 'xavier_half' (Aeqprop Eq. 113)
    output_bounds: tuple = None  # box [lo, hi] of the output layer; None = unbounded
    dtype: str = "float32"  # dtype of the parameters made by ``init``

    INIT_SCHEMES = ("gain_uniform", "xavier_half")

    def __post_init__(self):
        self.normalize_hidden()
        object.__setattr__(self, "gains", broadcast_gains(self.gains, len(self.hidden) + 1))
        check_schedule(self.schedule)
        check_cost_scale(self.cost_scale)
        if self.init_scheme not in self.INIT_SCHEMES:
            raise ConfigError(f"unknown init_scheme {self.init_scheme!r}; choose one of {self.INIT_SCHEMES}")
        if self.output_bounds is not None:
            try:
                lo, hi = (float(v) for v in self.output_bounds)
            except (TypeError, ValueError):
                raise ConfigError(f"output_bounds must be None or a pair (lo, hi), got {self.output_bounds!r}") from None
            if not lo < hi:
                raise ConfigError(f"output_bounds must be an interval (lo < hi), got {(lo, hi)}")
            object.__setattr__(self, "output_bounds", (lo, hi))

    def init(self, rng):
        fans = (self.in_features,) + self.sizes[:-1]
        dt = jnp.dtype(self.dtype)
        net = {}
        if self.init_scheme == "xavier_half":
            keys = jax.random.split(rng, self.num_layers)
            for k, (fan, n, g) in enumerate(zip(fans, self.sizes, self.gains), start=1):
                c = g / 2.0 * math.sqrt(6.0 / (fan + n))
                net[f"w{k}"] = jax.random.uniform(keys[k - 1], (fan, n), dt, -c, c)
                net[f"b{k}"] = jnp.zeros((n,), dt)
            return {"net": net, "readout": {}}
        keys = jax.random.split(rng, 2 * self.num_layers)
        for k, (fan, n, g) in enumerate(zip(fans, self.sizes, self.gains), start=1):
            net[f"w{k}"] = gain_uniform(keys[2 * k - 2], (fan, n), fan, g, dt)
            net[f"b{k}"] = gain_uniform(keys[2 * k - 1], (n,), fan, g, dt)
        return {"net": net, "readout": {}}

    def phi_layers(self, net, u, drive, layers):
        """Exact block minimiser of E: hard sigmoid on hidden layers, the output clipped to
        ``output_bounds`` when it is boxed (the minimiser of 1/2 o^2 - a o on [lo, hi])."""
        if self.output_bounds is None:
            return energy.layer_update(self, net, u, drive, layers)
        lo, hi = self.output_bounds
        return energy.layer_update(self, net, u, drive, layers, lambda a, o: jnp.clip(a, lo, hi))

    def init_state(self, x):
        return tuple(jnp.zeros((x.shape[0], n), x.dtype) for n in self.sizes)

    def drive(self, net, x):
        """(x W_1,): the input term of layer 1, constant during a relaxation."""
        return (x @ net["w1"].astype(x.dtype),)

    def primitive(self, net, s, drive):
        """Phi per example (B,)."""
        phi = jnp.sum(s[0] * drive[0], axis=1)
        for k in range(1, self.num_layers + 1):
            sk = s[k - 1]
            phi = phi + sk @ net[f"b{k}"].astype(sk.dtype)
            if k > 1:
                phi = phi + jnp.sum(sk * (s[k - 2] @ net[f"w{k}"].astype(sk.dtype)), axis=1)
        return phi
