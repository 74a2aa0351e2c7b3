"""Deep convolutional Hopfield network (comparative study, Sec. 3, App. C, Table 5)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import energy
from holoeb.diagnostics import tree_cosine
from holoeb.estimators import make_estimator
from holoeb.errors import ConfigError
from holoeb.models import make_model

TINY = dict(in_channels=1, image_size=16, channels=(3, 4, 4, 4), num_classes=5)


def _data(B=4, C=1, dtype=jnp.float32):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(B, 16, 16, C)), dtype)
    return x, jnp.arange(B) % 5


def run(name, model, params, x, y, **hp):
    est = make_estimator(name, **hp)
    return jax.jit(lambda p, xx, yy: est(model, p, (xx, yy), None))(params, x, y)


def test_table5_architecture_and_gain_init():
    m = make_model("dchn", in_channels=3, num_classes=10)
    assert m.layer_shapes == ((16, 16, 128), (8, 8, 256), (4, 4, 512), (2, 2, 512), (10,))
    shapes = jax.eval_shape(m.init, jax.random.PRNGKey(0))["net"]
    assert shapes["w1"].shape == (3, 3, 3, 128) and shapes["w4"].shape == (3, 3, 512, 512)
    assert shapes["w5"].shape == (2048, 10) and shapes["b5"].shape == (10,)
    tiny = make_model("dchn", **TINY, gains=(0.5, 0.7, 0.5, 0.3, 0.9))
    net = jax.jit(tiny.init)(jax.random.PRNGKey(0))["net"]
    fans = [1 * 9, 3 * 9, 4 * 9, 4 * 9, 4]
    for k, (fan, g) in enumerate(zip(fans, tiny.gains), start=1):
        c = g / math.sqrt(fan)
        w = np.asarray(net[f"w{k}"])
        assert w.max() <= c and w.min() >= -c and w.max() > 0.8 * c, k  # U(-c, c), Eq. 102


def test_energy_param_gradient_matches_finite_differences():
    """dE/dtheta from autodiff of E equals a central difference of E (float64)."""
    with jax.enable_x64(True):
        m = make_model("dchn", **TINY)
        net = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), jax.jit(m.init)(jax.random.PRNGKey(0))["net"])
        x, _ = _data(2, dtype=jnp.float64)
        rng = np.random.default_rng(0)
        s = tuple(jnp.asarray(rng.uniform(size=(2,) + sh)) for sh in m.layer_shapes)
        d = jax.tree_util.tree_map(lambda a: jnp.asarray(rng.normal(size=a.shape)), net)
        h = 1e-6

        @jax.jit
        def both():
            g = energy.energy_param_grad(m, net, x, s)
            E = lambda t: jnp.mean(energy.energy(m, jax.tree_util.tree_map(lambda a, b: a + t * b, net, d), x, s))
            ad = sum(jnp.vdot(a, b) for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(d)))
            return ad, (E(h) - E(-h)) / (2 * h)

        ad, fd = both()
        np.testing.assert_allclose(float(ad), float(fd), rtol=1e-6)


@pytest.mark.parametrize("schedule", ["sync", "async"])
def test_fixed_point_satisfies_box_kkt_conditions(schedule):
    """At the relaxed state, dE/ds = 0 on interior units, >= 0 at 0, <= 0 at 1, = 0 on outputs."""
    m = make_model("dchn", **TINY, gains=1.0, schedule=schedule)
    net = jax.jit(m.init)(jax.random.PRNGKey(0))["net"]
    x, _ = _data()
    drive = m.drive(net, x)
    from holoeb.solvers import relax

    s = jax.jit(lambda n, d, xx: relax(lambda u: m.phi(n, u, d), m.init_state(xx), 60).state)(net, drive, x)
    gE = jax.jit(jax.grad(lambda u: jnp.sum(energy.energy(m, net, x, u))))(s)
    clipped = 0
    for l, (v, gl) in enumerate(zip(s, gE)):
        v, gl = np.asarray(v), np.asarray(gl)
        if l == len(s) - 1:
            np.testing.assert_allclose(gl, 0, atol=1e-4)
            continue
        inner = (v > 1e-6) & (v < 1 - 1e-6)
        clipped += int((v == 0).sum() + (v == 1).sum())
        assert inner.any()
        np.testing.assert_allclose(gl[inner], 0, atol=1e-4)
        assert (gl[v == 0] >= -1e-4).all() and (gl[v == 1] <= 1e-4).all()
    assert clipped > 0  # the box constraints are active somewhere


def test_async_reaches_sync_residual_in_fewer_iterations():
    x, _ = _data()
    its = {}
    for schedule in ("sync", "async"):
        m = make_model("dchn", **TINY, schedule=schedule)
        net = jax.jit(m.init)(jax.random.PRNGKey(0))["net"]
        f = jax.jit(lambda n, xx: energy.iterations_to_residual(m, n, xx, 1e-4, 200))
        its[schedule], res = f(net, x)
        assert float(res) <= 1e-4
    assert int(its["async"]) < int(its["sync"]), its


def test_cep_tbp_rbp_agree_and_bf16_relaxation():
    m = make_model("dchn", **TINY)
    p = jax.jit(m.init)(jax.random.PRNGKey(0))
    x, y = _data()
    rbp = run("rbp", m, p, x, y, T_free=40)
    tbp = run("tbp", m, p, x, y, T_free=40, K=20)
    cep = run("c-ep", m, p, x, y, beta=0.05, T_free=40, T_nudge=20)
    assert float(tree_cosine(tbp.grads, rbp.grads)) > 0.999
    assert float(tree_cosine(cep.grads, rbp.grads)) > 0.99
    half = run("c-ep", m, p, x, y, beta=0.05, T_free=40, T_nudge=20, relax_dtype="bfloat16")
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(half.grads))
    assert half.free_state[0].dtype == jnp.float32
    assert float(tree_cosine(half.grads, cep.grads)) > 0.95


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(image_size=30), "divisible"),
        (dict(schedule="random"), "schedule"),
        (dict(gains=(0.5, 0.5)), "gains"),
        (dict(channels=()), "channels"),
    ],
)
def test_bad_configuration(kw, match):
    with pytest.raises(ValueError, match=match):
        make_model("dchn", **kw)


def test_bias_gain_sets_the_bias_init_bound():
    """bias_gain g: biases ~ U(-g/sqrt(fan_in), g/sqrt(fan_in)) (the study's released code: 0.5),
    weights unchanged; default: the layer's gain."""
    kw = dict(in_channels=1, image_size=8, channels=(4, 6), num_classes=3, gains=1.0)
    a = make_model("dchn", **kw).init(jax.random.PRNGKey(0))["net"]
    b = make_model("dchn", bias_gain=0.5, **kw).init(jax.random.PRNGKey(0))["net"]
    np.testing.assert_array_equal(a["w2"], b["w2"])
    np.testing.assert_allclose(b["b1"], 0.5 * a["b1"], rtol=1e-6)  # same draws, half the bound
    assert float(jnp.max(jnp.abs(b["b2"]))) <= 0.5 / math.sqrt(4 * 9)
    assert float(jnp.max(jnp.abs(b["b3"]))) <= 0.5 / math.sqrt(2 * 2 * 6)
    for bad in (-0.5, float("nan"), "0.5"):
        with pytest.raises(ConfigError, match="bias_gain"):
            make_model("dchn", bias_gain=bad, **kw)


def test_pool_ties_first_routes_a_tied_window_to_its_first_maximum():
    """Same pooled values either way; the derivative of a window with tied maxima goes wholly to
    the first one in row-major order ("first", PyTorch's max_pool2d) or is shared ("split"),
    and untied windows get the same derivative; bad values are refused."""
    from holoeb.errors import ConfigError
    from holoeb.models.dchn import max_pool2

    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), jnp.float32)
    x = x.at[0, 0:2, 0:2, 0].set(0.0).at[1, 2:4, 0:2, 1].set(jnp.array([[0.1, 0.7], [0.7, 0.7]]))
    g = {t: jax.grad(lambda v: jnp.sum(max_pool2(v, t) * jnp.arange(1.0, 1.0 + 2 * 2 * 3).reshape(2, 2, 3)))(x)
         for t in ("split", "first")}
    assert bool(jnp.all(max_pool2(x, "first") == max_pool2(x, "split")))
    np.testing.assert_array_equal(g["first"][0, 0:2, 0:2, 0], [[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(g["split"][0, 0:2, 0:2, 0], np.full((2, 2), 0.25))
    np.testing.assert_array_equal(g["first"][1, 2:4, 0:2, 1], [[0.0, 8.0], [0.0, 0.0]])  # first of the three 0.7s
    np.testing.assert_allclose(g["split"][1, 2:4, 0:2, 1], [[0.0, 8 / 3], [8 / 3, 8 / 3]], rtol=1e-6)
    tied = np.zeros(x.shape, bool)
    tied[0, 0:2, 0:2, 0] = tied[1, 2:4, 0:2, 1] = True
    np.testing.assert_array_equal(np.asarray(g["first"])[~tied], np.asarray(g["split"])[~tied])
    with pytest.raises(ConfigError, match="pool_ties"):
        make_model("dchn", in_channels=1, image_size=8, channels=(2, 2), pool_ties="last")


@pytest.mark.parametrize("impl", ["xla", "im2col"])
def test_closed_form_state_gradient_equals_autodiff_of_the_primitive(impl):
    """DCHN.state_gradient (the layer updates' input, written out with the transposed
    convolution and the pooling derivative) equals autodiff of Phi in every layer, in float64,
    on states whose zero half (layers 1 and 3) makes pooling windows with tied maxima above
    them, for both tie rules
    (which must then differ, or the ties were not exercised); max_pool2_transpose is
    autodiff's vjp of max_pool2."""
    from holoeb import energy
    from holoeb.models.dchn import max_pool2, max_pool2_transpose

    with jax.enable_x64(True):
        grads = {}
        for ties in ("split", "first"):
            m = make_model("dchn", in_channels=1, image_size=16, channels=(3, 4, 5, 6), conv_impl=impl, pool_ties=ties)
            net = jax.tree_util.tree_map(lambda v: v.astype(jnp.float64), m.init(jax.random.PRNGKey(0)))["net"]
            x = jax.random.uniform(jax.random.PRNGKey(1), (3, 16, 16, 1), jnp.float64)
            s = tuple(jax.random.uniform(jax.random.PRNGKey(i + 5), v.shape, jnp.float64)
                      for i, v in enumerate(m.init_state(x)))
            s = tuple(v.at[:, :, : v.shape[2] // 2].set(0.0) if l in (0, 2) else v for l, v in enumerate(s))
            drive = m.drive(net, x)
            layers = tuple(range(m.num_layers))
            ref = energy.primitive_grads(m, net, s, drive, layers)
            got = m.state_gradient(net, s, drive, layers)
            for a, b in zip(got, ref):
                np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
            assert [v.shape for v in m.state_gradient(net, s, drive, (3, 1))] == [s[3].shape, s[1].shape]
            grads[ties] = ref
            z = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 4, 3), jnp.float64).at[0, :2, :2].set(0.0)
            g = jax.random.normal(jax.random.PRNGKey(3), (2, 2, 2, 3), jnp.float64)
            np.testing.assert_allclose(max_pool2_transpose(z, g, ties),
                                       jax.vjp(lambda v: max_pool2(v, ties), z)[1](g)[0], rtol=1e-14, atol=1e-14)
        assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(grads["split"], grads["first"])) > 1e-3
