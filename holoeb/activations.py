"""Holomorphic activation functions (they accept complex arguments).

All are entire or meromorphic extensions of their real versions, so the fixed
point u*_beta stays a holomorphic function of a complex nudge beta
(generalized hEP paper, Sec. 3.1 and App. A.1).
"""
import jax
import jax.numpy as jnp


def logistic(z):
    """1 / (1 + exp(-z)), holomorphic, for real or complex z.

    Uses `lax.logistic`, whose derivative rule sigma (1 - sigma) stays finite where
    exp(-z) overflows (the naive quotient's derivative is inf/inf = NaN there)."""
    return jax.nn.sigmoid(z)


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
