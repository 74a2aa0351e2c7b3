"""Agnostic equilibrium propagation: Theorems 1-3 and Eq. (13) of the Agnostic-EqProp paper
against independent ground truths (closed forms, dense linear solves and autodiff through the
unrolled free relaxation, all in float64)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import energy
from holoeb.estimators import aeqprop_lyapunov as ly
from holoeb.estimators import make_estimator
from holoeb.estimators.aeqprop_box import box_quadratic_argmin, output_argmin
from holoeb.estimators.aeqprop_coupling import eps_tree
from holoeb.estimators.aeqprop_procedure import aeqprop_step
from holoeb.estimators.aeqprop_relaxation import param_argmin, state_step
from holoeb.estimators.aeqprop_variants import nudges
from holoeb.models import make_model
from holoeb.models.fourier_regression import FourierRegression, fourier_features

VARIANTS = ("optimistic", "pessimistic", "centered")


def flat(tree):
    return jnp.concatenate([jnp.ravel(v) for v in jax.tree_util.tree_leaves(tree)])


def tiny_hopfield(dtype="float64"):
    """A 6-5-3 network whose state energy (and joint energy for eps <= 0.1) is strictly convex,
    with all units strictly inside the box, so the minimisers are unique and smooth."""
    m = make_model("hopfield", in_features=6, hidden=(5,), num_classes=3, gains=(0.5, 0.5), init_scheme="xavier_half",
                   output_bounds=(-1.0, 2.0), cost_scale=0.5, dtype=dtype)
    net = m.init(jax.random.PRNGKey(1))["net"]
    th = {"net": dict(net, b1=net["b1"] + 0.5, b2=net["b2"] + 0.2), "readout": {}}
    x = 0.5 * jax.random.uniform(jax.random.PRNGKey(2), (4, 6), jnp.dtype(dtype))
    return m, th, x, jnp.array([0, 1, 2, 1])


def regression_params(w):
    return {"net": {"w": w}, "readout": {}}


def layer_update(m, th, x, y, beta, s, k):
    """The exact minimiser of E + beta C over layer k (1-based) given the others."""
    out = output_argmin(m, th, s, y, beta)
    return energy.layer_update(m, th["net"], s, m.drive(th["net"], x), (k - 1,), out)[0]


def closed_form_params(u, eps, x, s):
    """The dense Hopfield's parameter argmin (Aeqprop paper, Sec. 5.3):
    w_k = u + eps mean_b s_{k-1}^T s_k, b_k = u + eps mean_b s_k."""
    B = x.shape[0]
    net, prev = {}, x
    for k, sk in enumerate(s, start=1):
        net[f"w{k}"] = u["net"][f"w{k}"] + eps["net"][f"w{k}"] * (prev.T @ sk) / B
        net[f"b{k}"] = u["net"][f"b{k}"] + eps["net"][f"b{k}"] * jnp.mean(sk, 0)
        prev = sk
    return {"net": net, "readout": {}}


# ---- building blocks --------------------------------------------------------------------
def test_nudges_of_variants():
    assert nudges("optimistic", 0.4) == (0.0, 0.4)
    assert nudges("pessimistic", 0.4) == (-0.4, 0.0)
    assert nudges("centered", 0.4) == (-0.2, 0.2)


def test_box_quadratic_argmin_matches_grid():
    rng = np.random.default_rng(0)
    a = rng.normal(size=200)
    b = rng.normal(size=200) * 3
    z = np.asarray(box_quadratic_argmin(a, b, -1.0, 2.0))
    grid = np.linspace(-1, 2, 30001)
    f = a[:, None] * grid**2 + b[:, None] * grid
    best = f.min(1)
    assert np.all(a * z**2 + b * z <= best + 1e-6)


def test_hopfield_layer_update_is_the_exact_coordinate_minimiser():
    with jax.enable_x64(True):
        m, th, x, y = tiny_hopfield()
        s = tuple(jax.random.uniform(jax.random.PRNGKey(k), v.shape, jnp.float64) for k, v in
                  enumerate(m.init_state(x)))
        beta = 0.7
        for k in (1, 2):
            new = layer_update(m, th, x, y, beta, s, k)
            cand = list(s)
            cand[k - 1] = new
            f = lambda layer: jnp.mean(m.energy(th["net"], x, tuple(layer if j == k - 1 else v for j, v in enumerate(s)))
                                       + beta * m.cost(th, tuple(layer if j == k - 1 else v for j, v in enumerate(s)), y))
            g = jax.grad(f)(new)
            lo, hi = ((0.0, 1.0), m.output_bounds)[k - 1]
            # KKT on the box: zero gradient inside, gradient pointing outwards at an active bound
            inside = (new > lo + 1e-12) & (new < hi - 1e-12)
            assert float(jnp.max(jnp.abs(jnp.where(inside, g, 0.0)))) < 1e-12
            assert bool(jnp.all(jnp.where(new <= lo + 1e-12, g >= -1e-12, True)))
            assert bool(jnp.all(jnp.where(new >= hi - 1e-12, g <= 1e-12, True)))


@pytest.mark.parametrize("input_shortcut", (False, True))
def test_hopfield_phase2_equals_naive_alternation(input_shortcut):
    """Phase 2 (generic parameter argmin by autodiff; with the shortcut, x w1 through the Gram
    matrix x x^T) against an alternation of state sweeps and the dense Hopfield's closed-form
    parameter argmin."""
    with jax.enable_x64(True):
        m, th, x, y = tiny_hopfield()
        eps = eps_tree(0.05, th)
        out = aeqprop_step(m, th, x, y, eps=0.05, beta1=-0.25, beta2=0.25, steps1=30, steps2=15,
                           input_shortcut=input_shortcut)

        def body(_, c):
            s, t = c
            new = state_step(m, t, x, y, 0.25)(s)
            return new, closed_form_params(out.u, eps, x, new)

        s, t = jax.lax.fori_loop(0, 15, body, (out.state1, closed_form_params(out.u, eps, x, out.state1)))
        np.testing.assert_allclose(flat(t), flat(out.theta), atol=1e-13)
        np.testing.assert_allclose(flat(s), flat(out.state2), atol=1e-13)


# ---- the procedure against a dense solve ---------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_linear_regression_step_is_the_joint_minimiser(variant):
    """Eqs. (5)-(6): theta_{t-1} minimises calE(u_t, ., ., beta_1) and theta_t minimises
    calE(u_t, ., ., beta_2); calE is a quadratic in (s, theta) solved densely here."""
    with jax.enable_x64(True):
        sys_ = FourierRegression(max_freq=4, dtype="float64")
        eps, beta = 0.5, 0.5
        b1, b2 = nudges(variant, beta)
        th = regression_params(jax.random.normal(jax.random.PRNGKey(3), (9,), jnp.float64))
        x, y = jnp.array([[0.37]]), jnp.array([-0.8])
        out = aeqprop_step(sys_, th, x, y, eps=eps, beta1=b1, beta2=b2, steps1=50, steps2=400)
        phi = fourier_features(x, 4)[0]
        # joint energy z = (s, theta): |u-theta|^2/2eps + (s - phi.theta)^2/2 + b (s-y)^2/2
        def solve(u, b):
            H = jnp.zeros((10, 10)).at[0, 0].set(1 + b).at[1:, 1:].set(jnp.eye(9) / eps + jnp.outer(phi, phi))
            H = H.at[0, 1:].set(-phi).at[1:, 0].set(-phi)
            return jnp.linalg.solve(H, jnp.concatenate([jnp.array([b * y[0]]), u / eps]))
        z1 = solve(out.u["net"]["w"], b1)
        z2 = solve(out.u["net"]["w"], b2)
        np.testing.assert_allclose(z1[1:], th["net"]["w"], atol=1e-10)  # the controller held theta
        np.testing.assert_allclose(out.theta["net"]["w"], z2[1:], atol=1e-10)
        np.testing.assert_allclose(out.state2[0][0, 0], z2[0], atol=1e-10)


# ---- Theorem 1 ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_theorem1_sgd_step_and_error_scaling(variant):
    """theta_t = theta_{t-1} - eps beta dL/dtheta + O(eps^2 beta + eps beta^2): the error is
    homogeneous of degree 3, so halving eps and beta together divides it by ~8 (the relative
    error of the gradient estimate by ~2). Ground truth: autodiff through the unrolled free
    relaxation."""
    with jax.enable_x64(True):
        m, th, x, y = tiny_hopfield()
        g = flat(jax.grad(lambda t: ly.loss(m, t, x, y, 150))(th))
        errs = []
        for h in (0.05, 0.025):
            b1, b2 = nudges(variant, h)
            out = aeqprop_step(m, th, x, y, eps=h, beta1=b1, beta2=b2, steps1=80, steps2=80)
            errs.append(float(jnp.linalg.norm(flat(out.theta) - (flat(th) - h * h * g))))
        ratio = errs[0] / errs[1]
        assert 6.5 < ratio < 10.0, (errs, ratio)
        assert errs[1] / (0.025**2 * float(jnp.linalg.norm(g))) < 0.15  # a genuine gradient step


# ---- Theorem 2 / 3: Lyapunov functions -------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_theorem2_lyapunov_never_increases_linear_regression(variant):
    """L_{b1;b2}(theta_t) <= L_{b1;b2}(theta_{t-1}) for large eps and beta, repeated steps on the
    same example (closed form of L for Eq. 18 with the ||s||^2 term: independent of the code)."""
    with jax.enable_x64(True):
        kappa = 1.0
        sys_ = FourierRegression(max_freq=10, state_l2=kappa, dtype="float64")
        rng = np.random.default_rng(1)

        def closed_lyap(theta, x, y, b1, b2):
            m = sys_.mean(theta, x)[0]
            c = lambda b: 0.5 * ((m + b * y[0]) / (1 + b + 2 * kappa) - y[0]) ** 2
            nodes, w = np.polynomial.legendre.leggauss(30)
            return sum(0.5 * wi * c(0.5 * (b1 + b2) + 0.5 * (b2 - b1) * t) for t, wi in zip(nodes, w))

        for eps, beta in ((0.5, 1.5), (2.0, 1.0), (0.1, 1.5)):
            b1, b2 = nudges(variant, beta)
            th = regression_params(jnp.asarray(rng.normal(size=21)))
            x, y = jnp.asarray(rng.uniform(-1, 1, (1, 1))), jnp.asarray(rng.normal(size=1) * 3)
            step = jax.jit(lambda t: aeqprop_step(sys_, t, x, y, eps=eps, beta1=b1, beta2=b2, steps1=20,
                                                  steps2=300).theta)
            vals = [closed_lyap(th, x, y, b1, b2)]
            for _ in range(4):
                th = step(th)
                vals.append(closed_lyap(th, x, y, b1, b2))
            vals = np.array(vals)
            assert np.all(np.diff(vals) <= 1e-12 * (1 + vals[:-1])), vals
            assert vals[-1] < vals[0]


@pytest.mark.parametrize("variant", VARIANTS)
def test_theorem2_lyapunov_never_increases_hopfield(variant):
    """Same property on the Hopfield network with a large nudge beta = 0.6. The theorem needs the
    joint minimisers to be global: eps = 0.05 keeps the joint energy in (s, theta) strictly
    convex even under beta_1 = -0.6 (output curvature (1 + beta_1) = 0.4 > eps (1 + |s_1|^2))."""
    with jax.enable_x64(True):
        m, th, x, y = tiny_hopfield()
        b1, b2 = nudges(variant, 0.6)
        step = jax.jit(lambda t: aeqprop_step(m, t, x, y, eps=0.05, beta1=b1, beta2=b2, steps1=80, steps2=150).theta)
        vals = [float(ly.lyapunov(m, th, x, y, b1, b2, 150))]
        for _ in range(3):
            th = step(th)
            vals.append(float(ly.lyapunov(m, th, x, y, b1, b2, 150)))
        assert np.all(np.diff(vals) <= 1e-12), vals


def test_theorem8_and_bounds_on_the_loss():
    """L_{b1;b2} = (F(b2) - F(b1))/(b2 - b1) equals the average of C(s_b) (Eq. 58 vs Eq. 24), and
    L_{0;beta} <= L <= L_{-beta;0} (Eq. 13), strictly here since dC/ds != 0."""
    with jax.enable_x64(True):
        m, th, x, y = tiny_hopfield()
        for b1, b2 in ((0.0, 0.5), (-0.5, 0.0), (-0.25, 0.25)):
            np.testing.assert_allclose(ly.lyapunov(m, th, x, y, b1, b2, 150),
                                       ly.lyapunov_quadrature(m, th, x, y, b1, b2, 10, 150), rtol=1e-9)
        lo = ly.lyapunov(m, th, x, y, 0.0, 0.5, 150)
        mid = ly.loss(m, th, x, y, 150)
        hi = ly.lyapunov(m, th, x, y, -0.5, 0.0, 150)
        assert lo < mid < hi, (lo, mid, hi)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_descends_its_own_lyapunov_function(variant):
    """Theorem 3: (theta_{t-1} - theta_t)/(eps beta) -> dL_{b1;b2}/dtheta as eps -> 0 at *fixed*
    large beta = 1: optimistic follows L_{0;b}, pessimistic L_{-b;0}, centered L_{-b/2;b/2}.
    Closed form (Eq. 18 + kappa s^2, a = 1 + 2 kappa): L_{b1;b2} = (m - a y)^2 / (2 (a + b1)(a + b2)),
    m = theta.phi (kappa > 0 makes the metric M of Eq. 31 differ from the identity)."""
    with jax.enable_x64(True):
        kappa = 0.5
        sys_ = FourierRegression(max_freq=10, state_l2=kappa, dtype="float64")
        th = regression_params(0.3 * jax.random.normal(jax.random.PRNGKey(5), (21,), jnp.float64))
        x, y = jnp.array([[0.21]]), jnp.array([1.7])
        phi = fourier_features(x, 10)[0]
        a = 1 + 2 * kappa
        resid = float(phi @ th["net"]["w"] - a * y[0])
        grad_of = lambda b1, b2: resid * phi / ((a + b1) * (a + b2))
        beta = 0.6
        b1, b2 = nudges(variant, beta)
        errs = []
        for eps in (4e-3, 2e-3):
            out = aeqprop_step(sys_, th, x, y, eps=eps, beta1=b1, beta2=b2, steps1=5, steps2=60)
            est = (th["net"]["w"] - out.theta["net"]["w"]) / (eps * beta)
            errs.append(float(jnp.linalg.norm(est - grad_of(b1, b2))))
            others = [float(jnp.linalg.norm(est - grad_of(*nudges(v, beta)))) for v in VARIANTS if v != variant]
        assert 1.7 < errs[0] / errs[1] < 2.3, errs  # O(eps) at fixed beta
        assert errs[1] < 0.1 * min(others), (errs, others)


# ---- controllers and simulators --------------------------------------------------------------
def test_iterative_controllers_hold_theta_and_agree_with_one_step():
    with jax.enable_x64(True):
        sys_ = FourierRegression(max_freq=3, dtype="float64")
        th = regression_params(jax.random.normal(jax.random.PRNGKey(0), (7,), jnp.float64))
        x, y = jnp.array([[0.3]]), jnp.array([1.2])
        ref = aeqprop_step(sys_, th, x, y, eps=0.05, beta1=0.0, beta2=0.05, steps1=50, steps2=200)
        step = flat(th) - flat(ref.theta)
        for relax, steps in (("exact", 50), ("gradient", 50)):
            out = aeqprop_step(sys_, th, x, y, eps=0.05, beta1=0.0, beta2=0.05, relaxation=relax,
                               controller="iterative", steps1=steps, steps2=steps)
            assert float(jnp.max(jnp.abs(flat(out.theta1) - flat(th)))) < 1e-3 * float(jnp.max(jnp.abs(step)))
            np.testing.assert_allclose(flat(th) - flat(out.theta), step, rtol=1e-3, atol=1e-3 * float(jnp.max(jnp.abs(step))))


# ---- estimator interface -------------------------------------------------------------------
def test_estimator_interface_and_jit():
    m, th, x, y = tiny_hopfield("float32")
    est = make_estimator("aeqprop", variant="centered", beta=0.5, eps=0.05,
                         eps_per_param=(("w1", 0.02),), T_free=10, T_nudge=10)
    res = est(m, th, (x, y), None)
    assert jax.tree_util.tree_structure(res.grads) == jax.tree_util.tree_structure(th)
    np.testing.assert_allclose(res.grads["net"]["w1"], (th["net"]["w1"] - res.aux["theta_next"]["net"]["w1"]) / (0.02 * 0.5),
                               rtol=1e-5)
    np.testing.assert_allclose(res.grads["net"]["b1"], (th["net"]["b1"] - res.aux["theta_next"]["net"]["b1"]) / (0.05 * 0.5),
                               rtol=1e-5)
    assert [e.shape for e in res.error] == [(4, 5), (4, 3)]
    assert np.isfinite(float(res.loss)) and 0.0 <= float(res.accuracy) <= 1.0
    jitted = jax.jit(lambda p, b: est.estimate(m, p, b, None))
    res2 = jitted(th, (x, y))
    np.testing.assert_allclose(flat(res2.grads), flat(res.grads), rtol=1e-4, atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    m, th, x, y = tiny_hopfield("float32")
    with pytest.raises(ValueError, match="variant"):
        make_estimator("aeqprop", variant="realistic")
    with pytest.raises(ValueError, match="eps"):
        make_estimator("aeqprop", eps=0.0)
    with pytest.raises(ValueError, match="eps"):
        make_estimator("aeqprop", eps=-1.0)
    with pytest.raises(ValueError, match="beta"):
        make_estimator("aeqprop", beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        make_estimator("aeqprop", beta=float("nan"))
    with pytest.raises(ValueError, match="eps_per_param"):
        make_estimator("aeqprop", eps_per_param=(("w1", float("nan")),))
    with pytest.raises(ValueError, match="relaxation"):
        make_estimator("aeqprop", relaxation="magic")
    est = make_estimator("aeqprop", T_free=5)
    with pytest.raises(ValueError, match="shape"):
        est(m, th, (x[:, :5], y), None)
    with pytest.raises(ValueError, match="labels"):
        est(m, th, (x, y[:3]), None)
    with pytest.raises(ValueError, match="NaN"):
        est(m, th, (x.at[0, 0].set(jnp.nan), y), None)
    with pytest.raises(ValueError, match="unknown parameters"):
        make_estimator("aeqprop", eps_per_param=(("w9", 0.1),))(m, th, (x, y), None)
    with pytest.raises(ValueError, match="unbounded"):
        sys_ = FourierRegression()
        aeqprop_step(sys_, sys_.init(), jnp.zeros((1, 1)), jnp.zeros(1), eps=0.1, beta1=-1.5, beta2=0.0)


# ---- every energy model of the registry -------------------------------------------------------
def test_generic_parameter_step_is_the_dense_closed_form():
    """argmin_theta ||u - theta||^2/2eps + mean E(theta, x, s) by autodiff of E equals the dense
    Hopfield's closed form w_k = u + eps mean s_{k-1}^T s_k, b_k = u + eps mean s_k (per-component eps)."""
    with jax.enable_x64(True):
        m, th, x, y = tiny_hopfield()
        u = jax.tree_util.tree_map(lambda p: p + 0.1, th)
        s = tuple(jax.random.uniform(jax.random.PRNGKey(7 + k), v.shape, jnp.float64)
                  for k, v in enumerate(m.init_state(x)))
        eps = {"net": {"w1": 0.03, "b1": 0.2, "w2": 0.07, "b2": 0.5}, "readout": {}}
        got = param_argmin(m, u, eps, x, s)
        want = closed_form_params(u, eps_tree(eps, u), x, s)
        np.testing.assert_allclose(flat(got), flat(want), rtol=1e-14, atol=1e-15)


