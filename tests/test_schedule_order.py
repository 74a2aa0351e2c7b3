"""The async schedules: both orders reach the same fixed point of a dense Hopfield net, and
one half-sweep of 'async_odd_first' updates layers k = 1, 3, 5 first."""
import jax
import jax.numpy as jnp
import numpy as np

from holoeb.models import make_model
from holoeb.solvers import Relaxation, layer_groups


def test_odd_first_order_and_same_fixed_point():
    assert layer_groups(5, "async_odd_first") == ((0, 2, 4), (1, 3))
    assert layer_groups(5, "async") == ((1, 3), (0, 2, 4))
    x = jax.random.normal(jax.random.PRNGKey(1), (3, 12))
    states = []
    for schedule in ("async", "async_odd_first", "sync"):
        m = make_model("hopfield", in_features=12, hidden=(9, 7), num_classes=4, schedule=schedule)
        p = m.init(jax.random.PRNGKey(0))
        sol, _ = Relaxation(300).run_model(m, p["net"], x)
        assert float(jnp.max(sol.residual)) < 1e-5
        states.append(sol.state)
    for other in states[1:]:
        for a, b in zip(states[0], other):
            np.testing.assert_allclose(a, b, atol=1e-5)
    # one sweep from zero differs: the first half sees different layers
    m_e = make_model("hopfield", in_features=12, hidden=(9, 7), num_classes=4, schedule="async")
    m_o = make_model("hopfield", in_features=12, hidden=(9, 7), num_classes=4, schedule="async_odd_first")
    p = m_e.init(jax.random.PRNGKey(0))
    one_e = m_e.phi(p["net"], m_e.init_state(x), m_e.drive(p["net"], x))
    one_o = m_o.phi(p["net"], m_o.init_state(x), m_o.drive(p["net"], x))
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(one_e, one_o)) > 1e-3
