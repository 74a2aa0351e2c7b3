"""The seven energy-based rules against the theory (comparative study, Sec. 2.4, App. A;
generalized hEP paper, App. B) on a small dense Hopfield net in float64.

Ground truth is independent of the relaxation code: with the fixed point interior
(no clipping active) the energy is quadratic, E = 1/2 s^T (I - A) s - c^T s, and the
(nudged) equilibrium solves a dense linear system

    (I - A + 2 beta P_out) s_beta = c + 2 beta P_out y,

so C(o(theta), y), F_beta = min_s E + beta C and the loss functions L_beta of
Theorems 2-3 are differentiated with jax.grad through np-style linear solves.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb.estimators import make_estimator
from holoeb.models import make_model
from holoeb.models.base import FixedPointModel

SIZES = (6, 5, 4, 3)  # input, two hidden layers, output
B = 4
LONG = dict(T_free=300, T_nudge=300)  # relaxations converged to float64 round-off


def _setup(interior=True, dtype=jnp.float64):
    model = make_model("hopfield", in_features=SIZES[0], hidden=SIZES[1:-1], num_classes=SIZES[-1], gains=0.4)
    params = jax.tree_util.tree_map(lambda a: a.astype(dtype), model.init(jax.random.PRNGKey(0)))
    if interior:  # biases near 1/2 keep the hidden equilibrium inside (0, 1)
        for k in range(1, len(SIZES) - 1):
            params["net"][f"b{k}"] = params["net"][f"b{k}"] + 0.5
    x = jax.random.uniform(jax.random.PRNGKey(1), (B, SIZES[0]), dtype)
    y = jnp.array([0, 1, 2, 1])
    return model, params, x, y


def run(name, model, params, x, y, **hp):
    """make_estimator(name, **hp)(model, params, (x, y), None), jit-compiled as one program."""
    est = make_estimator(name, **hp)
    return jax.jit(lambda p, xx, yy: est(model, p, (xx, yy), None))(params, x, y)


# ---- independent dense ground truth ---------------------------------------------
def _quadratic_form(net, x):
    """(I - A) and c of E = 1/2 s^T (I - A) s - c^T s for the concatenated state."""
    sizes = SIZES[1:]
    n = sum(sizes)
    offs = np.cumsum((0,) + sizes)
    A = jnp.zeros((n, n), x.dtype)
    for k in range(2, len(sizes) + 1):  # w_k couples layer k-1 (rows) with layer k (cols)
        i, j = offs[k - 2], offs[k - 1]
        w = net[f"w{k}"]
        A = A.at[i : i + w.shape[0], j : j + w.shape[1]].set(w)
        A = A.at[j : j + w.shape[1], i : i + w.shape[0]].set(w.T)
    c = jnp.concatenate([x @ net["w1"] + net["b1"]] + [jnp.broadcast_to(net[f"b{k}"], (x.shape[0], sizes[k - 1]))
                                                          for k in range(2, len(sizes) + 1)], axis=1)
    return jnp.eye(n, dtype=x.dtype) - A, c


def _equilibrium(net, x, y, beta):
    """Per-example minimiser of E + beta ||o - y||^2 by a dense solve; returns (s, F_beta)."""
    H, c = _quadratic_form(net, x)
    n_out = SIZES[-1]
    P = jnp.zeros_like(H).at[-n_out:, -n_out:].set(jnp.eye(n_out))
    Y = jnp.concatenate([jnp.zeros((x.shape[0], H.shape[0] - n_out)), jax.nn.one_hot(y, n_out)], axis=1)
    s = jnp.linalg.solve(H + 2 * beta * P, (c + 2 * beta * Y).T).T
    E = 0.5 * jnp.einsum("bi,ij,bj->b", s, H, s) - jnp.sum(c * s, axis=1)
    C = jnp.sum((s[:, -n_out:] - Y[:, -n_out:]) ** 2, axis=1)
    return s, E + beta * C, C


def true_loss(net, x, y):
    return jnp.mean(_equilibrium(net, x, y, 0.0)[2])


def L_ep(net, x, y, beta):
    """Theorem 2's L_beta = (F_beta - F_0) / beta, per example."""
    return (_equilibrium(net, x, y, beta)[1] - _equilibrium(net, x, y, 0.0)[1]) / beta