def small_dchn_problem(dtype=jnp.float64):
    m = make_model("dchn", in_channels=1, image_size=8, channels=(2, 2), num_classes=3, gains=0.5)
    params = jax.tree_util.tree_map(lambda p: p.astype(dtype), m.init(jax.random.PRNGKey(0)))
    x = jax.random.uniform(jax.random.PRNGKey(1), (4, 8, 8, 1), dtype)
    return m, params, x, jnp.array([0, 1, 2, 1])


def cosine(a, b):
    a, b = flat(a), flat(b)
    return float(a @ b / (jnp.linalg.norm(a) * jnp.linalg.norm(b)))


def test_aeqprop_on_dchn_matches_the_true_gradient():
    """Theorem 1: eps beta grads = eps beta dL/dtheta + O(eps^2 beta + eps beta^2), i.e. a relative
    error O(eps + beta) of the gradient estimate. Measured at eps = 0.01, beta = 0.02: 2% (5% at
    twice both). eps must stay small enough for the joint energy in (s, theta) to keep a strict
    minimum (Assumption 6): at eps = 0.04 phase 2 of this DCHN runs away. Ground truths: autodiff
    through the unrolled free relaxation, and the 'rbp' estimator (implicit differentiation)."""
    with jax.enable_x64(True):
        m, params, x, y = small_dchn_problem()
        est = make_estimator("aeqprop", variant="centered", beta=0.02, eps=0.01, T_free=100, T_nudge=100)
        res = est(m, params, (x, y), None)
        assert jax.tree_util.tree_structure(res.grads) == jax.tree_util.tree_structure(params)
        assert bool(jnp.all(jnp.isfinite(flat(res.grads))))
        true = jax.grad(lambda p: ly.loss(m, p, x, y, 150))(params)
        rbp = make_estimator("rbp", T_free=150)(m, params, (x, y), None).grads
        assert cosine(true, rbp) > 0.999
        assert cosine(res.grads, true) > 0.99, cosine(res.grads, true)
        rel = float(jnp.linalg.norm(flat(res.grads) - flat(true)) / jnp.linalg.norm(flat(true)))
        assert rel < 0.05, rel


