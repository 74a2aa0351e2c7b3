"""Every registered estimator on every registered model: it works (finite gradients with
the parameters' structure, error vectors shaped like the state) or it is refused before
any compute with a ModelEstimatorMismatch naming both. A model or estimator added to a
registry joins the matrix automatically (a new model only needs a small size below)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from holoeb import make_estimator, make_model
from holoeb.errors import ConfigError, ModelEstimatorMismatch
from holoeb.estimators import ESTIMATORS, register_estimator, run_estimator
from holoeb.estimators.base import Estimator
from holoeb.models import MODELS, register_model
from holoeb.models.base import EnergyModel, FixedPointModel

# small instances of each registered model (3 classes)
SMALL = {
    "mlp": dict(in_features=12, hidden=(8, 6), num_classes=3),
    "loop_mlp": dict(in_features=12, hidden=(8, 6), num_classes=3),
    "hopfield": dict(in_features=12, hidden=(8,), num_classes=3),
    "dchn": dict(in_channels=1, image_size=8, channels=(2, 3), num_classes=3),
    "asym_conv": dict(in_shape=(8, 8, 1), channels=(2, 3), num_classes=3),
}
ENERGY_RULES = ("cl", "p-ep", "n-ep", "c-ep", "p-cpl", "n-cpl", "c-cpl", "aeqprop")


def required_to_work(model_name, estimator_name):
    """The pairs the library promises: ep/true/rbp/tbp everywhere, cauchy/continuous on
    holomorphic models, the energy-based rules and aeqprop on the energy models."""
    model = make_model(model_name, **SMALL[model_name])
    if estimator_name in ("ep", "true", "rbp", "tbp"):
        return True
    if estimator_name in ("cauchy", "continuous"):
        return model.holomorphic
    if estimator_name in ENERGY_RULES:
        return isinstance(model, EnergyModel)
    return False


def _problem(model_name, batch=4):
    model = make_model(model_name, **SMALL[model_name])
    params = model.init(jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(1), (batch,) + tuple(model.input_shape))
    y = jnp.arange(batch, dtype=jnp.int32) % model.num_classes
    return model, params, (x, y)


def test_every_registered_model_has_a_small_size_and_follows_the_contract():
    assert set(MODELS) <= set(SMALL), f"add a small size for {sorted(set(MODELS) - set(SMALL))} to SMALL"
    for name in MODELS:
        assert isinstance(make_model(name, **SMALL[name]), FixedPointModel)


def test_every_registered_estimator_follows_the_contract():
    """Estimator is an abstract base: a rule without ``estimate`` cannot even be constructed."""
    for name in ESTIMATORS:
        assert issubclass(ESTIMATORS[name], Estimator), name
        make_estimator(name)

    class NoRule(Estimator):
        name = "no-rule"

    with pytest.raises(TypeError, match="estimate"):
        NoRule()


def test_registries_refuse_what_breaks_the_contract():
    """A registered class derives from the registry's contract, and a name names one class."""
    EP, DCHN = ESTIMATORS["ep"], MODELS["dchn"]
    with pytest.raises(ConfigError, match="does not derive from holoeb.estimators.base.Estimator"):
        register_estimator("dchn-as-rule", DCHN)
    with pytest.raises(ConfigError, match="does not derive from holoeb.models.base.FixedPointModel"):
        register_model("ep-as-model", EP)
    with pytest.raises(ConfigError, match="'ep' is taken by holoeb.estimators.ep.EP"):
        register_estimator("ep", ESTIMATORS["rbp"])
    with pytest.raises(ConfigError, match="non-empty string"):
        register_model("", DCHN)
    with pytest.raises(ConfigError, match=r"unknown estimator \['ep'\]; choose one of .*'tbp'"):
        make_estimator(["ep"])  # e.g. a JSON list where a name belongs
    register_estimator("ep", EP)  # the same class under its own name: a no-op
    assert ESTIMATORS["ep"] is EP and "dchn-as-rule" not in ESTIMATORS and "ep-as-model" not in MODELS

    class WiderDCHN(DCHN):
        pass

    register_model("wider-dchn", WiderDCHN)
    try:
        assert isinstance(make_model("wider-dchn", **SMALL["dchn"]), WiderDCHN)
    finally:
        del MODELS["wider-dchn"]


@pytest.mark.parametrize("estimator_name", sorted(ESTIMATORS))
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_pair_works_or_is_refused_clearly(model_name, estimator_name):
    model, params, batch = _problem(model_name)
    est = make_estimator(estimator_name, T_free=8)
    try:
        res = run_estimator(est, model, params, batch, jax.random.PRNGKey(2))
    except ModelEstimatorMismatch as e:
        assert not required_to_work(model_name, estimator_name), f"{estimator_name} on {model_name} must work: {e}"
        msg = str(e)
        assert estimator_name in msg and type(model).__name__ in msg
        return
    assert jax.tree_util.tree_structure(res.grads) == jax.tree_util.tree_structure(params)
    for g, p in zip(jax.tree_util.tree_leaves(res.grads), jax.tree_util.tree_leaves(params)):
        assert g.shape == p.shape and bool(jnp.all(jnp.isfinite(g)))
    # a non-trivial gradient: some parameter moves
    assert sum(float(jnp.sum(jnp.abs(g))) for g in jax.tree_util.tree_leaves(res.grads["net"])) > 0
    state = model.init_state(batch[0])
    assert len(res.error) == len(state) == len(res.free_state)
    for e, s in zip(res.error, state):
        assert e.shape == s.shape
    assert np.isfinite(float(res.loss)) and 0.0 <= float(res.accuracy) <= 1.0


