"""Anderson-accelerated relaxation: the same fixed point as the plain iteration, in far
fewer iterations on a slowly contracting linear map (where Anderson with memory m acts like
a Krylov method), for real and complex states."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import make_estimator
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


@pytest.mark.parametrize("complex_rhs", [False, True])
def test_anderson_reaches_the_exact_fixed_point_much_faster(complex_rhs, x64):
    step, u0, exact = _linear(complex_rhs, x64)
    plain = Relaxation(5000, tol=1e-10).run(step, u0)
    fast = Relaxation(5000, tol=1e-10, method="anderson", memory=5).run(step, u0)
    for sol in (plain, fast):
        assert bool(jnp.all(sol.converged))
        np.testing.assert_allclose(np.asarray(sol.state[0]), exact, atol=1e-8)
    # Picard needs ~ log(tol)/log(0.97) ~ 750 iterations; Anderson(5) a small multiple of sqrt of that
    assert int(plain.steps) > 500 and int(fast.steps) < int(plain.steps) / 4


def test_anderson_free_phase_gives_the_same_estimates(x64):
    m, p, b = small_problem(asymmetry=0.5)
    ref = run_estimator(make_estimator("cauchy", N=4, beta=0.2, T_free=2000, free_tol=1e-12,
                                       T_nudge=2000, nudge_tol=1e-12), m, p, b)
    acc = run_estimator(make_estimator("cauchy", N=4, beta=0.2, T_free=2000, free_tol=1e-12, free_method="anderson",
                                       T_nudge=2000, nudge_tol=1e-12, nudge_method="anderson"), m, p, b)
    for a, r in zip(jax.tree_util.tree_leaves(acc.grads), jax.tree_util.tree_leaves(ref.grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(r), rtol=1e-7, atol=1e-10)


def test_bad_relaxation_settings_are_named():
    with pytest.raises(ConfigError, match="unknown relaxation method 'newton'"):
        Relaxation(10, method="newton")
    with pytest.raises(ConfigError, match="memory must be an integer >= 1"):
        Relaxation(10, method="anderson", memory=0)
