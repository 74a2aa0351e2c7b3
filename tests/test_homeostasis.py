"""Jacobian homeostasis (generalized hEP paper, Eq. 12, App. A.2) against dense Jacobians.

Coordinates matter (see holoeb/homeostasis.py):
- pre-activation coordinates: J = W D - I, D = diag sigma'(u*), not symmetric even for W = W^T;
- activity coordinates s = sigma(u): the MLP's map s -> W s + b - s has J = W - I at every state,
  symmetric exactly when W is, so L_homeo = (1/2)||J - J^T||_F^2 = sum_l ||W^f_l - (W^b_l)^T||_F^2;
- the conv net's activity-coordinate J depends on the state through softmax pooling.
Hutchinson estimates are checked within 4 standard errors of the exact traces.
"""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from holoeb import dynamics, homeostasis
from holoeb.estimators import make_estimator
from holoeb.models import make_model
from holoeb.solvers import relax
from holoeb.train_step import make_train_step

K = 2000  # Hutchinson samples for the statistical checks


def _mlp(asymmetry, seed=0, hidden=(5, 4), n_in=6, n_out=3):
    model = make_model("mlp", in_features=n_in, hidden=hidden, num_classes=n_out, asymmetry=asymmetry, dtype="float64")
    params = model.init(jax.random.PRNGKey(seed))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (2, n_in), jnp.float64)
    return model, params, x


def _tiny_conv(asymmetry, feedback="activity", seed=0):
    model = make_model("asym_conv", in_shape=(8, 8, 2), channels=(3, 4), num_classes=3, asymmetry=asymmetry,
                       feedback=feedback, dtype="float64")
    params = model.init(jax.random.PRNGKey(seed))
    x = jax.random.normal(jax.random.PRNGKey(seed + 1), (2, 8, 8, 2), jnp.float64)
    return model, params, x


@functools.partial(jax.jit, static_argnums=(0, 3))
def _free_state(model, params, x, T=200):
    drive = model.drive(params["net"], x)
    return relax(lambda u: model.phi(params["net"], u, drive), model.init_state(x), T).state


_traces = jax.jit(homeostasis.hutchinson_traces, static_argnums=(0, 5, 6))
_loss = jax.jit(functools.partial(homeostasis.homeostatic_loss, normalize="sum"), static_argnums=(0, 5, 6))
_grad = jax.jit(functools.partial(homeostasis.homeostatic_grad, normalize="sum"), static_argnums=(0, 5, 6))
_measure = jax.jit(homeostasis.symmetry_measure, static_argnums=(0, 5, 6))


def _dense_J(model, net, x, u, i, coordinates):
    """Dense Jacobian of the vector field of example i, built independently with jacfwd."""
    return np.asarray(_dense_J_jit(model, net, x[i : i + 1], tuple(v[i : i + 1] for v in u), coordinates))


@functools.partial(jax.jit, static_argnums=(0, 4))
def _dense_J_jit(model, net, xi, ui, coordinates):
    drive = model.drive(net, xi)
    if coordinates == "activity":
        z = model.activities(ui)
        f = lambda s: tuple(a - b for a, b in zip(model.phi_activity(net, s, drive), s))
    else:
        z = ui
        f = lambda v: tuple(a - b for a, b in zip(model.phi(net, v, drive), v))
    flat, unravel = ravel_pytree(z)
    return jax.jacfwd(lambda v: ravel_pytree(f(unravel(v)))[0])(flat)


def _mlp_block_J(model, net):
    """J = W - I assembled by hand from the weights (column-vector convention)."""
    sizes = model.sizes
    off = np.concatenate([[0], np.cumsum(sizes)])
    W = np.zeros((off[-1], off[-1]))
    for l in range(1, len(sizes)):
        W[off[l] : off[l + 1], off[l - 1] : off[l]] = np.asarray(net[f"wf{l + 1}"]).T
        W[off[l - 1] : off[l], off[l] : off[l + 1]] = np.asarray(net[f"wb{l + 1}"]).T
    return W - np.eye(off[-1])


