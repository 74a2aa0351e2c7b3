"""The linear-regression system of "Agnostic Physics-Driven Deep Learning" (Scellier, Mishra,
Bengio, Ollivier, arXiv:2205.15021), Section 5.2, Eqs. 18-19, as an `EnergyModel`.

Input z in [-1, 1] (x has shape (B, 1)), one scalar unit s, Fourier features

    phi(z) = (1, sin(pi z), cos(pi z), ..., sin(K pi z), cos(K pi z))      (K = max_freq),
    E(theta, z, s) = 1/2 (s - theta . phi(z))^2 + kappa s^2,     C(s, y) = 1/2 (s - y)^2.

kappa = 0 is Eq. (18); kappa = 1 is the "+ ||s||^2" stabilised energy of Fig. 3 (the free
prediction is then s_0 = theta.phi / (1 + 2 kappa), and that is the model being trained).

Contract coordinates. The EnergyModel contract writes E = 1/2 ||u||^2 - Phi(theta, x, u) with
Phi linear in the unit's own value, so that the block update u = dPhi/du is the exact
minimiser. With kappa > 0 the unit's curvature is r^2 = 1 + 2 kappa, so the state is the
rescaled unit u = r s:

    Phi = u (theta.phi) / r - 1/2 (theta.phi)^2,     C = c ||u - r y||^2,  c = 1 / (2 r^2),

which is the same energy and cost (E = 1/2 (s - theta.phi)^2 + kappa s^2, C = 1/2 (s - y)^2).
The theta-only term -1/2 (theta.phi)^2 matters for dE/dtheta: E is quadratic (not linear) in
theta. ``predict`` returns s = u / r; kappa = 0 gives u = s.

The model is a regression model (real targets y of shape (B,), one output unit,
num_classes = 1); it is not in the classifier registry holoeb.models.MODELS.
"""
import dataclasses
import math

import jax.numpy as jnp

from holoeb.errors import ConfigError
from holoeb.models.base import EnergyModel


def fourier_features(z, max_freq):
    """(B,) or (B, 1) inputs -> (B, 2K+1) features [1, sin(i pi z), cos(i pi z)]_{i=1..K}."""
    z = jnp.reshape(z, (-1, 1))
    i = jnp.arange(1, max_freq + 1, dtype=z.dtype)
    ang = jnp.pi * z * i
    feats = jnp.stack([jnp.sin(ang), jnp.cos(ang)], axis=-1).reshape(z.shape[0], 2 * max_freq)
    return jnp.concatenate([jnp.ones_like(z), feats], axis=1)


@dataclasses.dataclass(frozen=True)
class FourierRegression(EnergyModel):
    max_freq: int = 10
    state_l2: float = 0.0  # kappa
    dtype: str = "float32"  # parameter dtype of ``init``
    schedule: str = "sync"  # one layer: both schedules are the same
    cost_scale: float = None  # derived: 1 / (2 (1 + 2 kappa)) (contract coordinates, see the module docstring)

    linear_in_params = False  # E is quadratic in theta: Aeqprop's parameter argmin is a Newton/CG solve

    def __post_init__(self):
        if isinstance(self.max_freq, bool) or int(self.max_freq) != self.max_freq or self.max_freq < 0:
            raise ConfigError(f"max_freq must be a non-negative integer, got {self.max_freq!r}")
        if not self.state_l2 >= 0:
            raise ConfigError(f"state_l2 (kappa) must be >= 0, got {self.state_l2!r}")
        c = 0.5 / (1.0 + 2.0 * self.state_l2)
        if self.cost_scale is not None and not math.isclose(self.cost_scale, c):
            raise ConfigError(f"cost_scale of FourierRegression is derived from state_l2 (= {c}), got {self.cost_scale!r}")
        object.__setattr__(self, "cost_scale", c)

    # ---- shapes ------------------------------------------------------------------
    @property
    def num_features(self):
        return 2 * self.max_freq + 1

    @property
    def input_shape(self):
        return (1,)

    @property
    def num_layers(self):
        return 1

    @property
    def num_classes(self):
        return 1  # one real output unit (regression)

    @property
    def scale(self):
        """r = sqrt(1 + 2 kappa): the state u is r times the paper's unit s."""
        return math.sqrt(1.0 + 2.0 * self.state_l2)

    # ---- parameters, state, energy --------------------------------------------------
    def init(self, rng=None):
        """theta = 0 (the experiments of Sec. 5.2 start there)."""
        return {"net": {"w": jnp.zeros((self.num_features,), jnp.dtype(self.dtype))}, "readout": {}}

    def init_state(self, x):
        return (jnp.zeros((x.shape[0], 1), x.dtype),)

    def mean(self, params, x):
        """theta . phi(x), shape (B,)."""
        w = params["net"]["w"]
        return fourier_features(x, self.max_freq).astype(w.dtype) @ w

    def drive(self, net, x):
        """(theta . phi(x),): constant while the parameters are fixed."""
        w = net["w"]
        return (fourier_features(x, self.max_freq).astype(w.dtype) @ w,)

    def primitive(self, net, s, drive):
        m = drive[0].astype(s[0].dtype)
        return s[0][:, 0] * m / self.scale - 0.5 * m * m

    # ---- regression readout -----------------------------------------------------------
    def target(self, y, dtype):
        """The target of the state u: r y, shape (B, 1)."""
        return (self.scale * y.astype(dtype))[:, None]

    def cost(self, params, u, y):
        """C = 1/2 (s - y)^2 = c (u - r y)^2 per example."""
        o = u[-1]
        return self.cost_scale * jnp.sum((o - self.target(y, o.dtype)) ** 2, axis=1)

    def nudge(self, params, u, y):
        o = u[-1]
        return (-2.0 * self.cost_scale * (o - self.target(y, o.dtype)),)

    def predict(self, params, u):
        """The paper's unit s = u / r, shape (B, 1)."""
        return u[-1] / self.scale

    def free_prediction(self, params, x):
        """s_0(theta, x) = theta.phi(x) / (1 + 2 kappa) in closed form, shape (B,)."""
        return self.mean(params, x) / (1.0 + 2.0 * self.state_l2)

    def check_batch(self, batch):
        x, y = batch
        if x.ndim != 2 or x.shape[1] != 1:
            raise ConfigError(f"inputs must have shape (B, 1), got {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ConfigError(f"targets must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if not jnp.issubdtype(y.dtype, jnp.floating):
            raise ConfigError(f"targets must be real numbers, got dtype {y.dtype}")