def test_aeqprop_on_default_hopfield_matches_the_true_gradient():
    """The registered 'hopfield' with its study defaults (gain_uniform, unbounded output, C = ||o - y||^2)."""
    with jax.enable_x64(True):
        m = make_model("hopfield", in_features=6, hidden=(5, 4), num_classes=3, dtype="float64")
        params = m.init(jax.random.PRNGKey(3))
        x = jax.random.uniform(jax.random.PRNGKey(4), (5, 6), jnp.float64)
        y = jnp.array([0, 1, 2, 1, 0])
        res = make_estimator("aeqprop", variant="centered", beta=0.02, eps=0.01, T_free=100, T_nudge=100)(
            m, params, (x, y), None)
        assert jax.tree_util.tree_structure(res.grads) == jax.tree_util.tree_structure(params)
        true = jax.grad(lambda p: ly.loss(m, p, x, y, 150))(params)
        assert cosine(res.grads, true) > 0.99, cosine(res.grads, true)


def test_regression_model_through_the_estimator():
    sys_ = FourierRegression(max_freq=3)
    x, y = jnp.array([[0.3], [-0.5]]), jnp.array([1.2, -0.4])
    res = make_estimator("aeqprop", beta=0.1, eps=0.05, T_free=5, T_nudge=50)(sys_, sys_.init(), (x, y), None)
    assert jax.tree_util.tree_structure(res.grads) == jax.tree_util.tree_structure(sys_.init())
    assert np.isnan(float(res.accuracy))
    # dL/dtheta of L = mean 1/2 (theta.phi - y)^2 at theta = 0: -mean y phi
    want = -jnp.mean(y[:, None] * fourier_features(x, 3), 0)
    assert cosine(res.grads["net"]["w"], want) > 0.99