def _within(est_samples, exact, n_se=4.0):
    m = float(np.mean(est_samples))
    se = float(np.std(est_samples, ddof=1) / math.sqrt(len(est_samples)))
    assert abs(m - exact) <= n_se * se + 1e-12, f"estimate {m} vs exact {exact} (4 SE = {n_se * se})"
    return se


def test_mlp_activity_jacobian_is_W_minus_I_at_every_state():
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=0.7)
        net = params["net"]
        u1 = _free_state(model, params, x)
        u2 = tuple(3.0 * jax.random.normal(jax.random.PRNGKey(7), v.shape, v.dtype) for v in u1)
        ref = _mlp_block_J(model, net)
        for u in (u1, u2):
            np.testing.assert_allclose(_dense_J(model, net, x, u, 0, "activity"), ref, atol=1e-12)


def test_pre_activation_jacobian_WD_minus_I_not_symmetric_for_symmetric_weights():
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=0.0)
        net = params["net"]
        u = _free_state(model, params, x)
        J_act = _dense_J(model, net, x, u, 0, "activity")
        np.testing.assert_allclose(J_act, J_act.T, atol=1e-12)  # symmetric weights -> symmetric J in s
        J_pre = _dense_J(model, net, x, u, 0, "pre_activation")
        ui = jnp.concatenate([v[0] for v in u])
        D = np.diag(np.asarray(jax.vmap(jax.grad(lambda z: model.activation(0, z)))(ui)))
        W = _mlp_block_J(model, net) + np.eye(len(ui))
        np.testing.assert_allclose(J_pre, W @ D - np.eye(len(ui)), atol=1e-12)
        asym = np.linalg.norm(J_pre - J_pre.T) / np.linalg.norm(J_pre)
        assert asym > 0.05, asym


def test_hutchinson_matches_closed_form_in_activity_coordinates():
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=0.9)
        net = params["net"]
        u = _free_state(model, params, x)
        jtj, j2 = _traces(model, net, x, u, jax.random.PRNGKey(3), K, "activity")
        J = _mlp_block_J(model, net)
        closed = sum(float(jnp.sum((net[f"wf{l}"] - net[f"wb{l}"].T) ** 2)) for l in range(2, model.num_layers + 1))
        np.testing.assert_allclose(0.5 * np.linalg.norm(J - J.T) ** 2, closed, rtol=1e-12)  # the closed form
        for i in range(x.shape[0]):
            _within(np.asarray(jtj[:, i] - j2[:, i]), closed)
            _within(np.asarray(jtj[:, i]), np.linalg.norm(J) ** 2)
            _within(np.asarray(j2[:, i]), np.trace(J @ J))
        loss = _loss(model, net, x, u, jax.random.PRNGKey(3), K, "activity")
        np.testing.assert_allclose(float(loss), float(np.mean(jtj - j2)), rtol=1e-12)
        per_unit = homeostasis.homeostatic_loss(model, net, x, u, jax.random.PRNGKey(3), 3, "activity", "per_unit")
        total = homeostasis.homeostatic_loss(model, net, x, u, jax.random.PRNGKey(3), 3, "activity", "sum")
        np.testing.assert_allclose(float(per_unit) * sum(model.sizes), float(total), rtol=1e-12)


@pytest.mark.parametrize("asymmetry", [0.0, 1.2])
def test_hutchinson_matches_dense_pre_activation_state_dependent(asymmetry):
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=asymmetry, seed=4)
        net = params["net"]
        u = _free_state(model, params, x)
        jtj, j2 = _traces(model, net, x, u, jax.random.PRNGKey(5), K, "pre_activation")
        for i in range(x.shape[0]):
            J = _dense_J(model, net, x, u, i, "pre_activation")
            A = 0.5 * (J - J.T)
            _within(0.5 * np.asarray(jtj[:, i] - j2[:, i]), np.linalg.norm(A) ** 2)


