"""Anderson-accelerated relaxation: the same fixed point as the plain iteration, in far
fewer iterations on a slowly contracting linear map (where Anderson with memory m acts like
a Krylov method), for real and complex states, and on the non-smooth DCHN map (hard sigmoid,
max pooling) thanks to its restarts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import make_estimator, make_model
from holoeb.errors import ConfigError
from holoeb.estimators import run_estimator
from holoeb.solvers import Relaxation
from conftest import small_problem


def _linear(complex_rhs, x64):
    rng = np.random.default_rng(0)
    n = 40
    A = rng.normal(size=(n, n))
    A = (A + A.T) / 2
    A *= 0.97 / np.max(np.abs(np.linalg.eigvalsh(A)))  # spectral radius 0.97: slow Picard
    b = rng.normal(size=(3, n)) + (1j * rng.normal(size=(3, n)) if complex_rhs else 0)
    exact = np.linalg.solve(np.eye(n) - A, b.T).T
    return (lambda u: (u[0] @ A + b,)), (jnp.zeros((3, n), b.dtype),), exact


@pytest.mark.parametrize("restart", [True, False])
@pytest.mark.parametrize("complex_rhs", [False, True])
def test_anderson_reaches_the_exact_fixed_point_much_faster(complex_rhs, restart, x64):
    step, u0, exact = _linear(complex_rhs, x64)
    plain = Relaxation(5000, tol=1e-10).run(step, u0)
    fast = Relaxation(5000, tol=1e-10, method="anderson", memory=5, restart=restart).run(step, u0)
    for sol in (plain, fast):
        assert bool(jnp.all(sol.converged))
        np.testing.assert_allclose(np.asarray(sol.state[0]), exact, atol=1e-8)
    # Picard needs ~ log(tol)/log(0.97) ~ 750 iterations; Anderson(5) a small multiple of sqrt of that
    assert int(plain.steps) > 500 and int(fast.steps) < int(plain.steps) / 4


def test_anderson_without_tolerance_runs_max_steps(x64):
    """No tolerance: exactly max_steps accelerated iterations, like the plain iteration's fixed count."""
    step, u0, exact = _linear(False, x64)
    for k in (0, 1, 60):
        sol = Relaxation(k, method="anderson").run(step, u0)
        assert int(sol.steps) == k
    plain = Relaxation(60).run(step, u0)
    fast = Relaxation(60, method="anderson").run(step, u0)
    err = lambda s: float(np.max(np.abs(np.asarray(s.state[0]) - exact)))
    assert err(fast) < 1e-4 and err(plain) > 1e-2


def test_anderson_free_phase_gives_the_same_estimates(x64):
    m, p, b = small_problem(asymmetry=0.5)
    ref = run_estimator(make_estimator("cauchy", N=4, beta=0.2, T_free=2000, free_tol=1e-12,
                                       T_nudge=2000, nudge_tol=1e-12), m, p, b)
    acc = run_estimator(make_estimator("cauchy", N=4, beta=0.2, T_free=2000, free_tol=1e-12, free_method="anderson",
                                       T_nudge=2000, nudge_tol=1e-12, nudge_method="anderson"), m, p, b)
    for a, r in zip(jax.tree_util.tree_leaves(acc.grads), jax.tree_util.tree_leaves(ref.grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-7, atol=1e-10)


def test_restarts_make_anderson_converge_on_the_non_smooth_dchn_map(x64):
    """The DCHN's fixed-point map is only piecewise smooth (hard-sigmoid clamps, max-pooling
    switches). On this example plain Anderson stalls at a residual ~0.3 and the plain iteration
    needs ~160 iterations; restarting the memory when the residual grows reaches a fixed point in
    ~45. The DCHN's energy has many equilibria, and this one differs from the plain iteration's
    (Anderson is a solver, not the physical trajectory), so the check is that it is one: a plain
    sweep from it moves it by less than the tolerance."""
    m = make_model("dchn", in_channels=1, image_size=16, channels=(8, 16, 16), gains=1.5)
    p = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), m.init(jax.random.PRNGKey(3)))
    x = jax.random.uniform(jax.random.PRNGKey(103), (8, 16, 16, 1), jnp.float64)[:1]
    plain = Relaxation(1000, tol=1e-8).run_model(m, p["net"], x)[0]
    stalled = Relaxation(300, tol=1e-8, method="anderson", restart=False).run_model(m, p["net"], x)[0]
    fast = Relaxation(300, tol=1e-8, method="anderson").run_model(m, p["net"], x)[0]
    assert bool(jnp.all(plain.converged)) and int(plain.steps) > 120
    assert float(jnp.max(stalled.residual)) > 1e-3
    assert bool(jnp.all(fast.converged)) and int(fast.steps) < int(plain.steps) / 2
    swept = Relaxation(1).run_model(m, p["net"], x, fast.state)[0].state
    moved = np.sqrt(sum(float(jnp.sum((a - b) ** 2)) for a, b in zip(swept, fast.state)))
    assert moved <= 1e-8


def test_bad_relaxation_settings_are_named():
    with pytest.raises(ConfigError, match="unknown relaxation method 'newton'"):
        Relaxation(10, method="newton")
    with pytest.raises(ConfigError, match="memory must be an integer >= 1"):
        Relaxation(10, method="anderson", memory=0)
    with pytest.raises(ConfigError, match="restart must be True or False"):
        Relaxation(10, method="anderson", restart=1)
