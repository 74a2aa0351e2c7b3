"""`true` and `rbp` against an independent dense ground truth: the full Jacobian
from jax.jacfwd of the vector field and numpy linear solves (generalized hEP
paper, Eqs. 3-5)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import dynamics, make_estimator
from holoeb.estimators import run_estimator as run
from holoeb.estimators.true_derivative import true_activity_derivative
from holoeb.linear_solve import SolveConfig
from conftest import small_problem, tree_rel

EXACT = dict(T_free=400, solve_tol=1e-12, solve_maxiter=60)


def dense_setup(m, p, batch, u_star):
    """Flattened dense J = dF/du (whole batch), nudge g, dL/du, D = sigma'(u*)."""
    x, y = batch
    drive = m.drive(p["net"], x)
    shapes = [v.shape for v in u_star]
    sizes = [int(np.prod(s)) for s in shapes]

    def unflat(z):
        parts = jnp.split(z, np.cumsum(sizes)[:-1])
        return tuple(q.reshape(s) for q, s in zip(parts, shapes))

    flat = lambda t: jnp.concatenate([v.reshape(-1) for v in t])
    F = lambda z: flat(m.phi(p["net"], unflat(z), drive)) - z
    z = flat(u_star)
    J = np.asarray(jax.jacfwd(F, holomorphic=bool(jnp.iscomplexobj(z)))(z))
    g = np.asarray(flat(m.nudge(p, u_star, y)))
    if jnp.iscomplexobj(z):
        return J, g, None, None, unflat, flat
    dl = np.asarray(jax.grad(lambda zz: jnp.sum(m.cost(p, unflat(zz), y)))(z))
    D = np.asarray(jax.vmap(jax.grad(lambda t: jnp.real(m.activation(0, t))))(z))
    return J, g, dl, D, unflat, flat


@pytest.mark.parametrize("asymmetry", [0.0, 0.9])
def test_true_and_rbp_match_dense_solves(x64, asymmetry):
    m, p, b = small_problem(asymmetry)
    t = run(make_estimator("true", **EXACT), m, p, b)
    r = run(make_estimator("rbp", **EXACT), m, p, b)
    assert float(t.residual.max()) < 1e-10
    J, g, dl, D, unflat, flat = dense_setup(m, p, b, t.free_state)
    v = -np.linalg.solve(J, g)  # d_beta u*
    delta = -np.linalg.solve(J.T, dl)  # RBP's delta
    # true reports error = -d sigma(u*)/d beta = -D d_beta u*
    np.testing.assert_allclose(np.asarray(flat(t.error)), -D * v, rtol=1e-5, atol=1e-12 * np.abs(v).max())
    assert tree_rel(flat(t.error), jnp.asarray(-D * v)) < 1e-8
    assert tree_rel(flat(r.error), jnp.asarray(delta)) < 1e-8


def test_true_matches_dense_solve_complex_net(x64):
    """A complex-weight network: u* is complex and J is a complex (non-Hermitian) matrix."""
    m, p, b = small_problem(0.6)
    keys = iter(jax.random.split(jax.random.PRNGKey(7), 64))
    p = jax.tree_util.tree_map(lambda w: w + 0.2j * jax.random.normal(next(keys), w.shape), p)
    x = b.x.astype(jnp.complex128)
    est = make_estimator("true", **EXACT)
    free, drive = jax.jit(est.free_phase, static_argnums=0)(m, p, x)
    e, v_solver, _ = jax.jit(true_activity_derivative, static_argnums=(0, 5))(m, p, drive, b.y, free.state, SolveConfig(1e-12, 10, 60))
    J, g, _, _, unflat, flat = dense_setup(m, p, dynamics.Batch(x, b.y), free.state)
    v = -np.linalg.solve(J, g)
    assert np.abs(v.imag).max() > 1e-3  # genuinely complex
    assert tree_rel(flat(v_solver), jnp.asarray(v)) < 1e-8


def test_symmetric_true_equals_rbp(x64):
    """a = 0: d sigma(u*)/d beta = -delta exactly (push-through identity), so the
    `true` parameter gradient is the exact loss gradient."""
    from holoeb.diagnostics import layer_cosines

    m, p, b = small_problem(0.0)
    t = run(make_estimator("true", **EXACT), m, p, b)
    r = run(make_estimator("rbp", **EXACT), m, p, b)
    assert tree_rel(t.grads, r.grads) < 1e-5
    assert np.all(np.asarray(layer_cosines(t.error, r.error)) > 1 - 1e-6)


def test_asymmetric_true_differs_from_rbp(x64):
    """With asymmetric weights the two error vectors are not aligned (Eq. 10)."""
    m, p, b = small_problem(1.2)
    t = run(make_estimator("true", **EXACT), m, p, b)
    r = run(make_estimator("rbp", **EXACT), m, p, b)
    assert tree_rel(t.grads, r.grads) > 1e-2


def test_rbp_gradient_matches_finite_differences(x64):
    """d/dh L(u*(theta + h d)) by central differences along random directions."""
    m, p, b = small_problem(0.7)
    est = make_estimator("rbp", **EXACT)
    r = run(est, m, p, b)

    @jax.jit
    def loss_fn(params):
        free, _ = est.free_phase(m, params, b.x)
        return dynamics.loss_at(m, params, free.state, b.y)

    loss = lambda params: float(loss_fn(params))

    leaves, treedef = jax.tree_util.tree_flatten(p)
    for seed in range(3):
        ks = jax.random.split(jax.random.PRNGKey(100 + seed), len(leaves))
        d = jax.tree_util.tree_unflatten(treedef, [jax.random.normal(k, l.shape) for k, l in zip(ks, leaves)])
        h = 1e-5
        plus = jax.tree_util.tree_map(lambda a, e: a + h * e, p, d)
        minus = jax.tree_util.tree_map(lambda a, e: a - h * e, p, d)
        fd = (loss(plus) - loss(minus)) / (2 * h)
        an = sum(float(jnp.vdot(g, e)) for g, e in zip(jax.tree_util.tree_leaves(r.grads), jax.tree_util.tree_leaves(d)))
        assert abs(fd - an) <= 1e-6 * max(1.0, abs(fd))


def test_tbp_tends_to_rbp(x64):
    m, p, b = small_problem(0.7)
    r = run(make_estimator("rbp", **EXACT), m, p, b)
    errs = [tree_rel(run(make_estimator("tbp", K=K, T_free=400), m, p, b).grads, r.grads) for K in (2, 8, 60)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-8


@pytest.mark.parametrize("schedule", ["sync", "async", "async_odd_first"])
def test_tbp_error_vector_tends_to_rbp_delta_for_every_schedule(x64, schedule):
    """u = sweep(u) + c has the fixed point of u = Phi(u) + c whatever the layer order, so
    TBP's dL/dc tends to RBP's delta = (I - Phi'^T)^{-1} dL/du in every layer, async too."""
    m, p, b = small_problem(model="hopfield", schedule=schedule)
    r = run(make_estimator("rbp", **EXACT), m, p, b)
    t = run(make_estimator("tbp", K=200, T_free=400), m, p, b)
    for l, (e, d) in enumerate(zip(t.error, r.error)):
        assert float(jnp.linalg.norm(d)) > 1e-3, l  # every layer carries error signal
        assert float(jnp.linalg.norm(e - d) / jnp.linalg.norm(d)) < 1e-8, (schedule, l)
    assert tree_rel(t.grads, r.grads) < 1e-8
