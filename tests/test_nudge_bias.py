"""Finite-nudge bias of ep / cauchy / continuous against `true` (generalized hEP
paper, Eqs. 6-9, App. D.1: the N-point Cauchy rule's leading error is O(|beta|^N))."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import dynamics, make_estimator
from holoeb import make_model
from holoeb.estimators import run_estimator as run
from holoeb.data import load_fashion_mnist, prepare_images
from conftest import small_problem, tree_rel

EXACT = dict(T_free=400, solve_tol=1e-12, solve_maxiter=60)


def bias(m, p, b, name, beta, **hp):
    t = run(make_estimator("true", **EXACT), m, p, b)
    e = run(make_estimator(name, beta=beta, T_free=400, T_nudge=400, **hp), m, p, b)
    return tree_rel(e.error, t.error)


@pytest.mark.parametrize("asymmetry", [0.0, 0.8])
@pytest.mark.parametrize("N", [1, 2, 3, 4, 6])
def test_cauchy_error_order(x64, asymmetry, N):
    """Halving |beta| divides the error by ~2^N."""
    m, p, b = small_problem(asymmetry)
    beta = 0.2
    e1, e2 = bias(m, p, b, "cauchy", beta, N=N), bias(m, p, b, "cauchy", beta / 2, N=N)
    order = np.log2(e1 / e2)
    assert abs(order - N) < 0.35, (e1, e2, order)


def test_ep_error_is_first_order_and_signed(x64):
    m, p, b = small_problem(0.5)
    e1, e2 = bias(m, p, b, "ep", 0.1), bias(m, p, b, "ep", 0.05)
    assert abs(np.log2(e1 / e2) - 1) < 0.2
    # N = 1 Cauchy is classic EP; negative beta is the other one-sided estimate
    c = run(make_estimator("cauchy", N=1, beta=0.1, T_free=400, T_nudge=400), m, p, b)
    ep = run(make_estimator("ep", beta=0.1, T_free=400, T_nudge=400), m, p, b)
    assert tree_rel(c.error, ep.error) < 1e-12
    neg = run(make_estimator("ep", beta=-0.1, T_free=400, T_nudge=400), m, p, b)
    c2 = run(make_estimator("cauchy", N=2, beta=0.1, T_free=400, T_nudge=400), m, p, b)
    mean = jax.tree_util.tree_map(lambda a, c: (a + c) / 2, ep.error, neg.error)
    assert tree_rel(mean, c2.error) < 1e-12  # centered difference = N=2 rule


def test_conjugate_symmetry_gives_the_full_rule(x64):
    m, p, b = small_problem(0.8)
    for N in (3, 5, 6):
        kw = dict(N=N, beta=0.5, T_free=200, T_nudge=200)
        half = run(make_estimator("cauchy", **kw), m, p, b)
        full = run(make_estimator("cauchy", conjugate_symmetry=False, **kw), m, p, b)
        assert tree_rel(half.grads, full.grads) < 1e-12


def test_cauchy_n6_on_fashion_mnist_mlp(x64):
    """2x256 MLP at initialisation, real Fashion-MNIST images: N=6 at |beta|=0.5
    within 1e-3 relative of `true` (the bound |beta|^6/7! = 3e-6 times the 7th
    derivative's scale)."""
    im, lb = load_fashion_mnist("test")
    b = dynamics.Batch(jnp.asarray(prepare_images(im[:4], (784,)), jnp.float64), jnp.asarray(lb[:4]))
    for a in (0.0, 1.0):
        m = make_model("mlp", dtype="float64", asymmetry=a)
        p = m.init(jax.random.PRNGKey(0))
        t = run(make_estimator("true", T_free=200, solve_tol=1e-12, solve_maxiter=60), m, p, b)
        c6 = run(make_estimator("cauchy", N=6, beta=0.5, T_free=200, T_nudge=100), m, p, b)
        c1 = run(make_estimator("ep", beta=0.5, T_free=200, T_nudge=100), m, p, b)
        assert tree_rel(c6.error, t.error) < 1e-3
        assert tree_rel(c6.grads, t.grads) < 1e-3
        assert tree_rel(c1.error, t.error) > 0.05  # classic EP is visibly biased at |beta| = 0.5


def test_continuous_converges_with_periods(x64):
    """Eq. 8: the running average's first-period transient decays like 1/P, towards
    the N-point rule (here with few steps per point, so the transient matters)."""
    m, p, b = small_problem(0.5)
    c4 = run(make_estimator("cauchy", N=4, beta=0.5, T_free=400, T_nudge=400), m, p, b)
    t = run(make_estimator("true", **EXACT), m, p, b)
    errs = []
    for P in (1, 4, 16):
        c = run(make_estimator("continuous", N=4, beta=0.5, periods=P, steps_per_point=12), m, p, b)
        errs.append(tree_rel(c.grads, c4.grads))
    assert errs[0] > 2 * errs[1] > 4 * errs[2] * 0.5
    assert errs[2] < 0.05
    # and the long-run estimate is close to the true derivative at this |beta|
    c = run(make_estimator("continuous", N=4, beta=0.5, periods=16, steps_per_point=60), m, p, b)
    assert tree_rel(c.grads, t.grads) < 2 * tree_rel(c4.grads, t.grads) + 0.02