def _rel_err(g, ref):
    num = sum(jnp.sum((a - b) ** 2) for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref)))
    den = sum(jnp.sum(b ** 2) for b in jax.tree_util.tree_leaves(ref))
    return float(jnp.sqrt(num / den))


# ---- tests ---------------------------------------------------------------------------
def test_fixed_point_is_interior_and_matches_dense_solve():
    with jax.enable_x64(True):
        model, params, x, y = _setup()
        res = run("c-ep", model, params, x, y, beta=0.1, **LONG)
        s = jnp.concatenate(res.free_state, axis=1)
        s_ref, _, _ = _equilibrium(params["net"], x, y, 0.0)
        np.testing.assert_allclose(s, s_ref, atol=1e-12)
        hidden = s[:, : -SIZES[-1]]
        assert float(hidden.min()) > 0.05 and float(hidden.max()) < 0.95  # no clipping active


def test_ep_bias_orders_against_implicit_gradient():
    """C-EP error is O(beta^2) (Theorem 3), P-EP and N-EP O(beta) (Theorem 2):
    halving beta divides the error by ~4 resp. ~2."""
    with jax.enable_x64(True):
        model, params, x, y = _setup()
        g_true = jax.grad(true_loss)(params["net"], x, y)
        errs = {}
        for rule in ("p-ep", "n-ep", "c-ep"):
            errs[rule] = [
                _rel_err(run(rule, model, params, x, y, beta=b, **LONG).grads["net"], g_true)
                for b in (0.04, 0.02)
            ]
        for rule in ("p-ep", "n-ep"):
            ratio = errs[rule][0] / errs[rule][1]
            assert 1.7 < ratio < 2.3, (rule, errs[rule])
        ratio = errs["c-ep"][0] / errs["c-ep"][1]
        assert 3.4 < ratio < 4.6, errs["c-ep"]
        assert errs["c-ep"][1] < 0.1 * min(errs["p-ep"][1], errs["n-ep"][1])


def test_ep_rules_are_exact_gradients_of_their_loss_functions():
    """Theorems 2-3: P-EP descends L_beta, N-EP L_-beta, C-EP L_{-beta;+beta} exactly."""
    with jax.enable_x64(True):
        model, params, x, y = _setup()
        beta = 0.2
        net = params["net"]
        refs = {
            "p-ep": jax.grad(lambda n: jnp.mean(L_ep(n, x, y, beta)))(net),
            "n-ep": jax.grad(lambda n: jnp.mean(L_ep(n, x, y, -beta)))(net),
            "c-ep": jax.grad(
                lambda n: jnp.mean(_equilibrium(n, x, y, beta)[1] - _equilibrium(n, x, y, -beta)[1]) / (2 * beta)
            )(net),
        }
        for rule, ref in refs.items():
            g = run(rule, model, params, x, y, beta=beta, **LONG).grads["net"]
            assert _rel_err(g, ref) < 1e-9, rule


def test_theorem2_bounds_and_orders():
    """L_beta <= C(o*) <= L_-beta per example; |L_{+-beta} - C| = O(beta), centered O(beta^2)."""
    with jax.enable_x64(True):
        _, params, x, y = _setup()
        net = params["net"]
        C = _equilibrium(net, x, y, 0.0)[2]
        gaps = []
        for beta in (0.04, 0.02, 0.01):
            lo, hi = L_ep(net, x, y, beta), L_ep(net, x, y, -beta)
            assert bool(jnp.all(lo <= C)) and bool(jnp.all(C <= hi)), beta
            gaps.append((float(jnp.max(C - lo)), float(jnp.max(jnp.abs((lo + hi) / 2 - C)))))
        for (one_a, cen_a), (one_b, cen_b) in zip(gaps[:-1], gaps[1:]):
            assert 1.6 < one_a / one_b < 2.4
            assert 3.2 < cen_a / cen_b < 4.8


