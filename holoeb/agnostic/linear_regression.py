"""The linear-regression system of Section 5.2 (Agnostic-EqProp paper, Eqs. 18-19).

Input z in [-1, 1] (x has shape (B, 1)), scalar state s, Fourier features

    phi(z) = (1, sin(pi z), cos(pi z), ..., sin(K pi z), cos(K pi z))      (K = max_freq),
    E(theta, z, s) = 1/2 (s - theta . phi(z))^2 + kappa s^2,     C(s, y) = 1/2 (s - y)^2.

kappa = 0 is Eq. (18); kappa = 1 is the "+ ||s||^2" stabilised energy of Fig. 3 (the free
prediction is then s_0 = theta.phi / (1 + 2 kappa), and that is the model being trained).

Exact block minimisations (used by the "exact" relaxation):
  state:   s = (theta.phi + beta y) / (1 + beta + 2 kappa)        (needs 1 + beta + 2 kappa > 0)
  params:  (diag(1/eps) + Phi^T Phi / B) theta = u / eps + Phi^T s / B
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from holoeb.agnostic.box import box_quadratic_argmin


def fourier_features(z, max_freq):
    """(B,) or (B, 1) inputs -> (B, 2K+1) features [1, sin(i pi z), cos(i pi z)]_{i=1..K}."""
    z = jnp.reshape(z, (-1, 1))
    i = jnp.arange(1, max_freq + 1, dtype=z.dtype)
    ang = jnp.pi * z * i
    feats = jnp.stack([jnp.sin(ang), jnp.cos(ang)], axis=-1).reshape(z.shape[0], 2 * max_freq)
    return jnp.concatenate([jnp.ones_like(z), feats], axis=1)


def random_legendre_target(rng, degree=10):
    """f(z) = sum_{i<=d} w_i L_i(z), w_i ~ N(0, 1)  (Eq. 19). Returns numpy Legendre coefficients."""
    return np.asarray(jax.random.normal(rng, (degree + 1,)), np.float64)


def legendre_eval(coeffs, z):
    """Evaluate sum_i c_i L_i(z) by the three-term recurrence (jit-able)."""
    z = jnp.asarray(z)
    p_prev, p = jnp.ones_like(z), z
    out = coeffs[0] * p_prev + (coeffs[1] * p if len(coeffs) > 1 else 0.0)
    for n in range(1, len(coeffs) - 1):
        p_prev, p = p, ((2 * n + 1) * z * p - n * p_prev) / (n + 1)
        out = out + coeffs[n + 1] * p
    return out


@dataclasses.dataclass(frozen=True)
class FourierRegression:
    max_freq: int = 10
    state_l2: float = 0.0  # kappa
    dtype: str = "float32"

    def __post_init__(self):
        if int(self.max_freq) != self.max_freq or self.max_freq < 0:
            raise ValueError(f"max_freq must be a non-negative integer, got {self.max_freq!r}")
        if not self.state_l2 >= 0:
            raise ValueError(f"state_l2 (kappa) must be >= 0, got {self.state_l2!r}")

    @property
    def num_features(self):
        return 2 * self.max_freq + 1

    @property
    def input_shape(self):
        return (1,)

    def init(self, rng=None):
        return {"w": jnp.zeros((self.num_features,), jnp.dtype(self.dtype))}

    def init_state(self, theta, x):
        return (jnp.zeros((x.shape[0], 1), x.dtype),)

    def bounds(self):
        return ((-jnp.inf, jnp.inf),)

    def check_batch(self, x, y):
        if x.ndim != 2 or x.shape[1] != 1:
            raise ValueError(f"inputs must have shape (B, 1), got {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"targets must have shape ({x.shape[0]},), got {tuple(y.shape)}")

    def check_nudge(self, beta):
        """The state energy is bounded below iff 1 + beta + 2 kappa > 0 (Section 5.2, Fig. 3)."""
        if 1.0 + beta + 2.0 * self.state_l2 <= 0:
            raise ValueError(
                f"nudge beta={beta} makes the energy unbounded below (need 1 + beta + 2*state_l2 > 0, "
                f"state_l2={self.state_l2}); add the ||s||^2 stabiliser (state_l2) or use a smaller beta"
            )

    def mean(self, theta, x):
        return fourier_features(x, self.max_freq).astype(theta["w"].dtype) @ theta["w"]

    def energy(self, theta, x, s):
        (s1,) = s
        s1 = s1[:, 0]
        return 0.5 * (s1 - self.mean(theta, x)) ** 2 + self.state_l2 * s1**2

    def cost(self, s, y):
        return 0.5 * (s[0][:, 0] - y) ** 2

    def target(self, y):
        return y

    def free_prediction(self, theta, x):
        """s_0(theta, x) = theta.phi(x) / (1 + 2 kappa), in closed form."""
        return self.mean(theta, x) / (1.0 + 2.0 * self.state_l2)

    def state_sweep(self, theta, x, y, beta, s, backward=False):
        m = self.mean(theta, x)
        a = 0.5 * (1.0 + beta) + self.state_l2
        b = -(m + beta * y)
        return (box_quadratic_argmin(a, b)[:, None].astype(s[0].dtype),)

    def argmin_params(self, u, eps, x, s):
        phi = fourier_features(x, self.max_freq).astype(u["w"].dtype)
        B = x.shape[0]
        inv_eps = jnp.broadcast_to(1.0 / jnp.asarray(eps["w"], u["w"].dtype), u["w"].shape)
        A = jnp.diag(inv_eps) + phi.T @ phi / B
        rhs = inv_eps * u["w"] + phi.T @ s[0][:, 0] / B
        return {"w": jnp.linalg.solve(A, rhs)}

