"""Alignment of d_beta u* with delta and the first-order asymmetry bias (generalized hEP
paper, Eqs. 10-11, App. C.2, Fig. 2c,d), on small float64 nets with dense Jacobians."""
import math

import jax
import numpy as np
import pytest

from holoeb import alignment
from conftest import small_problem

ANGLES = (0.02, 0.04, 0.08)


def problem(a):
    """Same model object for every angle (the angle only enters the initial params)."""
    m, _, _ = small_problem(0.0, batch=3)
    _, p, b = small_problem(a, batch=3)
    return m, p, b


@pytest.fixture(scope="module")
def checks():
    with jax.enable_x64(True):
        out = {}
        for a in (0.0,) + ANGLES + (0.8,):
            m, p, b = problem(a)
            out[a] = alignment.eq11_check(m, p, b.x, b.y)
            out[a]["cos_mf"] = np.asarray(alignment.make_alignment_fn(m, 300)(p, b.x, b.y)[0])
        return out


def test_eq10_is_exact(checks):
    """d = H^{-1} H^T delta with H = (Phi' - I) D^{-1}: the coordinates of Eq. 10 are right."""
    for a, r in checks.items():
        assert np.max(r["eq10_relerr"]) < 1e-7, (a, r["eq10_relerr"])


def test_symmetric_weights_align_exactly(checks):
    r = checks[0.0]
    assert np.max(r["norm_SinvA"]) < 1e-12
    np.testing.assert_allclose(r["cos0"], 1.0, atol=1e-12)


def test_first_order_beats_zeroth_order(checks):
    """Eq. 11: the zeroth-order error is O(||S^-1 A||), the first-order one O(||S^-1 A||^2)."""
    norms = np.array([checks[a]["norm_SinvA"].mean() for a in ANGLES])
    e0 = np.array([checks[a]["relerr0"].mean() for a in ANGLES])
    e1 = np.array([checks[a]["relerr1"].mean() for a in ANGLES])
    assert np.all(norms < 0.2), norms
    assert np.all(e1 < 0.2 * e0), (e0, e1)
    s0 = np.polyfit(np.log(norms), np.log(e0), 1)[0]
    s1 = np.polyfit(np.log(norms), np.log(e1), 1)[0]
    assert abs(s0 - 1) < 0.3 and abs(s1 - 2) < 0.3, (s0, s1)
    # still an improvement, though no longer small, at a large angle
    r = checks[0.8]
    assert r["relerr1"].mean() < r["relerr0"].mean() and r["cos1"].mean() > r["cos0"].mean()


def test_matrix_free_cosine_matches_dense(checks):
    for a, r in checks.items():
        np.testing.assert_allclose(r["cos_mf"], r["cos0"], atol=1e-8)
    assert checks[0.8]["cos0"].mean() < checks[0.02]["cos0"].mean() < 1.0


def test_kde():
    rng = np.random.default_rng(0)
    s = rng.normal(0.3, 0.1, 2000)
    g = np.linspace(-1, 2, 3001)
    f = alignment.kde(s, g)
    assert np.trapezoid(f, g) == pytest.approx(1.0, abs=1e-3)
    assert abs(g[np.argmax(f)] - 0.3) < 0.03
    assert f.max() == pytest.approx(1 / (0.1 * math.sqrt(2 * math.pi)), rel=0.1)
    with pytest.raises(ValueError):
        alignment.kde([np.nan], g)
