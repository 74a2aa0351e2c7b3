"""The time-resolved gradient check (GDU property, Ernoult et al. 2019): k = K reproduces the
rule's own estimate, EP tracks truncated BP at every k for symmetric weights and small beta
(within O(beta)), and does not for asymmetric weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import small_problem, tree_rel
from holoeb import make_estimator, make_model
from holoeb.errors import ConfigError
from holoeb.solvers import Relaxation
from holoeb.time_resolved import parse_rule, time_resolved_check


@pytest.fixture(autouse=True)
def _float64(x64):  # float64 for every test of this module (conftest's x64 context)
    yield


K = 4  # the 3-layer net's error reaches every layer by k = 3


@pytest.fixture(scope="module")
def symmetric_check():
    with jax.enable_x64(True):  # (a module-scoped fixture cannot use the function-scoped x64 one)
        m, p, batch = small_problem(asymmetry=0.0)
        rules = {"ep-1e-3": make_estimator("ep", beta=1e-3), "ep-1e-2": make_estimator("ep", beta=1e-2),
                 "cauchy": make_estimator("cauchy", beta=0.1, N=4)}
        return m, p, batch, time_resolved_check(m, p, batch, rules, K, Relaxation(400), return_grads=True)


def test_k_equals_K_is_the_rules_own_estimate(symmetric_check):
    """The check restarts each rule from the free state with 0 free iterations; the rule run
    as usual (its own 400-iteration free phase from zero, T_nudge = K) gives the same gradient."""
    m, p, batch, out = symmetric_check
    own = make_estimator("ep", beta=1e-2, T_free=400, T_nudge=K)(m, p, batch, None)
    assert tree_rel(out["ep-1e-2"]["grads"][-1], own.grads) < 1e-10
    tbp = make_estimator("tbp", T_free=400, K=K)(m, p, batch, None)
    assert tree_rel(out["tbp"]["grads"][-1], tbp.grads) < 1e-10


def test_ep_follows_truncated_bp_at_every_k_for_symmetric_weights(symmetric_check):
    """GDU: ||g_EP(k) - g_TBP(k)|| / ||g_TBP(k)|| is O(beta) at every k (first order: x10 with
    beta), while TBP(k) itself is far from RBP at small k and approaches it as k grows; so
    the EP curve approaches RBP along with TBP. Cauchy N=4 (bias O(beta^4)) is closer still."""
    _, _, _, out = symmetric_check
    small, large = np.array(out["ep-1e-3"]["rel_tbp"]), np.array(out["ep-1e-2"]["rel_tbp"])
    assert small.max() < 5e-3, small
    assert np.all((large / small > 5) & (large / small < 20)), large / small
    tbp_to_rbp = np.array(out["tbp"]["rel_rbp"])
    assert tbp_to_rbp[0] > 0.1 and tbp_to_rbp[-1] < 0.5 * tbp_to_rbp[0], tbp_to_rbp  # TBP(k) moves towards RBP
    ep_to_rbp = np.array(out["ep-1e-3"]["rel_rbp"])
    np.testing.assert_allclose(ep_to_rbp, tbp_to_rbp, atol=small.max() + 1e-12)
    assert np.array(out["cauchy"]["rel_tbp"]).max() < 1e-3
    assert min(out["ep-1e-3"]["error_cosine_tbp"][-1]) > 0.999  # neuron-wise too, in every layer


def test_gdu_fails_for_asymmetric_weights():
    """With independent feedback weights the nudged trajectory does not follow TBP's adjoint:
    the relative distance is O(1), not O(beta)."""
    m, p, batch = small_problem(asymmetry=1.0)
    out = time_resolved_check(m, p, batch, {"ep": make_estimator("ep", beta=1e-3)}, 3, Relaxation(400))
    assert max(out["ep"]["rel_tbp"][1:]) > 0.1, out["ep"]["rel_tbp"]


def test_nudge_estimators_on_an_async_model_reach_rbp():
    """On an async dense Hopfield net the generic EP and the true derivative, whose gradients
    are assembled with the synchronous map (phi_full), equal RBP's up to O(beta) (they were
    ~20% off when paired with the async map's theta-Jacobian)."""
    m = make_model("hopfield", in_features=12, hidden=(9, 7), num_classes=5, schedule="async")
    p = jax.tree_util.tree_map(lambda v: v.astype(jnp.float64), m.init(jax.random.PRNGKey(0)))
    batch = (jax.random.normal(jax.random.PRNGKey(1), (4, 12), jnp.float64), jnp.arange(4) % 5)
    rbp = make_estimator("rbp", T_free=400, solve_tol=1e-10)(m, p, batch, None).grads["net"]
    assert tree_rel(make_estimator("true", T_free=400, solve_tol=1e-10)(m, p, batch, None).grads["net"], rbp) < 1e-6
    ep = make_estimator("ep", beta=1e-3, T_free=400, T_nudge=200)(m, p, batch, None).grads["net"]
    assert tree_rel(ep, rbp) < 5e-3


def test_rule_specs_and_estimators_without_time_axis():
    label, est = parse_rule("cauchy:N=6", 0.05)
    assert label == "cauchy-N6" and est.N == 6 and est.beta == 0.05
    assert parse_rule("cl", 0.05)[1].name == "cl"
    with pytest.raises(ConfigError, match="no nudged dynamics"):
        make_estimator("rbp").truncated(3)
    with pytest.raises(ConfigError, match="expected name:key=value"):
        parse_rule("cauchy:N6", 0.05)