def test_theorem2_bounds_with_relaxation_and_clipping():
    """The same bounds from the library's own relaxations on a net with clipping active
    (async block-coordinate descent never increases E + beta C)."""
    from holoeb import energy

    model, params, x, y = _setup(interior=False, dtype=jnp.float32)
    net = params["net"]
    drive = model.drive(net, x)
    y1 = jax.nn.one_hot(y, SIZES[-1])
    from holoeb.solvers import relax

    s0 = relax(lambda s: energy.schedule_step(model, net, s, drive), model.init_state(x), 200).state
    assert float(jnp.mean(jnp.concatenate(s0[:-1], 1) == 0)) > 0.1  # clipping is active
    C = energy.squared_error(s0[-1], y1)
    E0 = energy.energy(model, net, x, s0)
    for beta in (0.3, 0.1):
        L = {}
        for b in (beta, -beta):
            upd = energy.nudged_output(y1, b)
            sb = relax(lambda s: energy.schedule_step(model, net, s, drive, upd), s0, 200).state
            L[b] = (energy.energy(model, net, x, sb) + b * energy.squared_error(sb[-1], y1) - E0) / b
        assert bool(jnp.all(L[beta] <= C + 1e-5)) and bool(jnp.all(C <= L[-beta] + 1e-5))


