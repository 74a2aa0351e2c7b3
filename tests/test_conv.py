"""Asymmetric conv net and softmax pooling (generalized hEP paper, App. D.2) against
independent references: a numpy loop for the pooling, an explicit transposed
convolution for the backward module, a dense linear solve for the true d_beta u*."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from holoeb import dynamics
from holoeb.estimators import make_estimator
from holoeb.models import make_model
from holoeb.convolution import conv2d as conv
from holoeb.models.conv import AsymConvNet
from holoeb.pooling import softmax_pool, softmax_pool_vjp


def _numpy_pool(x):
    b, h, w, c = x.shape
    out = np.zeros((b, h // 2, w // 2, c), dtype=x.dtype)
    for n in range(b):
        for i in range(h // 2):
            for j in range(w // 2):
                for k in range(c):
                    r = x[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2, k].ravel()
                    p = np.exp(r) / np.sum(np.exp(r))
                    out[n, i, j, k] = np.sum(p * r)
    return out


def test_softmax_pool_matches_loop_real_and_complex():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(2, 4, 6, 3)) * 3
        np.testing.assert_allclose(softmax_pool(jnp.asarray(x)), _numpy_pool(x), rtol=1e-12)
        xc = x + 1j * rng.normal(size=x.shape) * 0.3
        np.testing.assert_allclose(softmax_pool(jnp.asarray(xc)), _numpy_pool(xc), rtol=1e-12)
        with pytest.raises(ValueError, match="divisible"):
            softmax_pool(jnp.zeros((1, 3, 4, 1)))
        with pytest.raises(ValueError, match="non-overlapping"):
            softmax_pool(jnp.zeros((1, 4, 4, 1)), window=3, stride=2)


def test_softmax_pool_derivative_closed_form():
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3), jnp.float64) * 2
        ct = jax.random.normal(jax.random.PRNGKey(1), (2, 2, 2, 3), jnp.float64)
        _, pull = jax.vjp(softmax_pool, x)
        np.testing.assert_allclose(pull(ct)[0], softmax_pool_vjp(x, ct), rtol=1e-10, atol=1e-12)


def test_paper_shapes_and_bad_shapes():
    m = AsymConvNet()
    assert m.state_shapes == ((16, 16, 128), (8, 8, 256), (4, 4, 512), (1, 1, 512))
    with pytest.raises(ValueError, match="spatial size"):
        AsymConvNet(in_shape=(28, 28, 1))
    with pytest.raises(ValueError, match="feedback"):
        AsymConvNet(feedback="both")
    m = make_model("asym_conv", in_shape=(8, 8, 1), channels=(4, 6), num_classes=3)
    with pytest.raises(ValueError, match="input shape"):
        m.check_batch(dynamics.Batch(jnp.zeros((2, 32, 32, 1)), jnp.zeros((2,), jnp.int32)))


def _transposed_conv_path(w, s, top, padding):
    """Pt = conv^T( (dP/dz)^T top ) written with an explicit transposed convolution."""
    z = conv(s, w, padding)
    g = softmax_pool_vjp(z, top)
    return jax.lax.conv_transpose(g, w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True)


@pytest.mark.parametrize("layer", [1, 2])  # layer 2 is the last ('valid') layer
def test_backward_module_is_transposed_convolution(layer):
    with jax.enable_x64(True):
        m = make_model("asym_conv", in_shape=(16, 16, 2), channels=(3, 4, 5), asymmetry=1.0, dtype="float64")
        p = m.init(jax.random.PRNGKey(0))["net"]
        sh = m.state_shapes
        k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
        s = jax.random.normal(k1, (2,) + sh[layer - 1], jnp.float64)
        top = jax.random.normal(k2, (2,) + sh[layer], jnp.float64)
        wb = p[f"layer{layer + 1}"]["wb"]
        ref = _transposed_conv_path(wb, s, top, m.padding(layer))
        np.testing.assert_allclose(m.backward_module(wb, s, top, layer), ref, rtol=1e-10, atol=1e-12)
        # complex activity and top-down signal: the same holomorphic expression
        sc = s + 0.3j * jax.random.normal(k3, s.shape, jnp.float64)
        tc = top - 0.2j * top[::-1]
        zc = conv(sc, wb.astype(jnp.complex128), m.padding(layer))
        refc = jax.lax.conv_transpose(softmax_pool_vjp(zc, tc), wb.astype(jnp.complex128), (1, 1), m.padding(layer),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True)
        np.testing.assert_allclose(m.backward_module(wb, sc, tc, layer), refc, rtol=1e-10, atol=1e-12)


def test_tied_kernels_backward_is_vjp_of_forward_module():
    """With w^b = w^f (asymmetry 0) the feedback into layer l is the transpose (vjp) of layer l+1's forward path."""
    with jax.enable_x64(True):
        m = make_model("asym_conv", in_shape=(16, 16, 2), channels=(3, 4, 5), asymmetry=0.0, dtype="float64")
        net = m.init(jax.random.PRNGKey(0))["net"]
        x = jax.random.normal(jax.random.PRNGKey(2), (2, 16, 16, 2), jnp.float64)
        u = tuple(jax.random.normal(jax.random.PRNGKey(3 + l), (2,) + s, jnp.float64) for l, s in enumerate(m.state_shapes))
        s = m.activities(u)
        drive = m.drive(net, x)
        new = m.phi(net, u, drive)
        for l in range(m.num_layers - 1):
            fwd = m.forward_module(net[f"layer{l + 1}"]["wf"], s[l - 1], l) if l > 0 else 0.0
            feedback = new[l] - drive[l] - fwd
            _, pull = jax.vjp(lambda z: m.forward_module(net[f"layer{l + 2}"]["wf"], z, l + 1), s[l])
            np.testing.assert_allclose(feedback, pull(s[l + 1])[0], rtol=1e-10, atol=1e-12)