@pytest.mark.parametrize("name", ("mlp", "loop_mlp", "asym_conv"))
def test_non_energy_models_are_refused(name):
    from holoeb.errors import ModelEstimatorMismatch

    m = make_model(name)
    with pytest.raises(ModelEstimatorMismatch, match="'hopfield' or 'dchn'"):
        make_estimator("aeqprop")(m, None, (jnp.zeros((1,) + tuple(m.input_shape)), jnp.zeros(1, jnp.int32)), None)


def test_input_shortcut_is_refused_off_the_dense_hopfield_and_jit_runs():
    from holoeb.errors import ConfigError
    from holoeb.estimators import run_estimator

    m, params, x, y = small_dchn_problem(jnp.float32)
    with pytest.raises(ConfigError, match="shortcut"):
        make_estimator("aeqprop", input_shortcut=True, T_free=3, T_nudge=3)(m, params, (x, y), None)
    with pytest.raises(ConfigError, match="exact"):
        make_estimator("aeqprop", input_shortcut=True, relaxation="gradient")
    res = run_estimator(make_estimator("aeqprop", T_free=5, T_nudge=5), m, params, (x, y))
    assert bool(jnp.all(jnp.isfinite(flat(res.grads))))


def test_boxed_output_free_phase_is_clipped():
    m, th, x, y = tiny_hopfield("float32")
    big = {"net": dict(th["net"], b2=th["net"]["b2"] + 10.0), "readout": {}}
    s = m.phi(big["net"], m.init_state(x), m.drive(big["net"], x))
    assert float(jnp.max(s[-1])) == 2.0  # the output box [-1, 2]