def test_cpl_with_beta_one_is_cl():
    model, params, x, y = _setup(interior=False, dtype=jnp.float32)
    cl = run("cl", model, params, x, y, T_free=80, T_nudge=80)
    cpl = run("p-cpl", model, params, x, y, beta=1.0, T_free=80, T_nudge=80)
    for a, b in zip(jax.tree_util.tree_leaves(cl.grads), jax.tree_util.tree_leaves(cpl.grads)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # and a different beta gives a different update (the test can fail)
    other = run("p-cpl", model, params, x, y, beta=0.5, T_free=80, T_nudge=80)
    assert _rel_err(other.grads["net"], cl.grads["net"]) > 1e-2


def test_rerelax_free_continues_the_free_phase_for_the_beta0_state():
    """rerelax_free (released code): the beta = 0 state of a one-sided rule is K more iterations from s_*, the
    output free for EP (with T_free = t: the free state after t + K iterations) and clamped at the free output
    o_*(t) for CL / CpL (the released code relaxes only the hidden layers in their phases), while the perturbed
    phase still starts at s_*(t)."""
    from holoeb import energy

    model, params, x, y = _setup(interior=False, dtype=jnp.float32)
    t, k = 1, 2  # far from converged, so the two beta = 0 states differ
    longer = run("p-ep", model, params, x, y, T_free=t + k, T_nudge=k).free_state  # s_*(t + K)
    s_t = run("p-ep", model, params, x, y, T_free=t, T_nudge=k).free_state
    held = s_t  # K iterations from s_*(t) with the output held at o_*(t)
    drive = model.drive(params["net"], x)
    for _ in range(k):
        held = energy.schedule_step(model, params["net"], held, drive, energy.clamped_output(s_t[-1]))
    assert _rel_err(held, longer) > 1e-2  # the two beta = 0 states differ here
    for name, beta_b, beta0_state in (("p-ep", 0.25, longer), ("cl", 1.0, held), ("p-cpl", 0.25, held),
                                      ("n-ep", 0.0, longer), ("n-cpl", 0.0, held)):
        plain = run(name, model, params, x, y, T_free=t, T_nudge=k)
        rer = run(name, model, params, x, y, T_free=t, T_nudge=k, rerelax_free=True)
        for a, b in zip(rer.free_state, plain.free_state):
            np.testing.assert_array_equal(a, b)  # s_* itself is unchanged (and is what loss / accuracy see)
        if name.startswith("n-"):  # the network is left at the larger beta, here the re-relaxed beta = 0 state
            for a, b in zip(rer.last_state, beta0_state):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            continue
        want = energy.contrast_grad(model, params["net"], x, beta0_state, 0.0, plain.last_state, beta_b)
        for a, b in zip(jax.tree_util.tree_leaves(rer.grads["net"]), jax.tree_util.tree_leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * float(jnp.abs(b).max()))
        assert _rel_err(rer.grads["net"], plain.grads["net"]) > 1e-2  # the option changes the update here
    # at a converged free phase it changes nothing
    conv = [run("p-ep", model, params, x, y, T_free=300, T_nudge=20, rerelax_free=r).grads["net"] for r in (False, True)]
    assert _rel_err(conv[1], conv[0]) < 1e-4


def test_ep_output_step_has_the_minimisers_fixed_point():
    """ep_output='step' (released code): o <- a - 2 beta c (o - y) per iteration. Iterated at fixed a it
    converges (contraction factor |2 beta c|) to the exact minimiser (a + 2 beta c y) / (1 + 2 beta c) that
    'minimiser' takes at once; so converged phases give the same estimate, K short ones do not."""
    from holoeb import energy
    from holoeb.errors import ConfigError

    with jax.enable_x64(True):
        a = jax.random.normal(jax.random.PRNGKey(3), (B, SIZES[-1]), jnp.float64)
        y1 = jax.nn.one_hot(jnp.array([0, 1, 2, 1]), SIZES[-1], dtype=jnp.float64)
        for beta in (0.25, -0.25):
            step, exact = energy.nudged_output_step(y1, beta, 0.5), energy.nudged_output(y1, beta, 0.5)
            o = jnp.zeros_like(a)
            for _ in range(60):  # |2 beta c| = 0.25: 0.25^60 ~ 1e-36
                o = step(a, o)
            np.testing.assert_allclose(o, exact(a, o), rtol=1e-13, atol=1e-13)
        model, params, x, y = _setup()
        conv = [run("c-ep", model, params, x, y, T_free=300, T_nudge=300, ep_output=e).grads["net"]
                for e in ("minimiser", "step")]
        assert _rel_err(conv[1], conv[0]) < 1e-9
        short = [run("c-ep", model, params, x, y, T_free=300, T_nudge=2, ep_output=e).grads["net"]
                 for e in ("minimiser", "step")]
        assert _rel_err(short[1], short[0]) > 1e-2
    with pytest.raises(ConfigError, match="fixed-point step"):
        energy.nudged_output_step(y1, 1.0, 0.5)


@pytest.mark.parametrize("one_sided,centered", [("p-ep", "c-ep"), ("p-cpl", "c-cpl")])
def test_unfinished_free_phase_enters_the_one_sided_rule_over_beta(one_sided, centered):
    """With the free phase stopped at T iterations, the one-sided rule's K nudged iterations from s_*(T) also
    finish the free relaxation: with G(beta) = dE/dtheta at the state K iterations from s_*(T) under nudge beta,
    g_P = [G(beta) - G_free] / beta, and G(0) != G_free = dE/dtheta(s_*(T)), so the bias from the centered rule,
    b = g_P - g_C with g_C = [G(beta) - G(-beta)] / (2 beta), is [G(0) - G_free] / beta + O(beta). The centered
    rule's two phases drift alike; re-relaxing the beta = 0 state for the same K iterations (rerelax_free) makes
    b = (beta / 2) G''(0) + O(beta^2). So ||b|| grows 10x from beta = 1e-2 to 1e-3 without re-relaxation and
    shrinks 10x with it (to the O(beta) relative corrections, ~1e-2 here)."""
    with jax.enable_x64(True):
        model, params, x, y = _setup()
        hp = dict(T_free=3, T_nudge=5)

        g_c = {beta: run(centered, model, params, x, y, beta=beta, **hp).grads["net"] for beta in (1e-2, 1e-3)}

        def bias_norm(beta, rerelax):
            g_p = run(one_sided, model, params, x, y, beta=beta, rerelax_free=rerelax, **hp).grads["net"]
            diff = jax.tree_util.tree_map(lambda a, b: a - b, g_p, g_c[beta])
            return float(jnp.sqrt(sum(jnp.sum(d ** 2) for d in jax.tree_util.tree_leaves(diff))))

        plain = bias_norm(1e-3, False) / bias_norm(1e-2, False)
        rerelaxed = bias_norm(1e-3, True) / bias_norm(1e-2, True)
    assert 9.5 < plain < 10.5, plain
    assert 0.095 < rerelaxed < 0.105, rerelaxed


class _UntiedHopfield(FixedPointModel):
    """Vector-field form of the dense Hopfield net with separate forward weights wf_k
    (n_{k-1}, n_k) and backward weights wb_k (n_k, n_{k-1}); tied when wb_k = wf_k^T."""

    input_shape = (SIZES[0],)
    num_classes = SIZES[-1]
    num_layers = len(SIZES) - 1

    def init_state(self, x):
        return tuple(jnp.zeros((x.shape[0], n), x.dtype) for n in SIZES[1:])

    def init(self, rng):
        raise NotImplementedError("parameters come from the tied model")

    def drive(self, net, x):
        return (x @ net["w1"],)

    def activation(self, l, u):
        return u

    def phi_layers(self, net, u, drive, layers):
        L = self.num_layers
        out = []
        for k in [l + 1 for l in layers]:
            v = (drive[0] if k == 1 else u[k - 2] @ net[f"wf{k}"]) + net[f"b{k}"]
            if k < L:
                v = v + u[k] @ net[f"wb{k + 1}"]
            out.append(v if k == L else jnp.clip(v, 0.0, 1.0))
        return tuple(out)

    def weight_pairs(self, net):
        return []

    def cost(self, params, u, y):
        return jnp.sum((u[-1] - jax.nn.one_hot(y, SIZES[-1], dtype=u[-1].dtype)) ** 2, axis=1)

    def nudge(self, params, u, y):
        g = -2.0 * (u[-1] - jax.nn.one_hot(y, SIZES[-1], dtype=u[-1].dtype))
        return tuple(jnp.zeros_like(v) for v in u[:-1]) + (g,)

    def predict(self, params, u):
        return u[-1]


def test_energy_form_gradient_is_sum_of_vector_field_gradients():
    """Generalized hEP paper, App. B: dL/dw_ij|EB = dL/dw_ij|VF + dL/dw_ji|VF."""
    with jax.enable_x64(True):
        model, params, x, y = _setup()
        net = params["net"]
        untied = {"w1": net["w1"], **{f"b{k}": net[f"b{k}"] for k in range(1, len(SIZES))}}
        for k in range(2, len(SIZES)):
            untied[f"wf{k}"], untied[f"wb{k}"] = net[f"w{k}"], net[f"w{k}"].T
        vf = run("true", _UntiedHopfield(), {"net": untied, "readout": {}}, x, y, T_free=300,
                 solve_tol=1e-13).grads["net"]
        eb = run("c-ep", model, params, x, y, beta=1e-3, **LONG).grads["net"]
        for k in range(2, len(SIZES)):
            summed = vf[f"wf{k}"] + vf[f"wb{k}"].T
            np.testing.assert_allclose(eb[f"w{k}"], summed, rtol=1e-4, atol=1e-8 * float(jnp.abs(summed).max()))
            assert float(jnp.abs(vf[f"wb{k}"]).max()) > 1e-3 * float(jnp.abs(summed).max())  # both terms matter
        for name in ["w1"] + [f"b{k}" for k in range(1, len(SIZES))]:
            np.testing.assert_allclose(eb[name], vf[name], rtol=1e-4, atol=1e-10)


def test_rule_structure_and_result_interface():
    model, params, x, y = _setup(interior=False, dtype=jnp.float32)
    signs = {"p": (0.0, 0.25), "n": (0.0, -0.25), "c": (-0.25, 0.25)}
    for kind in ("ep", "cpl"):
        for sign, betas in signs.items():
            est = make_estimator(f"{sign}-{kind}", beta=0.25, T_free=20, T_nudge=10)
            assert est.perturbation == kind and est.phase_betas() == betas
    res = run("c-ep", model, params, x, y, T_free=20, T_nudge=10, compare_rbp=True)
    assert jax.tree_util.tree_structure(res.grads) == jax.tree_util.tree_structure(params)
    assert [e.shape for e in res.error] == [(B, n) for n in SIZES[1:]]
    assert res.aux["cosine_rbp"].shape == (len(SIZES) - 1,)
    assert res.residual.shape == (B,) and res.loss.shape == () and 0 <= float(res.accuracy) <= 1


@pytest.mark.parametrize(
    "name,hp,match",
    [
        ("x-ep", {}, "unknown estimator"),
        ("c-ep", {"beta": 0.0}, "beta"),
        ("p-ep", {"beta": -0.1}, "beta"),
        ("c-cpl", {"beta": float("nan")}, "beta"),
        ("cl", {"beta": 0.5}, "no hyper-parameter"),
        ("n-cpl", {"K": 0}, "K"),
        ("c-ep", {"relax_dtype": "int8"}, "relax_dtype"),
        ("cl", {"rerelax_free": 1}, "rerelax_free"),
        ("c-ep", {"ep_output": "exact"}, "ep_output"),
    ],
)
def test_bad_hyperparameters(name, hp, match):
    with pytest.raises(ValueError, match=match):
        make_estimator(name, **hp)


def test_bad_inputs():
    model, params, x, y = _setup(interior=False, dtype=jnp.float32)
    est = make_estimator("c-ep", T_free=5, T_nudge=5)
    with pytest.raises(ValueError, match="input shape"):
        est(model, params, (x[:, :4], y), None)
    with pytest.raises(ValueError, match="labels"):
        est(model, params, (x, y[:2]), None)
    mlp = make_model("mlp", in_features=SIZES[0], hidden=(4,), num_classes=3)
    with pytest.raises(ValueError, match="energy-based model"):
        est(mlp, mlp.init(jax.random.PRNGKey(0)), (x, y), None)
    with pytest.raises(ValueError, match=r"unbounded below.*\|beta\| < 0.5"):  # 1 + 2 beta c <= 0 at c = 1
        make_estimator("n-ep", beta=0.6, T_free=5, T_nudge=5)(model, params, (x, y), None)
    with pytest.raises(ValueError, match="cost_scale"):
        make_model("hopfield", in_features=SIZES[0], hidden=(4,), num_classes=3, cost_scale=0.0)


def test_cost_scale_rescales_every_gradient_exactly():
    """C = c ||o - y||^2: the nudge beta c is what the dynamics see, so EP with (c, beta)
    relaxes to the same states as (1, beta c) and returns c times its estimate; TBP/RBP
    return c times the c = 1 gradient. c = 1/2 is the authors' code (0.5 ||o - y||^2)."""
    with jax.enable_x64(True):
        _check_cost_scale()


def _check_cost_scale():
    model, params, x, y = _setup()
    half = make_model("hopfield", in_features=SIZES[0], hidden=SIZES[1:-1], num_classes=SIZES[-1], gains=0.4,
                      cost_scale=0.5)
    assert half.cost_scale == 0.5 and model.cost_scale == 1.0
    for name in ("c-ep", "n-ep", "p-ep", "rbp", "tbp"):
        hp = dict(T_free=200, T_nudge=100) if "ep" in name else dict(T_free=200, K=100)
        if name == "rbp":
            hp.pop("K")
        g_half = run(name, half, params, x, y, **hp, **({"beta": 0.6} if "ep" in name else {})).grads["net"]
        g_one = run(name, model, params, x, y, **hp, **({"beta": 0.3} if "ep" in name else {})).grads["net"]
        for k in g_one:
            np.testing.assert_allclose(g_half[k], 0.5 * g_one[k], rtol=1e-9, atol=1e-12, err_msg=f"{name} {k}")
    r = run("n-ep", half, params, x, y, T_free=50, T_nudge=50, beta=0.6)  # beta c = 0.3 < 1/2: valid at c = 1/2
    assert np.isfinite(float(r.loss)) and np.isclose(float(r.loss), 0.5 * float(run("rbp", model, params, x, y, T_free=50).loss))


def test_nudge_error_is_rbp_delta_on_active_units():
    """Push-through identity with a saturating activation (comparative study Eq. 98; generalized
    hEP paper Eqs. 4-6): at the free fixed point of s <- sigma(W s + c), J = D W with D = sigma'
    in {0, 1}, and -ds*/dbeta = (I - J)^{-1} dL/ds = D (I - J^T)^{-1} dL/ds = D delta. Checked
    with dense per-example Jacobians and numpy solves on a net where the hard sigmoid clamps
    units: the `true` estimator's error equals D delta, so its per-layer cosine to RBP's delta
    is below 1 on all units (clamped units carry delta but no error) and 1 on the active ones."""
    from holoeb.diagnostics import active_layer_cosines, layer_cosines
    from holoeb.estimators.base import rbp_delta
    from holoeb.linear_solve import SolveConfig
    from holoeb.solvers import Relaxation

    with jax.enable_x64(True):
        model, params, x, y = _setup(interior=False)
        net = params["net"]
        u = Relaxation(400).run_model(model, net, x)[0].state
        mask = model.active_units(u)
        hidden_mask = np.concatenate([np.asarray(m).reshape(B, -1) for m in mask[:-1]], 1)
        assert 0.1 < hidden_mask.mean() < 0.9  # some hidden units clamped, some not
        sizes = [int(np.prod(v.shape[1:])) for v in u]
        e_dense, d_dense = [], []
        for b in range(B):
            ub = tuple(v[b:b + 1] for v in u)
            drive = model.drive(net, x[b:b + 1])
            flat = lambda z: jnp.concatenate([v.reshape(-1) for v in z])

            def unflat(z):
                out, i = [], 0
                for v, n in zip(ub, sizes):
                    out.append(z[i:i + n].reshape(v.shape))
                    i += n
                return tuple(out)

            J = np.asarray(jax.jacfwd(lambda z: flat(model.phi_sync(net, unflat(z), drive)))(flat(ub)))
            g = np.asarray(flat(jax.grad(lambda z: jnp.sum(model.cost(params, unflat(z), y[b:b + 1])))(flat(ub))))
            I = np.eye(len(g))
            e_dense.append(np.linalg.solve(I - J, g))  # -ds*/dbeta: the nudge is -dC/ds
            d_dense.append(np.linalg.solve(I - J.T, g))  # RBP's delta
        e_dense, d_dense = np.stack(e_dense), np.stack(d_dense)
        full_mask = np.concatenate([np.asarray(m).reshape(B, -1) for m in mask], 1)
        np.testing.assert_allclose(e_dense, full_mask * d_dense, atol=1e-12)
        assert np.max(np.abs((1 - full_mask) * d_dense)) > 1e-3  # delta lives on clamped units too

        true = make_estimator("true")
        r = jax.jit(lambda p, xx, yy, u0: true(model, p, (xx, yy), None, u0))(params, x, y, u)
        e_lib = np.concatenate([np.asarray(v).reshape(B, -1) for v in r.error], 1)
        np.testing.assert_allclose(e_lib, e_dense, atol=1e-8)
        delta, _ = rbp_delta(model, params, (x, y), u, SolveConfig(1e-12, 30, 100))
        raw = np.asarray(layer_cosines(r.error, delta))
        active = np.asarray(active_layer_cosines(model, u, r.error, delta))
        assert raw[:-1].min() < 0.99
        np.testing.assert_allclose(active, 1.0, atol=1e-8)
        # the bias sweep's beta-independent reference reports the same split
        from holoeb.bias import reference, reference_summary

        summary = reference_summary(model, reference(model, params, x, y, 400, cfg=SolveConfig(1e-12, 30, 100)))
        assert float(np.min(np.asarray(summary["cos_true_rbp"])[:-1])) < 0.99
        np.testing.assert_allclose(np.asarray(summary["cos_true_rbp_active"]), 1.0, atol=1e-8)


def test_lower_clamp_truncates_one_side_of_the_finite_difference(x64):
    """One hidden unit h = clip(x w1 + b1 + w2 o, 0, 1), output o = w2 h + b2, target 1, cost
    ||o - y||^2. At equilibrium under a nudge beta (q = 2 beta): o = (w2 h + b2 + q y) / (1 + q) and,
    while h is inside (0, 1), h(beta) = [A (1 + q) + w2 q y] / (1 + q - w2^2) with A = x w1 + b1
    (b2 = 0). With the free h just above 0, the -beta phase would take h below 0 and stops it at
    the clamp, the +beta phase moves it freely. dE/db1 = -h, so each rule's b1 gradient is its
    finite difference: P-EP's is the untruncated -(h(beta) - h(0)) / beta, N-EP's is truncated to
    -(h(0) - 0) / beta, a 50x smaller magnitude than the unclamped -(h(0) - h_lin(-beta)) / beta, and
    C-EP averages the two. This one-sided truncation is the drift of
    experiments/study_clamp_bias.py (comparative study, arXiv:2312.15103, Eqs. 5-6)."""
    model = make_model("hopfield", in_features=1, hidden=(1,), num_classes=1, schedule="sync")
    w2, A, beta = 0.5, 0.015, 0.25
    net = {"w1": jnp.array([[1.0]]), "b1": jnp.array([A - 1.0]), "w2": jnp.array([[w2]]), "b2": jnp.array([0.0])}
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                    {"net": net, "readout": model.init(jax.random.PRNGKey(0))["readout"]})
    x, y = jnp.ones((1, 1), jnp.float64), jnp.array([0])  # one-hot target: y = 1

    def h_lin(b):
        q = 2 * b
        return (A * (1 + q) + w2 * q) / (1 + q - w2 ** 2)

    h0, hp, hm = h_lin(0.0), h_lin(beta), h_lin(-beta)
    assert 0 < h0 < 0.05 and 0 < hp < 1 and hm < 0  # free unit near the clamp, -beta crosses it
    expected = {"p-ep": -(hp - h0) / beta, "n-ep": -(h0 - 0.0) / beta, "c-ep": -(hp - 0.0) / (2 * beta)}
    for name, g_b1 in expected.items():
        res = run(name, model, params, x, y, beta=beta, **LONG)
        np.testing.assert_allclose(res.free_state[0], [[h0]], rtol=1e-12)
        np.testing.assert_allclose(res.grads["net"]["b1"], [g_b1], rtol=1e-10)
    # the truncation: N-EP's estimate is 50x smaller than the unclamped difference, P-EP's is not truncated
    assert abs(expected["n-ep"]) < abs(-(h0 - hm) / beta) / 40
    # both one-sided estimates fall short of the exact -dh/dbeta at 0 (1.32 in magnitude), the truncated
    # N-EP one far more: its update direction -g on b1 is 0.08 against P-EP's 0.79 and the exact 1.32
    exact = -(h_lin(1e-6) - h_lin(-1e-6)) / 2e-6
    assert expected["n-ep"] > expected["p-ep"] > exact
    np.testing.assert_allclose([expected["n-ep"], expected["p-ep"], exact], [-0.08, -0.792, -1.32], atol=1e-3)