def _tiny(asymmetry=1.0, seed=0):
    m = make_model("asym_conv", in_shape=(8, 8, 2), channels=(3, 4), num_classes=3, asymmetry=asymmetry, dtype="float64")
    params = m.init(jax.random.PRNGKey(seed))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (2, 8, 8, 2), jnp.float64)
    batch = dynamics.Batch(x, jnp.array([0, 2]))
    return m, params, batch


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run(model, est, params, batch, rng):
    return est(model, params, batch, rng)


def test_true_estimate_matches_dense_linear_solve():
    """error = -sigma'(u*) (I - dPhi/du)^{-1} nudge, with the Jacobian dense and numpy's solve."""
    with jax.enable_x64(True):
        m, params, batch = _tiny()
        est = make_estimator("true", T_free=300, solve_tol=1e-12, solve_maxiter=50)
        res = _run(m, est, params, batch, jax.random.PRNGKey(0))
        u = res.free_state
        assert float(jnp.max(res.residual)) < 1e-10
        g = m.nudge(params, u, batch.y)
        for i in range(2):
            ui = tuple(v[i : i + 1] for v in u)
            drive = m.drive(params["net"], batch.x[i : i + 1])
            flat, unravel = ravel_pytree(ui)
            Jphi = np.asarray(jax.jacfwd(lambda v: ravel_pytree(m.phi(params["net"], unravel(v), drive))[0])(flat))
            gi = np.asarray(ravel_pytree(tuple(v[i : i + 1] for v in g))[0])
            v = np.linalg.solve(np.eye(len(flat)) - Jphi, gi)
            dsig = np.asarray(jax.vmap(jax.grad(lambda z: m.activation(0, z)))(flat))
            err = np.asarray(ravel_pytree(tuple(e[i : i + 1] for e in res.error))[0])
            np.testing.assert_allclose(err, -dsig * v, rtol=1e-7, atol=1e-12)


def test_holomorphic_phi_and_complex_nudges():
    """Cauchy-Riemann for the complexified free map (Phi(u + i h v) = Phi(u) + i h J v + O(h^2)), and the
    N=4 Cauchy estimate with complex nudges reproduces the true d_beta sigma(u*) up to its |beta|^4 bias."""
    with jax.enable_x64(True):
        m, params, batch = _tiny()
        net = params["net"]
        drive = m.drive(net, batch.x)
        u = tuple(jax.random.normal(jax.random.PRNGKey(l), v.shape, jnp.float64) for l, v in enumerate(m.init_state(batch.x)))
        v = tuple(jax.random.normal(jax.random.PRNGKey(9 + l), w.shape, jnp.float64) for l, w in enumerate(u))
        h = 1e-7
        out = m.phi(net, tuple(a + 1j * h * b for a, b in zip(u, v)), tuple(d.astype(jnp.complex128) for d in drive))
        _, jv = jax.jvp(lambda w: m.phi(net, w, drive), (u,), (v,))
        for o, j in zip(out, jv):
            np.testing.assert_allclose(jnp.imag(o) / h, j, rtol=1e-6, atol=1e-9)
        true = _run(m, make_estimator("true", T_free=300, solve_tol=1e-12, solve_maxiter=50), params, batch, jax.random.PRNGKey(0))
        cau = _run(m, make_estimator("cauchy", T_free=300, beta=0.05, N=4, T_nudge=300), params, batch, jax.random.PRNGKey(0))
        a, b = ravel_pytree(cau.error)[0], ravel_pytree(true.error)[0]
        assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) < 1e-5
        ep = _run(m, make_estimator("ep", T_free=300, beta=0.05, T_nudge=300), params, batch, jax.random.PRNGKey(0))
        assert float(jnp.linalg.norm(ravel_pytree(ep.error)[0] - b) / jnp.linalg.norm(b)) > 1e-3  # first-order bias
