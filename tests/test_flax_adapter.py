"""holoeb.models.flax_adapter: the reciprocal MLP written as a flax module (linen and nnx)
gives the built-in model's estimates, homeostasis and symmetry measure; bad modules are
refused at init with a ConfigError naming the layer."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

from holoeb import homeostasis, make_estimator, make_model
from holoeb.errors import ConfigError
from holoeb.models.base import FixedPointModel
from holoeb.models.flax_adapter import from_flax
from holoeb.solvers import sweep

IN, HIDDEN, C = 12, (8, 6), 3
SIZES = HIDDEN + (C,)
L = len(SIZES)
STATE_SHAPES = tuple((n,) for n in SIZES)


def run_o0(f, *args):
    """jit f and run it on args, compiled without backend optimisation (XLA's CPU backend spends
    seconds optimising these small loop-heavy programs; the numbers are the same)."""
    return jax.jit(f).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


def rel(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    la, lb = [np.asarray(v) for v in la], [np.asarray(v) for v in lb]  # numpy: no x64 scope needed
    num = sum(float(np.sum(np.abs(x - y) ** 2)) for x, y in zip(la, lb))
    den = sum(float(np.sum(np.abs(y) ** 2)) for y in lb)
    return float(np.sqrt(num / den))


# ---- the reciprocal MLP as flax modules: module(s, x) -> new pre-activations ---------------
class LinenMLP(nn.Module):
    sizes: tuple = SIZES

    @nn.compact
    def __call__(self, s, x):
        n = len(self.sizes)
        f64 = dict(param_dtype=jnp.float64)
        out = []
        for l in range(n):
            if l == 0:
                v = nn.Dense(self.sizes[0], name="w_in", **f64)(x)  # its bias is b1
            else:
                v = nn.Dense(self.sizes[l], name=f"wf{l + 1}", use_bias=l == n - 1, **f64)(s[l - 1])
                if l < n - 1:
                    v = v + self.param(f"b{l + 1}", nn.initializers.zeros, (self.sizes[l],), jnp.float64)
            if l < n - 1:
                v = v + nn.Dense(self.sizes[l], name=f"wb{l + 2}", use_bias=False, **f64)(s[l + 1])
            out.append(v)
        return tuple(out)


class NnxMLP(nnx.Module):
    def __init__(self, sizes=SIZES, *, rngs, param_dtype=jnp.float64):
        n = len(sizes)
        f64 = dict(param_dtype=param_dtype, rngs=rngs)
        self.n = n
        self.w_in = nnx.Linear(IN, sizes[0], **f64)
        self.wf = nnx.List([nnx.Linear(sizes[l - 1], sizes[l], use_bias=l == n - 1, **f64) for l in range(1, n)])
        self.wb = nnx.List([nnx.Linear(sizes[l], sizes[l - 1], use_bias=False, **f64) for l in range(1, n)])
        self.b = nnx.List([nnx.Param(jnp.zeros((sizes[l],), param_dtype)) for l in range(1, n - 1)])

    def __call__(self, s, x):
        out = []
        for l in range(self.n):
            v = self.w_in(x) if l == 0 else self.wf[l - 1](s[l - 1])
            if 0 < l < self.n - 1:
                v = v + self.b[l - 1][...]
            if l < self.n - 1:
                v = v + self.wb[l](s[l + 1])
            out.append(v)
        return tuple(out)


def linen_net(net):
    """Built-in ReciprocalMLP parameters -> LinenMLP variables."""
    p = {"w_in": {"kernel": net["w_in"], "bias": net["b1"]}}
    for l in range(1, L):
        p[f"wf{l + 1}"] = {"kernel": net[f"wf{l + 1}"]}
        p[f"wb{l + 1}"] = {"kernel": net[f"wb{l + 1}"]}
        if l < L - 1:
            p[f"b{l + 1}"] = net[f"b{l + 1}"]
    p[f"wf{L}"]["bias"] = net[f"b{L}"]
    return {"params": p}


def linen_to_builtin(v):
    p = v["params"]
    net = {"w_in": p["w_in"]["kernel"], "b1": p["w_in"]["bias"], f"b{L}": p[f"wf{L}"]["bias"]}
    for l in range(1, L):
        net[f"wf{l + 1}"] = p[f"wf{l + 1}"]["kernel"]
        net[f"wb{l + 1}"] = p[f"wb{l + 1}"]["kernel"]
        if l < L - 1:
            net[f"b{l + 1}"] = p[f"b{l + 1}"]
    return net


def nnx_net(template, net):
    """Built-in parameters written into the structure of an nnx pure dict."""
    t = jax.tree_util.tree_map(lambda a: a, template)
    t["w_in"] = {"kernel": net["w_in"], "bias": net["b1"]}
    for l in range(1, L):
        t["wf"][l - 1]["kernel"] = net[f"wf{l + 1}"]
        t["wb"][l - 1]["kernel"] = net[f"wb{l + 1}"]
        if l < L - 1:
            t["b"][l - 1] = net[f"b{l + 1}"]
    t["wf"][L - 2]["bias"] = net[f"b{L}"]
    return t


def nnx_to_builtin(t):
    net = {"w_in": t["w_in"]["kernel"], "b1": t["w_in"]["bias"], f"b{L}": t["wf"][L - 2]["bias"]}
    for l in range(1, L):
        net[f"wf{l + 1}"] = t["wf"][l - 1]["kernel"]
        net[f"wb{l + 1}"] = t["wb"][l - 1]["kernel"]
        if l < L - 1:
            net[f"b{l + 1}"] = t["b"][l - 1]
    return net


def adapt(kind, net=None, **kw):
    """(adapted model, built-in net -> flax params["net"], flax grads -> built-in names). For nnx
    with ``net``, the module instance is built holding those values (structure from an
    abstract nnx.eval_shape: no initialiser runs)."""
    args = dict(input_shape=(IN,), state_shapes=STATE_SHAPES, num_classes=C, activation="shifted_sigmoid")
    args.update(kw)
    if kind == "linen":
        pairs = lambda n: [(f"w{l + 1}", n["params"][f"wf{l + 1}"]["kernel"],  # noqa: E731
                            n["params"][f"wb{l + 1}"]["kernel"].T) for l in range(1, L)]
        return from_flax(LinenMLP(), weight_pairs=pairs, **args), linen_net, linen_to_builtin
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: NnxMLP(rngs=nnx.Rngs(0))))
    template = nnx.to_pure_dict(abstract)
    to_flax = lambda n: nnx_net(template, n)  # noqa: E731
    return from_flax(nnx.merge(graphdef, to_flax(net)), **args), to_flax, nnx_to_builtin


@pytest.fixture(scope="module")
def problem():
    """The built-in float64 MLP with slightly asymmetric weights and a batch."""
    with jax.enable_x64(True):
        ref = make_model("mlp", in_features=IN, hidden=HIDDEN, num_classes=C, asymmetry=0.3, dtype="float64")

        def make(key):
            k_init, k_b, k_x = jax.random.split(key, 3)
            params = ref.init(k_init)
            # non-zero biases so that every bias path is exercised
            for l, k in enumerate(jax.random.split(k_b, L)):
                params["net"][f"b{l + 1}"] = 0.3 * jax.random.normal(k, (SIZES[l],), jnp.float64)
            return params, jax.random.normal(k_x, (4, IN), jnp.float64)

        params, x = run_o0(make, jax.random.PRNGKey(3))
        y = jnp.arange(4, dtype=jnp.int32) % C
    return ref, params, (x, y)


ESTIMATORS = {
    "true": dict(T_free=60, solve_tol=1e-12, solve_maxiter=60),
    "rbp": dict(T_free=60, solve_tol=1e-12, solve_maxiter=60),
    "cauchy": dict(N=4, beta=0.1, T_free=60, T_nudge=40),
}
KINDS = ("linen", "nnx")


@pytest.fixture(scope="module")
def adapted(problem):
    """{kind: (model, params with the built-in values, flax -> built-in name map)}."""
    ref, params, _ = problem
    with jax.enable_x64(True):
        out = {}
        for kind in KINDS:
            model, to_flax, to_builtin = adapt(kind, params["net"])
            out[kind] = (model, {"net": to_flax(params["net"]), "readout": params["readout"]}, to_builtin)
    return out


@pytest.fixture(scope="module")
def estimates(problem, adapted):
    """Every estimator on the built-in model and both adapted ones, in one jit (one compilation:
    the test file stays fast)."""
    ref, params, batch = problem
    models = (ref,) + tuple(adapted[k][0] for k in KINDS)
    ests = tuple(make_estimator(name, **hp) for name, hp in ESTIMATORS.items())

    def run(all_params, batch):
        return [[e(m, p, batch, jax.random.PRNGKey(0)) for e in ests] for m, p in zip(models, all_params)]

    with jax.enable_x64(True):
        res = run_o0(run, (params,) + tuple(adapted[k][1] for k in KINDS), batch)
    return {name: res[0][i] for i, name in enumerate(ESTIMATORS)}, {
        k: {name: res[j + 1][i] for i, name in enumerate(ESTIMATORS)} for j, k in enumerate(KINDS)
    }


@pytest.mark.parametrize("kind", KINDS)
def test_is_a_hashable_model(kind, adapted):
    model = adapted[kind][0]
    assert isinstance(model, FixedPointModel)
    hash(model)
    assert model.num_layers == L and model.input_shape == (IN,) and model.has_activity_coordinates
    with jax.enable_x64(True):
        p = model.init(jax.random.PRNGKey(1))
    assert set(p) == {"net", "readout"} and p["readout"]["w"].shape == (C, C)
    assert all(v.dtype == jnp.float64 for v in jax.tree_util.tree_leaves(p))
    if kind == "linen":  # equal modules, equal adapters: one jit cache entry
        kw = dict(input_shape=(IN,), state_shapes=STATE_SHAPES, num_classes=C)
        assert from_flax(LinenMLP(), **kw) == from_flax(LinenMLP(), **kw)
    else:  # the instance's values are params["net"]
        assert rel(p["net"], adapted[kind][1]["net"]) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_phi_is_the_builtin_map(problem, adapted, kind):
    """Phi, in both coordinates and with the async schedule, on real and complex states (the
    real flax parameters are promoted to the state's complex dtype)."""
    ref, params, (x, _) = problem
    model, fparams, _ = adapted[kind]

    async_model = dataclasses.replace(model, schedule="async")

    def maps(net, fnet, u):
        out = []
        for m, n in ((ref, net), (model, fnet)):
            d = m.drive(n, x)
            out.append((m.phi(n, u, d), m.phi_activity(n, u, d)))
        d = ref.drive(net, x)
        out[0] += (sweep(lambda v, g: ref.phi_layers(net, v, d, g), u, "async"),)
        out[1] += (async_model.phi(fnet, u, async_model.drive(fnet, x)),)
        return out

    with jax.enable_x64(True):
        u = tuple(jax.random.normal(jax.random.PRNGKey(l), (4, n), jnp.float64) for l, n in enumerate(SIZES))
        for state in (u, tuple(v + 0.5j * v[::-1] for v in u)):
            want, got = run_o0(maps, params["net"], fparams["net"], state)
            assert all(g.dtype == state[0].dtype for g in jax.tree_util.tree_leaves(got))
            assert rel(got, want) < 1e-14


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_same_estimates_as_builtin(estimates, adapted, kind, name):
    r_ref, r = estimates[0][name], estimates[1][kind][name]
    to_builtin = adapted[kind][2]
    assert rel(to_builtin(r.grads["net"]), r_ref.grads["net"]) < 1e-8
    assert rel(r.grads["readout"], r_ref.grads["readout"]) < 1e-8
    assert rel(r.error, r_ref.error) < 1e-8
    assert rel(r.free_state, r_ref.free_state) < 1e-10
    np.testing.assert_allclose(float(r.loss), float(r_ref.loss), rtol=1e-10)
    if kind == "linen":  # weight_pairs given: the weight-angle diagnostic matches too
        assert r.aux["weight_angle"].keys() == r_ref.aux["weight_angle"].keys() == {"w2", "w3"}
        for k, v in r_ref.aux["weight_angle"].items():
            np.testing.assert_allclose(float(r.aux["weight_angle"][k]), float(v), rtol=1e-10)


def test_homeostasis_and_symmetry_match_builtin(problem, adapted):
    ref, params, (x, _) = problem
    models = (ref,) + tuple(adapted[k][0] for k in KINDS)
    nets = (params["net"],) + tuple(adapted[k][1]["net"] for k in KINDS)

    def run(nets, u, rng):
        out = []
        for m, n in zip(models, nets):
            for coords in ("pre_activation", "activity"):
                h = homeostasis.homeostatic_loss(m, n, x, u, rng, num_samples=3, coordinates=coords)
                out.append((h,) + tuple(homeostasis.symmetry_measure(m, n, x, u, rng, 3, coords)))
        return out

    with jax.enable_x64(True):
        u = tuple(0.5 * jax.random.normal(jax.random.PRNGKey(l), (4, n), jnp.float64) for l, n in enumerate(SIZES))
        res = np.array(run_o0(run, nets, u, jax.random.PRNGKey(7)))  # (models x coords, 4)
    ref_vals, per_kind = res[:2], res[2:].reshape(len(KINDS), 2, 4)
    assert np.all(np.isfinite(ref_vals)) and np.all(ref_vals[:, 0] > 0)
    for vals in per_kind:
        np.testing.assert_allclose(vals, ref_vals, rtol=1e-9)


class OneArray(nn.Module):
    @nn.compact
    def __call__(self, s, x):
        return nn.Dense(8)(x)


class TwoLayers(nn.Module):
    @nn.compact
    def __call__(self, s, x):
        return nn.Dense(8)(x), nn.Dense(6)(s[0])


class WrongWidth(nn.Module):
    @nn.compact
    def __call__(self, s, x):
        return nn.Dense(8)(x), nn.Dense(5)(s[0]), nn.Dense(3)(s[1])


class NnxWrongWidth(nnx.Module):
    def __init__(self, rngs):
        self.a = nnx.Linear(IN, 8, rngs=rngs)
        self.b = nnx.Linear(8, 6, rngs=rngs)
        self.c = nnx.Linear(6, 4, rngs=rngs)

    def __call__(self, s, x):
        return self.a(x), self.b(s[0]), self.c(s[1])


def test_bad_modules_raise_config_error():
    kw = dict(input_shape=(IN,), state_shapes=STATE_SHAPES, num_classes=C)
    with pytest.raises(ConfigError, match=r"must return a tuple of 3 arrays"):
        from_flax(OneArray(), **kw).init(jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match=r"returned 2 layers, expected 3"):
        from_flax(TwoLayers(), **kw).init(jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match=r"shape \(2, 5\) for layer 1, expected \(2, 6\)"):
        from_flax(WrongWidth(), **kw).init(jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match=r"shape \(2, 4\) for layer 2, expected \(2, 3\)"):
        from_flax(NnxWrongWidth, **kw).init(jax.random.PRNGKey(0))
    with pytest.raises(ConfigError, match="state_shapes\\[-1\\] must be"):
        from_flax(WrongWidth(), input_shape=(IN,), state_shapes=((8,), (6,), (4,)), num_classes=C, readout=False)
    with pytest.raises(ConfigError, match="activation"):
        from_flax(WrongWidth(), activation="nope", **kw)


def test_nnx_factory_follows_seed_and_readout_free_output():
    """A factory rngs -> nnx module is re-built from the init rng; readout=False uses the
    output activity as logits: the nudge is -dL/ds_L, holomorphic (complex states)."""
    model = from_flax(lambda rngs: NnxMLP(rngs=rngs, param_dtype=jnp.float32), input_shape=(IN,),
                      state_shapes=STATE_SHAPES, num_classes=C, readout=False, activation="logistic")
    p0, p1 = model.init(jax.random.PRNGKey(0)), model.init(jax.random.PRNGKey(1))
    assert p0["readout"] == {}
    assert rel(p0["net"]["w_in"]["kernel"], p1["net"]["w_in"]["kernel"]) > 0.1
    y = jnp.arange(3, dtype=jnp.int32)

    def check(p, u, x):
        s_out = model.activation(L - 1, u[-1])
        g = jax.grad(lambda s: jnp.sum(-jax.nn.log_softmax(s)[jnp.arange(3), y]))(s_out)
        uc = tuple(v.astype(jnp.complex64) + 0.1j for v in u)
        cplx = model.nudge(p, uc, y) + model.phi(p["net"], uc, (x,))
        return s_out, g, model.nudge(p, u, y), model.predict(p, u), cplx

    u = tuple(jax.random.normal(jax.random.PRNGKey(l), (3, n)) for l, n in enumerate(SIZES))
    s_out, g, nudge, pred, cplx = run_o0(check, p0, u, jax.random.normal(jax.random.PRNGKey(2), (3, IN)))
    assert rel(nudge[-1], -g) < 1e-5 and all(float(jnp.abs(v).max()) == 0 for v in nudge[:-1])
    assert rel(pred, s_out) == 0
    assert all(v.dtype == jnp.complex64 for v in cplx)