def _ratio_bounds(J, jtj, j2):
    """Interval of ||S||/(||S||+||A||) implied by 4-SE bounds on the ||S||^2, ||A||^2 estimates,
    and the exact value."""
    a = 0.5 * (jtj - j2)
    s = 0.5 * (jtj + j2)
    se = lambda v: 4 * np.std(v, ddof=1) / math.sqrt(len(v))
    f = lambda s2, a2: math.sqrt(max(s2, 0)) / (math.sqrt(max(s2, 0)) + math.sqrt(max(a2, 0)))
    lo = f(np.mean(s) - se(s), np.mean(a) + se(a))
    hi = f(np.mean(s) + se(s), max(np.mean(a) - se(a), 0.0))
    S, A = 0.5 * (J + J.T), 0.5 * (J - J.T)
    exact = np.linalg.norm(S) / (np.linalg.norm(S) + np.linalg.norm(A))
    return lo, hi, exact


def test_symmetry_measure_one_for_symmetric_mlp_and_below_one_otherwise():
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=0.0)
        u = _free_state(model, params, x)
        m, a2, _ = _measure(model, params["net"], x, u, jax.random.PRNGKey(0), 5, "activity")
        assert abs(float(m) - 1.0) < 1e-7 and float(a2) < 1e-12

        model, params, x = _mlp(asymmetry=math.pi / 2)
        net = params["net"]
        u = _free_state(model, params, x)
        m, _, _ = _measure(model, net, x, u, jax.random.PRNGKey(1), K, "activity")
        jtj, j2 = _traces(model, net, x, u, jax.random.PRNGKey(1), K, "activity")
        assert float(m) < 0.95
        lo, hi, exact = _ratio_bounds(_mlp_block_J(model, net), np.asarray(jtj[:, 0]), np.asarray(j2[:, 0]))
        assert lo <= exact <= hi, (lo, exact, hi)


def test_homeostatic_grad_holds_fixed_point_constant():
    """dL/dtheta with u* fixed: matches a central finite difference that keeps u* fixed,
    and differs from the total derivative through u*(theta)."""
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=1.0, seed=2)
        net = params["net"]
        u = _free_state(model, params, x, T=400)
        rng = jax.random.PRNGKey(9)
        val, g = _grad(model, params, x, u, rng, 5, "pre_activation")
        assert all(float(jnp.max(jnp.abs(v))) == 0.0 for v in jax.tree_util.tree_leaves(g["readout"]))
        v = jax.tree_util.tree_map(lambda p: jax.random.normal(jax.random.PRNGKey(1), p.shape, p.dtype), net)
        shift = lambda h: jax.tree_util.tree_map(lambda p, d: p + h * d, net, v)
        L = lambda n, us: float(_loss(model, n, x, us, rng, 5, "pre_activation"))
        h = 1e-5
        fd_fixed = (L(shift(h), u) - L(shift(-h), u)) / (2 * h)
        us = lambda n: _free_state(model, {**params, "net": n}, x, T=400)
        fd_total = (L(shift(h), us(shift(h))) - L(shift(-h), us(shift(-h)))) / (2 * h)
        ad = sum(float(jnp.sum(a * b)) for a, b in zip(jax.tree_util.tree_leaves(g["net"]), jax.tree_util.tree_leaves(v)))
        np.testing.assert_allclose(ad, fd_fixed, rtol=1e-6)
        assert abs(fd_total - fd_fixed) > 1e-3 * abs(fd_fixed)


