"""Dense layered Hopfield network: the DCHN energy (comparative study, Eq. 18) with
dense interactions everywhere, for small tests and MNIST-size runs.

    E(theta, x, s) = 1/2 sum_k ||s_k||^2 - Phi,
    Phi = sum_{k=1}^{L} s_k . (s_{k-1} W_k) + sum_k b_k . s_k,      s_0 = x,

row-vector convention (batch first), W_k of shape (n_{k-1}, n_k). Hidden layers
live in [0, 1] (hard sigmoid), the output layer in R. Weights are initialised with
the 'gain' Kaiming-uniform scheme U(-c, c), c = alpha_k / sqrt(fan_in) (Eq. 102),
biases with the same bound.
"""
import dataclasses

import jax
import jax.numpy as jnp

from holoeb.energy import EnergyModel, check_cost_scale, check_schedule
from holoeb.initializers import gain_uniform
from holoeb.models.layout import DenseLayout


def broadcast_gains(gains, n):
    gains = (float(gains),) * n if isinstance(gains, (int, float)) else tuple(float(g) for g in gains)
    if len(gains) != n or min(gains) <= 0:
        raise ValueError(f"gains must be one positive number or {n} positive numbers, got {gains}")
    return gains


@dataclasses.dataclass(frozen=True)
class DenseHopfield(DenseLayout, EnergyModel):
    in_features: int = 784
    hidden: tuple = (256,)
    num_classes: int = 10
    gains: tuple = 0.5
    schedule: str = "async"
    cost_scale: float = 1.0  # C = cost_scale ||o - y||^2 (1: Sec. 3 as printed; 1/2: the authors' released code)

    def __post_init__(self):
        self.normalize_hidden()
        object.__setattr__(self, "gains", broadcast_gains(self.gains, len(self.hidden) + 1))
        check_schedule(self.schedule)
        check_cost_scale(self.cost_scale)

    def init(self, rng):
        fans = (self.in_features,) + self.sizes[:-1]
        keys = jax.random.split(rng, 2 * self.num_layers)
        net = {}
        for k, (fan, n, g) in enumerate(zip(fans, self.sizes, self.gains), start=1):
            net[f"w{k}"] = gain_uniform(keys[2 * k - 2], (fan, n), fan, g, jnp.float32)
            net[f"b{k}"] = gain_uniform(keys[2 * k - 1], (n,), fan, g, jnp.float32)
        return {"net": net, "readout": {}}

    def init_state(self, x):
        return tuple(jnp.zeros((x.shape[0], n), x.dtype) for n in self.sizes)

    def drive(self, net, x):
        """x W_1: the input term of layer 1, constant during a relaxation."""
        return x @ net["w1"].astype(x.dtype)

    def primitive(self, net, s, drive):
        """Phi per example (B,)."""
        phi = jnp.sum(s[0] * drive, axis=1)
        for k in range(1, self.num_layers + 1):
            sk = s[k - 1]
            phi = phi + sk @ net[f"b{k}"].astype(sk.dtype)
            if k > 1:
                phi = phi + jnp.sum(sk * (s[k - 2] @ net[f"w{k}"].astype(sk.dtype)), axis=1)
        return phi
