"""Holomorphic activations: exact values, complex derivatives (Cauchy-Riemann),
and finite derivatives where exp overflows."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import holomorphic
from holoeb.activations import ACTIVATIONS, shifted_sigmoid, sigmoid_weighted


def test_closed_forms():
    x = np.linspace(-3, 3, 13)
    np.testing.assert_allclose(shifted_sigmoid(x), 1 / (1 + np.exp(-4 * x + 2)), rtol=1e-6)
    s = lambda t: 1 / (1 + np.exp(-t))
    np.testing.assert_allclose(sigmoid_weighted(x), x / 2 * s(x) + (1 - x / 2) * s(x - 2), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["shifted_sigmoid", "sigmoid_weighted", "logistic"])
def test_holomorphic_derivative(x64, name):
    """f(z + h) - f(z) ~ f'(z) h for complex h in every direction (Cauchy-Riemann)."""
    f = ACTIVATIONS[name]
    z = jnp.array([0.3 + 0.4j, -0.7 + 0.2j, 1.1 - 0.5j])
    d = jax.jvp(f, (z,), (jnp.ones_like(z),))[1]
    for h in (1e-6, 1e-6j, (1 + 1j) * 7e-7):
        np.testing.assert_allclose((f(z + h) - f(z)) / h, d, rtol=1e-5)


def test_complex_logistic_in_real_arithmetic_matches_the_quotient(x64):
    """The real-arithmetic complex logistic equals 1/(1+exp(-z)) to float64 rounding, relative
    error included where sigma is tiny (Re z << 0) or near 1 (Re z >> 0), and its
    derivative is the holomorphic sigma (1 - sigma) (finite differences in two directions)."""
    from holoeb.activations import complex_logistic

    rng = np.random.default_rng(0)
    z = rng.normal(size=2000) * 30 + 1j * rng.normal(size=2000) * 5
    ref = 1 / (1 + np.exp(-z))
    got = np.asarray(complex_logistic(jnp.asarray(z)))
    assert np.max(np.abs(got - ref) / np.abs(ref)) < 1e-12
    z0 = jnp.asarray([0.3 + 0.7j, -2.5 - 1.0j, 4.0 + 3.0j])
    d = jax.jvp(complex_logistic, (z0,), (jnp.ones_like(z0),))[1]
    np.testing.assert_allclose(d, complex_logistic(z0) * (1 - complex_logistic(z0)), rtol=1e-14)
    for h in (1e-6, 1e-6j):
        np.testing.assert_allclose((complex_logistic(z0 + h) - complex_logistic(z0 - h)) / (2 * h), d, rtol=1e-8)
    # the real-arithmetic exp behind the holomorphic softmax: values and derivative exp(z)
    w = rng.normal(size=500) * 10 + 1j * rng.normal(size=500) * 5
    np.testing.assert_allclose(holomorphic.exp(jnp.asarray(w)), np.exp(w), rtol=1e-13)
    np.testing.assert_allclose(jax.jvp(holomorphic.exp, (z0,), (jnp.ones_like(z0),))[1], np.exp(np.asarray(z0)), rtol=1e-14)


@pytest.mark.parametrize("z", [-200.0, -40.0, 40.0, 200.0, -200.0 + 1j, 150.0 - 2j])
def test_derivative_finite_when_saturated(z):
    """The naive 1/(1+exp(-z)) has derivative inf/inf = NaN once exp overflows."""
    z = jnp.asarray([z])
    for f in (shifted_sigmoid, sigmoid_weighted):
        assert bool(jnp.all(jnp.isfinite(jax.jvp(f, (z,), (jnp.ones_like(z),))[1])))


def test_softmax_is_shift_invariant_and_holomorphic(x64):
    z = jnp.array([[1.0 + 0.5j, -2.0 + 0.1j, 300.0 - 0.3j]])
    p = holomorphic.softmax(z)
    np.testing.assert_allclose(jnp.sum(p), 1.0, atol=1e-12)
    np.testing.assert_allclose(p, jnp.exp(z - 300) / jnp.sum(jnp.exp(z - 300)), rtol=1e-12)
    v = jnp.array([[0.2, -0.1 + 0.3j, 0.05j]])
    d = jax.jvp(holomorphic.softmax, (z,), (v,))[1]
    np.testing.assert_allclose((holomorphic.softmax(z + 1e-7 * v) - p) / 1e-7, d, rtol=1e-5, atol=1e-8)


def test_complex_matmul_split_equals_complex_product():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 4)) + 1j * rng.normal(size=(5, 4))
    w = rng.normal(size=(4, 3))
    np.testing.assert_allclose(holomorphic.matmul(jnp.asarray(s, jnp.complex64), jnp.asarray(w, jnp.float32)), s @ w, rtol=1e-5)