@pytest.mark.parametrize("model_name", [n for n in sorted(SMALL) if n in MODELS])
def test_refusal_happens_before_any_compute(model_name):
    """A refused pair fails at call time, also outside jit, with the holoeb error class."""
    model, params, batch = _problem(model_name)
    for name in sorted(ESTIMATORS):
        if required_to_work(model_name, name):
            continue
        with pytest.raises(ModelEstimatorMismatch):
            make_estimator(name).check_model(model)


@pytest.mark.parametrize("model_name", [n for n in sorted(MODELS) if issubclass(MODELS[n], EnergyModel)])
def test_energy_models_true_derivative_equals_rbp_with_the_sync_map(model_name, x64):
    """For an energy model with the synchronous map, J = D H (D = diag sigma' in {0, 1},
    H the symmetric Hessian of the primitive), so by the push-through identity
    (I - D H)^{-1} D = D (I - H D)^{-1} and D^2 = D the true-nudge gradient equals RBP's
    exactly: the generic estimators run on energy models with the right coordinates."""
    kw = dict(SMALL[model_name], schedule="sync")
    model = make_model(model_name, **kw)
    params = jax.tree_util.tree_map(lambda p: p.astype(jnp.float64), model.init(jax.random.PRNGKey(3)))
    x = jax.random.uniform(jax.random.PRNGKey(4), (3,) + tuple(model.input_shape), jnp.float64)
    y = jnp.arange(3, dtype=jnp.int32) % model.num_classes
    exact = dict(T_free=400, solve_tol=1e-12, solve_maxiter=80)
    t = run_estimator(make_estimator("true", **exact), model, params, (x, y), None)
    r = run_estimator(make_estimator("rbp", **exact), model, params, (x, y), None)
    assert float(jnp.max(t.residual)) < 1e-10
    for a, b in zip(jax.tree_util.tree_leaves(t.grads), jax.tree_util.tree_leaves(r.grads)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-9, rtol=1e-7)
    # the error vectors themselves: true's -ds*/dbeta = D delta, zero where the unit is saturated
    for l, (e, d, m) in enumerate(zip(t.error, r.error, model.active_units(t.free_state))):
        m = np.asarray(m)
        assert m.shape == e.shape and set(np.unique(m)) <= {0.0, 1.0}
        np.testing.assert_allclose(np.asarray(e), m * np.asarray(d), atol=1e-9, err_msg=f"layer {l}")


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_clamped_and_active_units_partition_every_layer(model_name):
    """Every unit is active, at the lower bound or at the upper bound, exactly one of the three; on
    the hard-sigmoid energy models the hidden bounds are s <= 0 and s >= 1 (comparative study Eq. 98)."""
    from holoeb.diagnostics import clamped_fractions, frozen_fractions

    model, _, (x, _) = _problem(model_name)
    u0 = model.init_state(x)
    keys = jax.random.split(jax.random.PRNGKey(3), len(u0))
    u = tuple(jax.random.uniform(k, v.shape, jnp.real(v).dtype, -0.5, 1.5).astype(v.dtype) for k, v in zip(keys, u0))
    u = tuple(v.at[(0,) * v.ndim].set(1.0) for v in u)  # a unit exactly at a bound
    clamped = model.clamped_units(u)
    assert len(clamped) == len(u)
    for l, (m, (lo, hi), v) in enumerate(zip(model.active_units(u), clamped, u)):
        assert lo.shape == hi.shape == v.shape and not jnp.iscomplexobj(lo)
        np.testing.assert_array_equal(np.asarray(m + lo + hi), 1.0, err_msg=f"layer {l}")
        if isinstance(model, EnergyModel) and l < len(u) - 1:
            np.testing.assert_array_equal(np.asarray(lo), np.asarray(jnp.real(v) <= 0))
            np.testing.assert_array_equal(np.asarray(hi), np.asarray(jnp.real(v) >= 1))
            assert 0 < float(jnp.mean(lo)) < 1 and 0 < float(jnp.mean(hi)) < 1
    lower, upper = clamped_fractions(model, u)
    assert lower.shape == upper.shape == (len(u),)
    np.testing.assert_allclose(np.asarray(lower), [float(jnp.mean(lo)) for lo, _ in clamped])

    # frozen: a unit at the same bound for every example. A single example: frozen = lower + upper.
    # Repeating one example B times leaves every fraction unchanged; a second example that moves every
    # clamped unit of the first off its bound (or onto the other one) leaves none frozen.
    one = tuple(v[:1] for v in u)
    lo1, hi1 = clamped_fractions(model, one)
    np.testing.assert_allclose(np.asarray(frozen_fractions(model, one)), np.asarray(lo1 + hi1), rtol=1e-6)
    rep = tuple(jnp.repeat(v, 3, axis=0) for v in one)
    np.testing.assert_allclose(np.asarray(frozen_fractions(model, rep)), np.asarray(lo1 + hi1), rtol=1e-6)
    flipped = tuple(jnp.concatenate([v, 1.0 - v], axis=0) for v in one)  # s <= 0 <-> s >= 1 on the hard sigmoid
    f = np.asarray(frozen_fractions(model, flipped))
    assert f.shape == (len(u),) and np.all(f >= 0) and np.all(f <= np.asarray(lo1 + hi1) + 1e-7)
    if isinstance(model, EnergyModel):
        np.testing.assert_array_equal(f[:-1], 0.0)


@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_active_units_mask_is_shaped_like_the_state(model_name):
    model, params, (x, y) = _problem(model_name)
    u = model.init_state(x)
    masks = model.active_units(u)
    assert len(masks) == len(u)
    for m, v in zip(masks, u):
        assert m.shape == v.shape and not jnp.iscomplexobj(m)
        assert bool(jnp.all((m == 0) | (m == 1)))