def test_homeostatic_grad_activity_coordinates_is_weight_asymmetry_gradient():
    """In activity coordinates E[L_homeo] = sum_l ||W^f_l - (W^b_l)^T||^2: its gradient is exactly zero
    for w_in and biases (J does not depend on them) and aligned with 2 (W^f - W^b^T) for the weights."""
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=1.0)
        net = params["net"]
        u = _free_state(model, params, x)
        _, g = _grad(model, params, x, u, jax.random.PRNGKey(2), K, "activity")
        for k in ["w_in"] + [f"b{l}" for l in range(1, model.num_layers + 1)]:
            assert float(jnp.max(jnp.abs(g["net"][k]))) == 0.0, k
        ref = {}
        for l in range(2, model.num_layers + 1):
            d = net[f"wf{l}"] - net[f"wb{l}"].T
            ref[f"wf{l}"], ref[f"wb{l}"] = 2 * d, -2 * d.T
        a = jnp.concatenate([g["net"][k].ravel() for k in sorted(ref)])
        b = jnp.concatenate([ref[k].ravel() for k in sorted(ref)])
        cos = float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))
        assert cos > 0.98, cos


def test_conv_jacobian_state_dependent_and_hutchinson_matches_dense():
    with jax.enable_x64(True):
        model, params, x = _tiny_conv(asymmetry=1.0)
        net = params["net"]
        u = _free_state(model, params, x)
        J0 = _dense_J(model, net, x, u, 0, "activity")
        u_other = tuple(v + jax.random.normal(jax.random.PRNGKey(4), v.shape, v.dtype) for v in u)
        assert np.linalg.norm(_dense_J(model, net, x, u_other, 0, "activity") - J0) > 1e-3 * np.linalg.norm(J0)
        jtj, j2 = _traces(model, net, x, u, jax.random.PRNGKey(6), K // 4, "activity")
        for i in range(x.shape[0]):
            J = _dense_J(model, net, x, u, i, "activity")
            _within(0.5 * np.asarray(jtj[:, i] - j2[:, i]), np.linalg.norm(0.5 * (J - J.T)) ** 2)
            _within(np.asarray(jtj[:, i]), np.linalg.norm(J) ** 2)
        # the literal D.2 feedback (u_{l+1}) has no activity coordinates: pre-activation is used
        m2, p2, _ = _tiny_conv(asymmetry=1.0, feedback="pre_activation")
        assert homeostasis.default_coordinates(m2) == "pre_activation"
        u2 = _free_state(m2, p2, x)
        jtj, j2 = _traces(m2, p2["net"], x, u2, jax.random.PRNGKey(6), K // 4)
        J = _dense_J(m2, p2["net"], x, u2, 0, "pre_activation")
        _within(0.5 * np.asarray(jtj[:, 0] - j2[:, 0]), np.linalg.norm(0.5 * (J - J.T)) ** 2)


def test_conv_tied_kernels_symmetric_in_activity_coordinates():
    with jax.enable_x64(True):
        model, params, x = _tiny_conv(asymmetry=0.0)
        u = _free_state(model, params, x)
        J = _dense_J(model, params["net"], x, u, 1, "activity")
        np.testing.assert_allclose(J, J.T, atol=1e-12)
        m, _, _ = _measure(model, params["net"], x, u, jax.random.PRNGKey(0), 5)
        assert abs(float(m) - 1.0) < 1e-7
        model, params, x = _tiny_conv(asymmetry=1.2)
        u = _free_state(model, params, x)
        m, _, _ = _measure(model, params["net"], x, u, jax.random.PRNGKey(0), 50)
        assert float(m) < 0.97


ESTIMATOR_HP = {
    "ep": dict(beta=0.1, T_nudge=20),
    "cauchy": dict(beta=0.2, N=2, T_nudge=20),
    "continuous": dict(beta=0.2, N=2, steps_per_point=10, periods=2),
    "true": dict(),
    "rbp": dict(),
}


@pytest.mark.parametrize("name", sorted(ESTIMATOR_HP))
def test_train_step_adds_lambda_times_homeostatic_grad(name):
    """With plain SGD, step(lambda) - step(0) = -lr * lambda * dL_homeo/dtheta at the estimator's free state."""
    with jax.enable_x64(True):
        model, params, x = _mlp(asymmetry=1.0, hidden=(4,), n_in=5, n_out=3)
        batch = dynamics.Batch(x, jnp.array([0, 2]))
        est = make_estimator(name, T_free=40, **ESTIMATOR_HP[name])
        lr, lam = 0.1, 3.0
        tx = optax.sgd(lr)
        rng = jax.random.PRNGKey(11)

        @jax.jit
        def both(params):
            p0, _, _ = make_train_step(model, est, tx, 0.0)(params, tx.init(params), batch, rng)
            p1, _, m1 = make_train_step(model, est, tx, lam, 5)(params, tx.init(params), batch, rng)
            k_est, k_h = jax.random.split(rng)
            res = est(model, params, batch, k_est)
            _, hg = homeostasis.homeostatic_grad(model, params, x, res.free_state, k_h, 5)
            return p0, p1, m1, hg

        p0, p1, m1, hg = both(params)
        assert bool(m1["finite"]) and "homeo_loss" in m1
        diff = jax.tree_util.tree_map(lambda a, b: a - b, p1, p0)
        expect = jax.tree_util.tree_map(lambda g: -lr * lam * g, hg)
        for a, b in zip(jax.tree_util.tree_leaves(diff), jax.tree_util.tree_leaves(expect)):
            np.testing.assert_allclose(a, b, atol=1e-10)
        assert max(float(jnp.max(jnp.abs(v))) for v in jax.tree_util.tree_leaves(expect["net"])) > 1e-4


def test_bad_coordinates_raise():
    model = make_model("mlp", in_features=6, hidden=(5,), num_classes=3)
    params, x = model.init(jax.random.PRNGKey(0)), jnp.zeros((2, 6))
    u = model.init_state(x)
    with pytest.raises(ValueError, match="coordinates"):
        homeostasis.homeostatic_loss(model, params["net"], x, u, jax.random.PRNGKey(0), 2, "polar")
    with pytest.raises(ValueError, match="normalize"):
        homeostasis.homeostatic_loss(model, params["net"], x, u, jax.random.PRNGKey(0), 2, None, "mean")
    conv = make_model("asym_conv", in_shape=(8, 8, 2), channels=(3, 4), feedback="pre_activation")
    cp, cx = conv.init(jax.random.PRNGKey(0)), jnp.zeros((1, 8, 8, 2))
    with pytest.raises(ValueError, match="phi_activity"):
        homeostasis.homeostatic_loss(conv, cp["net"], cx, conv.init_state(cx), jax.random.PRNGKey(0), 2, "activity")


def test_jitted_symmetry_measure_is_finite_on_the_narrow_dchn():
    """Regression: on the narrow DCHN (16-32-64-64, batch 8) the jitted Hutchinson products were NaN for
    every example while the same function run op by op was finite: XLA's CPU backend (YNNPACK reduce
    fusion, jaxlib 0.10) fused the pooling derivative's tie count with the matmul by a zero kernel that the
    convolution's forward-mode rule formed for the kernel's (zero) tangent, and the symmetry diagnostic of
    every DCHN run came out NaN. The rule now skips symbolic-zero tangents; jitted and op-by-op agree."""
    m = make_model("dchn", in_channels=1, image_size=32, channels=(16, 32, 64, 64), gains=0.5)
    p = m.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (8, 32, 32, 1))
    drive = m.drive(p["net"], x)
    u = relax(lambda v: m.phi(p["net"], v, drive), m.init_state(x), 60).state
    f = lambda n, xx, uu: homeostasis.hutchinson_traces(m, n, xx, uu, jax.random.PRNGKey(2), 4)
    eager, jitted = f(p["net"], x, u), jax.jit(f)(p["net"], x, u)
    for a, b in zip(jitted, eager):
        assert bool(jnp.all(jnp.isfinite(a)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)
    sym = jax.jit(lambda n, xx, uu: homeostasis.symmetry_measure(m, n, xx, uu, jax.random.PRNGKey(2), 4)[0])(p["net"], x, u)
    assert 0.5 < float(sym) <= 1.0
