"""holoeb.convolution: the im2col convolution is the same linear map as XLA's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb.convolution import conv2d, conv2d_transpose


@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 2), (4, 3), (1, 1)])
def test_im2col_equals_xla_convolution_and_its_transpose(padding, kernel):
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(2, 9, 7, 3)))
        w = jnp.asarray(rng.normal(size=kernel + (3, 5)))
        a = conv2d(x, w, padding, "im2col")
        b = conv2d(x, w, padding, "xla")
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
        ct = jnp.asarray(rng.normal(size=a.shape))
        ga = jax.vjp(lambda x_, w_: conv2d(x_, w_, padding, "im2col"), x, w)[1](ct)
        gb = jax.vjp(lambda x_, w_: conv2d(x_, w_, padding, "xla"), x, w)[1](ct)
        for u, v in zip(ga, gb):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wrt", ["x", "w", "both"])
def test_forward_mode_equals_the_bilinear_tangent(wrt):
    """jvp of the xla convolution (its custom rule skips a tangent that is a symbolic zero) equals the
    bilinear map's tangent conv(dx, w) + conv(x, dw), for a tangent in x only, w only, or both; jitted
    too. The two second-order parts come from the im2col form, so they are checked against it."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        x, dx = (jnp.asarray(rng.normal(size=(2, 8, 6, 3))) for _ in range(2))
        w, dw = (jnp.asarray(rng.normal(size=(3, 3, 3, 4))) for _ in range(2))
        if wrt == "x":
            f, primals, tangents, want = (lambda a: conv2d(a, w, "SAME", "xla")), (x,), (dx,), conv2d(dx, w, "SAME", "im2col")
        elif wrt == "w":
            f, primals, tangents, want = (lambda b: conv2d(x, b, "SAME", "xla")), (w,), (dw,), conv2d(x, dw, "SAME", "im2col")
        else:
            f, primals, tangents = (lambda a, b: conv2d(a, b, "SAME", "xla")), (x, w), (dx, dw)
            want = conv2d(dx, w, "SAME", "im2col") + conv2d(x, dw, "SAME", "im2col")
        for fn in (lambda p, t: jax.jvp(f, p, t), jax.jit(lambda p, t: jax.jvp(f, p, t))):
            out, tan = fn(primals, tangents)
            np.testing.assert_allclose(out, f(*primals), rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(tan, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", ["xla", "im2col"])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 2), (4, 3)])
def test_conv2d_transpose_is_the_adjoint(impl, padding, kernel):
    """<conv2d(x, w), d> = <x, conv2d_transpose(d, w)> for every x and d, i.e. it is autodiff's
    input vjp; complex cotangents with a real kernel transpose part by part."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        x = jnp.asarray(rng.normal(size=(2, 9, 7, 3)))
        w = jnp.asarray(rng.normal(size=kernel + (3, 5)))
        d = jnp.asarray(rng.normal(size=conv2d(x, w, padding, impl).shape))
        t = conv2d_transpose(d, w, padding, impl)
        assert t.shape == x.shape
        np.testing.assert_allclose(t, jax.vjp(lambda x_: conv2d(x_, w, padding, "xla"), x)[1](d)[0], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jnp.vdot(conv2d(x, w, padding, impl), d), jnp.vdot(x, t), rtol=1e-12)
        dc = d + 1j * jnp.asarray(rng.normal(size=d.shape))
        tc = conv2d_transpose(dc, w, padding, impl)
        np.testing.assert_allclose(tc, t + 1j * conv2d_transpose(dc.imag, w, padding, impl), rtol=1e-12, atol=1e-12)


def test_complex_input_is_holomorphic_and_matches_a_direct_sum():
    """A complex input with a real kernel: real and imaginary parts convolve separately,
    and out[i, j] = sum_{p,q,c} x[i+p-1, j+q-1, c] w[p, q, c] checked by explicit loops."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        x = rng.normal(size=(1, 4, 5, 2)) + 1j * rng.normal(size=(1, 4, 5, 2))
        w = rng.normal(size=(3, 3, 2, 3))
        out = np.asarray(conv2d(jnp.asarray(x), jnp.asarray(w), "SAME", "im2col"))
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        ref = np.zeros((1, 4, 5, 3), complex)
        for i in range(4):
            for j in range(5):
                ref[0, i, j] = np.einsum("pqc,pqco->o", xp[0, i : i + 3, j : j + 3], w)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_bad_input_is_named():
    x = jnp.zeros((1, 4, 4, 2))
    with pytest.raises(ValueError, match="unknown convolution impl"):
        conv2d(x, jnp.zeros((3, 3, 2, 1)), "SAME", "fft")
    with pytest.raises(ValueError, match="matching channels"):
        conv2d(x, jnp.zeros((3, 3, 3, 1)), "SAME", "im2col")
    with pytest.raises(ValueError, match="padding"):
        conv2d(x, jnp.zeros((3, 3, 2, 1)), "FULL", "im2col")
    with pytest.raises(ValueError, match="cotangent with 1 channels"):
        conv2d_transpose(x, jnp.zeros((3, 3, 2, 1)), "SAME", "xla")
