"""Holomorphic activation functions (they accept complex arguments).

All are entire or meromorphic extensions of their real versions, so the fixed
point u*_beta stays a holomorphic function of a complex nudge beta
(generalized hEP paper, Sec. 3.1 and App. A.1).
"""
import jax
import jax.numpy as jnp


def logistic(z):
    """1 / (1 + exp(-z)), holomorphic, for real or complex z.

    Real z: `lax.logistic`, whose derivative rule sigma (1 - sigma) stays finite where
    exp(-z) overflows (the naive quotient's derivative is inf/inf = NaN there).
    Complex z: `complex_logistic` (real arithmetic, same values and derivative rule)."""
    if jnp.iscomplexobj(z):
        return complex_logistic(z)
    return jax.nn.sigmoid(z)


@jax.custom_jvp
def complex_logistic(z):
    """1 / (1 + exp(-z)) for complex z = a + ib, written in real arithmetic. With
    t = exp(-|a|) <= 1 (no overflow) and d = |1 + t e^{ib}|^2 = (1 + t cos b)^2 + (t sin b)^2:

        sigma(z) = (1 + t cos b + i t sin b) / d      (a >= 0: 1 / (1 + t e^{-ib})),
        sigma(z) = (t cos b + t^2 + i t sin b) / d    (a < 0: v / (1 + v), v = e^{z} = t e^{ib}),

    both without cancellation (relative accuracy also where sigma is tiny). XLA's CPU backend
    evaluates complex exp and division element by element; these real exp / cos / sin /
    divisions vectorise (about 3x faster per complex nudged iteration). The derivative is
    the holomorphic sigma (1 - sigma), as lax.logistic's."""
    a, b = jnp.real(z), jnp.imag(z)
    t = jnp.exp(-jnp.abs(a))
    tc, ts = t * jnp.cos(b), t * jnp.sin(b)
    inv = 1.0 / ((1.0 + tc) ** 2 + ts * ts)
    re = jnp.where(a >= 0, 1.0 + tc, tc + t * t)
    return jax.lax.complex(re * inv, ts * inv)


@complex_logistic.defjvp
def _complex_logistic_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    sz = complex_logistic(z)
    return sz, sz * (1.0 - sz) * dz


def shifted_sigmoid(z):
    """sigma(x) = 1 / (1 + exp(-4x + 2)) (generalized hEP paper, App. D.2, MLPs)."""
    return logistic(4.0 * z - 2.0)


def sigmoid_weighted(z):
    """sigma(x) = (x/2) s(x) + (1 - x/2) s(x - 2), s the logistic
    (generalized hEP paper, App. D.2, convolutional networks)."""
    return 0.5 * z * logistic(z) + (1.0 - 0.5 * z) * logistic(z - 2.0)


def hard_sigmoid(z):
    """clip(z, 0, 1): the state-space projection of Hopfield energies (not holomorphic)."""
    return jnp.clip(z, 0.0, 1.0)


ACTIVATIONS = {
    "shifted_sigmoid": shifted_sigmoid,
    "sigmoid_weighted": sigmoid_weighted,
    "logistic": logistic,
    "hard_sigmoid": hard_sigmoid,
    "identity": lambda z: z,
}


def get_activation(name):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None
