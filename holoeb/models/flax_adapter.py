"""Adapter: a user's flax module (linen or nnx) computing Phi becomes a holoeb model.

    model = from_flax(MyPhi(), input_shape=(784,), state_shapes=((256,), (256,), (10,)),
                      num_classes=10)
    params = model.init(jax.random.PRNGKey(0))          # {"net": flax variables, "readout": ...}
    result = make_estimator("cauchy", N=4)(model, params, (x, y), rng)

The returned object is a `holoeb.models.base.FixedPointModel` (a frozen, hashable
dataclass), so every estimator (ep, cauchy, continuous, true, rbp, tbp, ...),
homeostasis and the diagnostics run on it unchanged.

What the module computes. The model state is u = (u_1, ..., u_L), per-layer
*pre-activations* (batch first, per-example shapes ``state_shapes``). The module is
called on the layer *activities* and the input,

    module(s, x) -> (u_1', ..., u_L'),     s = (sigma_1(u_1), ..., sigma_L(u_L)),

and returns the new pre-activation of every layer, i.e. the fixed-point map
written in activity coordinates (for the reciprocal MLP,
u_l' = sigma(u_{l-1}) W^f_l + sigma(u_{l+1}) W^b_{l+1} + b_l). The activation
sigma is the adapter's ``activation`` (a holoeb activation name, a callable, or a
tuple of one per layer); with ``activation="identity"`` the state is whatever the
module iterates and the module applies any nonlinearity itself. Because the
module sees the activities, the adapted model has activity coordinates
(``phi_activity`` is the module itself): homeostasis' default coordinates work.

Holomorphy. The Cauchy and continuous-time estimators relax complex states while
the parameters stay real. flax's Dense/Linear/Conv promote a real kernel to the
input's complex dtype and compute complex products, which is correct (the
parameter gradients are taken at the real free state); it is a complex-by-complex
matmul, about 2x the work of `holoeb.holomorphic.matmul` (which a module may
call directly on its own ``self.param``). Use only holomorphic operations on s
(no ``abs``, ``real``, ``clip``, ``relu``...) or pass ``holomorphic=False``.
"""
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from holoeb import holomorphic as _holo
from holoeb import readout as _readout
from holoeb.activations import get_activation
from holoeb.errors import ConfigError
from holoeb.models.base import FixedPointModel
from holoeb.solvers import check_schedule

_CHECK_BATCH = 2  # batch size of the dummy inputs used to initialise and check a module


def _shape_tuple(shape, what):
    try:
        out = tuple(int(d) for d in shape)
    except TypeError:
        raise ConfigError(f"{what} must be a tuple of ints, got {shape!r}") from None
    if any(d < 1 for d in out):
        raise ConfigError(f"{what} must have positive dimensions, got {out}")
    return out


def _check_activation(spec, num_layers):
    specs = spec if isinstance(spec, tuple) else (spec,)
    if isinstance(spec, tuple) and len(spec) != num_layers:
        raise ConfigError(f"activation tuple has {len(spec)} entries, the model has {num_layers} layers")
    for a in specs:
        if isinstance(a, str):
            try:
                get_activation(a)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        elif not callable(a):
            raise ConfigError(f"activation must be a holoeb activation name or a callable, got {a!r}")


def _dtype(leaf):
    # arrays, tracers and the ShapeDtypeStructs of eval_shape all carry .dtype; a Python scalar does not
    return leaf.dtype if hasattr(leaf, "dtype") else jnp.asarray(leaf).dtype


def _check_real_floating(tree, who):
    """Every leaf must be a real floating array: they are differentiated and trained."""
    bad = [
        (jax.tree_util.keystr(path), _dtype(leaf))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        if not jnp.issubdtype(_dtype(leaf), jnp.floating)
    ]
    if bad:
        listed = ", ".join(f"{p} ({d})" for p, d in bad[:5])
        raise ConfigError(
            f"{who} holds non-real-floating variables {listed}: every variable of the module is a "
            "trained parameter of Phi, which must be a deterministic function of real floating "
            "parameters (no RNG streams, counters or complex parameters)"
        )


def _cast_floating(tree, dtype):
    return jax.tree_util.tree_map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, tree)


@dataclasses.dataclass(frozen=True, eq=False)
class _Static:
    """Identity-hashed holder for a static object that is not (usefully) hashable: an nnx
    module instance or factory, or a module whose __hash__ fails."""

    value: Any


@dataclasses.dataclass(frozen=True)
class FlaxModel(FixedPointModel):
    """A fixed-point model whose Phi is a flax module; build it with `from_flax`.

    Fields: ``module`` (the linen module, or the nnx GraphDef), ``kind`` ('linen' |
    'nnx'), ``nnx_source`` (nnx only: the module instance or the factory,
    identity-hashed), and the `from_flax` arguments."""

    module: Any = None
    kind: str = "linen"
    nnx_source: Any = None
    input_shape: tuple = ()
    state_shapes: tuple = ()
    num_classes: int = 0
    activation_spec: Any = "shifted_sigmoid"
    use_readout: bool = True
    schedule: str = "sync"
    holomorphic: bool = True
    dtype: Any = None
    pairs_fn: Any = None

    @property
    def module_name(self):
        """The user's module class name."""
        if self.kind == "linen":
            return type(self._module).__name__
        nodes = getattr(self._module, "nodes", None)
        return getattr(nodes[0].type, "__name__", str(nodes[0].type)) if nodes else "nnx module"

    def __repr__(self):
        return (
            f"FlaxModel({self.kind} {self.module_name}, input_shape={self.input_shape}, "
            f"state_shapes={self.state_shapes}, "
            f"num_classes={self.num_classes}, activation={self.activation_spec!r}, readout={self.use_readout}, "
            f"schedule={self.schedule!r}, holomorphic={self.holomorphic}, dtype={self.dtype})"
        )

    # ---- shapes ---------------------------------------------------------------
    @property
    def num_layers(self):
        return len(self.state_shapes)

    # ---- the user's module --------------------------------------------------------
    def _initial_values(self, rng, values):
        """Parameters from the module's initialisers, or from ``values`` (an nnx instance's)."""
        k_net, k_ro = jax.random.split(rng)
        if values is not None:
            net = values
        elif self.kind == "linen":
            from flax.core import unfreeze

            dt = jnp.dtype(self.dtype or "float32")
            s = tuple(jnp.zeros((_CHECK_BATCH,) + sh, dt) for sh in self.state_shapes)
            x = jnp.zeros((_CHECK_BATCH,) + self.input_shape, dt)
            net = unfreeze(self._module.init(k_net, s, x))  # plain dicts, not FrozenDict
        else:
            from flax import nnx

            net = nnx.to_pure_dict(nnx.split(self.nnx_source.value(nnx.Rngs(k_net)))[1])
        if self.dtype is not None:
            net = _cast_floating(net, jnp.dtype(self.dtype))
        if not self.use_readout:
            return {"net": net, "readout": {}}
        leaves = jax.tree_util.tree_leaves(net)
        dt = jnp.dtype(self.dtype) if self.dtype is not None else (jnp.result_type(*leaves) if leaves else jnp.float32)
        return {"net": net, "readout": _readout.init(k_ro, math.prod(self.state_shapes[-1]), self.num_classes, dt)}

    @property
    def _module(self):
        return self.module.value if isinstance(self.module, _Static) else self.module

    @property
    def _initialises(self):
        """Whether ``init`` runs initialisers (linen, nnx factory) rather than reading an
        nnx instance's values; they then run in one cached compilation, not op by op."""
        if self.kind == "linen":
            return True
        from flax import nnx

        return not isinstance(self.nnx_source.value, nnx.Module)

    def check_module(self, net):
        """Raise a ConfigError unless the module maps a state and an input of the declared
        shapes to one array per layer of the layer's shape (checked abstractly)."""
        name = f"{self.kind} module {self.module_name}"
        _check_real_floating(net, name)
        leaves = [_dtype(p) for p in jax.tree_util.tree_leaves(net)]
        dt = jnp.result_type(*leaves) if leaves else jnp.dtype(self.dtype or "float32")
        s = tuple(jax.ShapeDtypeStruct((_CHECK_BATCH,) + sh, dt) for sh in self.state_shapes)
        x = jax.ShapeDtypeStruct((_CHECK_BATCH,) + self.input_shape, dt)
        try:
            out = jax.eval_shape(lambda n, s_, x_: self.apply_module(n, s_, x_), net, s, x)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001  (report what the user's module raised)
            raise ConfigError(
                f"{name} failed on activities of shapes {[tuple(v.shape) for v in s]} and input "
                f"{tuple(x.shape)}: {type(e).__name__}: {e}"
            ) from e
        for l, (o, sh) in enumerate(zip(out, self.state_shapes)):
            want = (_CHECK_BATCH,) + sh
            if tuple(o.shape) != want:
                raise ConfigError(
                    f"{name} returned shape {tuple(o.shape)} for layer {l}, expected {want} "
                    f"(batch {_CHECK_BATCH} x state_shapes[{l}] = {sh})"
                )

    def apply_module(self, net, s, x):
        """The module's output on activities s and input x, checked to be a tuple (or list)
        of one entry per layer."""
        if self.kind == "linen":
            out = self._module.apply(net, tuple(s), x)
        else:
            from flax import nnx

            out = nnx.merge(self._module, net)(tuple(s), x)
        if not isinstance(out, (tuple, list)):
            raise ConfigError(
                f"{self.kind} module {self.module_name} must return a tuple of {self.num_layers} arrays "
                f"(one per layer), got {type(out).__name__}"
            )
        if len(out) != self.num_layers:
            raise ConfigError(
                f"{self.kind} module {self.module_name} returned {len(out)} layers, expected {self.num_layers} "
                f"(state_shapes = {self.state_shapes})"
            )
        return tuple(out)

    # ---- parameters and state ---------------------------------------------------
    def init(self, rng):
        """{"net": the module's variables (a plain nested dict), "readout": ...}.

        linen: ``module.init`` on dummy inputs of the declared shapes. nnx: the module
        instance's current values (``rng`` then only seeds the readout), or, for a
        factory, the module ``factory(nnx.Rngs(rng))`` builds."""
        values = None
        if self.kind == "nnx" and not self._initialises:
            from flax import nnx

            values = nnx.to_pure_dict(nnx.split(self.nnx_source.value)[1])
        try:
            # shapes first (traced only, nothing compiled): a bad module fails fast
            self.check_module(jax.eval_shape(lambda k: self._initial_values(k, values)["net"], rng))
            # one cached compilation (per model) rather than op-by-op initialisers
            params = _jit_init(self, rng, values)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001  (report what the user's module raised)
            shapes = [(_CHECK_BATCH,) + sh for sh in self.state_shapes]
            raise ConfigError(
                f"initialising {self.kind} module {self.module_name} on dummy activities of shapes {shapes} "
                f"and an input of shape {(_CHECK_BATCH,) + self.input_shape} failed: {type(e).__name__}: {e}"
            ) from e
        return params

    def init_state(self, x):
        return tuple(jnp.zeros((x.shape[0],) + sh, x.dtype) for sh in self.state_shapes)

    # ---- dynamics ---------------------------------------------------------------
    def drive(self, net, x):
        """(x,): the module recomputes its input term at every evaluation of Phi."""
        return (x,)

    def activation(self, layer, u):
        spec = self.activation_spec[layer] if isinstance(self.activation_spec, tuple) else self.activation_spec
        fn = get_activation(spec) if isinstance(spec, str) else spec
        return fn(u)

    def phi_layers(self, net, u, drive, layers):
        """The module evaluated in full, restricted to ``layers`` (an async half-sweep costs
        one full evaluation)."""
        out = self.apply_module(net, self.activities(u), drive[0])
        return tuple(out[l] for l in layers)

    has_activity_coordinates = True

    def phi_activity(self, net, s, drive):
        return self.apply_module(net, s, drive[0])

    # ---- readout ------------------------------------------------------------------
    def cost(self, params, u, y):
        if self.use_readout:
            return super().cost(params, u, y)
        lp = _holo.log_softmax(self.output_features(u))
        return -jnp.take_along_axis(lp, y[:, None], axis=-1)[:, 0]

    def nudge(self, params, u, y):
        if self.use_readout:
            return super().nudge(params, u, y)
        s = self.output_features(u)
        g = _readout.one_hot(y, s.shape[-1], s.dtype) - _holo.softmax(s)
        return tuple(jnp.zeros_like(v) for v in u[:-1]) + (g.reshape(u[-1].shape).astype(u[-1].dtype),)

    def predict(self, params, u):
        if self.use_readout:
            return super().predict(params, u)
        return self.output_features(u)

    # ---- diagnostics ----------------------------------------------------------------
    def weight_pairs(self, net):
        return list(self.pairs_fn(net)) if self.pairs_fn is not None else []


_jit_init = jax.jit(lambda model, rng, values: model._initial_values(rng, values), static_argnums=0)


def _hashable(obj):
    try:
        hash(obj)
        return obj
    except Exception:  # noqa: BLE001  (e.g. a linen module with an array field)
        return _Static(obj)


def from_flax(
    module,
    *,
    input_shape,
    state_shapes,
    num_classes,
    activation="shifted_sigmoid",
    readout=True,
    schedule="sync",
    holomorphic=True,
    dtype=None,
    weight_pairs=None,
):
    """Wrap a flax module computing Phi as a holoeb `FixedPointModel`.

    module: the fixed-point map in activity coordinates, ``module(s, x) -> tuple of L
      new pre-activations`` with s = (sigma_1(u_1), ..., sigma_L(u_L)) a tuple of
      (B, *state_shapes[l]) arrays and x of shape (B, *input_shape). One of
      - a flax linen ``nn.Module`` (initialised by ``init(rng)`` with ``module.init``);
      - an nnx ``nnx.Module`` instance: split once (``nnx.split``) into its GraphDef,
        kept static in the model, and its values, which ``init(rng)`` returns as
        ``params["net"]`` (a plain nested dict, ``nnx.to_pure_dict``); ``rng`` then
        seeds only the readout, so every init gives the same network;
      - a factory ``f(rngs: nnx.Rngs) -> nnx.Module``: ``init(rng)`` builds
        ``f(nnx.Rngs(rng))``, so the network follows the seed.
      Every variable of the module is a trained parameter: it must be real floating
      (no RNG streams, batch statistics or counters -- Phi is deterministic).
    input_shape: per-example input shape. state_shapes: per-example shape of each
      layer, the last one the output layer. num_classes: number of classes.
    activation: sigma applied to each layer's pre-activation to give the activities
      the module, the readout and the nudge see -- a `holoeb.activations` name, a
      callable (holomorphic for complex estimators), or a tuple of one per layer.
    readout: True: the cross-entropy readout on the flattened output activity
      (params["readout"], see holoeb.readout); False: the output activity itself
      is the logit vector (state_shapes[-1] must be (num_classes,)); params["readout"]
      is {}.
    schedule: 'sync' | 'async'. The module computes every layer at once, so an
      'async' half-sweep evaluates the whole module and keeps the half it updates
      (twice the cost of a sync sweep).
    holomorphic: whether the module is holomorphic in s (complex nudges allowed).
    dtype: if given, floating parameters are cast to it at init, and the readout is
      made in it; None keeps the module's parameter dtype (flax's default float32).
    weight_pairs: optional ``f(net) -> [(name, W^f, (W^b)^T-shaped)]`` for the
      weight-angle diagnostic (default: none).

    The input term is recomputed at every evaluation of Phi (the model's ``drive``
    is just (x,)). The returned model is a frozen dataclass, hashable (a static jit
    argument): a linen module hashes by its fields, an nnx GraphDef by its
    structure; an unhashable module, the nnx instance and a factory are held by
    identity (two adapters of the same nnx instance are different static arguments). ``init`` checks the module on
    dummy inputs and raises ConfigError naming the layer if it returns the wrong
    number of layers or a wrong shape.
    """
    from flax import linen as nn
    from flax import nnx

    input_shape = _shape_tuple(input_shape, "input_shape")
    if not isinstance(state_shapes, (tuple, list)) or not state_shapes:
        raise ConfigError(f"state_shapes must be a non-empty tuple of per-layer shapes, got {state_shapes!r}")
    state_shapes = tuple(_shape_tuple(sh, f"state_shapes[{l}]") for l, sh in enumerate(state_shapes))
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)
    if isinstance(activation, list):
        activation = tuple(activation)
    _check_activation(activation, len(state_shapes))
    check_schedule(schedule)
    if not readout and state_shapes[-1] != (num_classes,):
        raise ConfigError(
            f"readout=False uses the output activity as logits: state_shapes[-1] must be ({num_classes},), "
            f"got {state_shapes[-1]}"
        )
    if dtype is not None:
        dtype = jnp.dtype(dtype).name
        if not jnp.issubdtype(jnp.dtype(dtype), jnp.floating):
            raise ConfigError(f"dtype must be a real floating dtype, got {dtype}")

    if isinstance(module, nn.Module):
        kind, static, source = "linen", _hashable(module), None
    elif isinstance(module, nnx.Module):
        kind, source = "nnx", module
        static = nnx.split(module)[0]
    elif callable(module):
        try:  # abstract: shapes only, no initialiser runs
            built = nnx.eval_shape(lambda: module(nnx.Rngs(0)))
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"the nnx module factory {module!r} failed: {type(e).__name__}: {e}") from e
        if not isinstance(built, nnx.Module):
            raise ConfigError(
                f"from_flax takes a linen Module, an nnx Module or a factory rngs -> nnx Module; "
                f"the callable {module!r} returned {type(built).__name__}"
            )
        kind, source = "nnx", module
        static = nnx.split(built)[0]
    else:
        raise ConfigError(f"from_flax takes a flax linen or nnx module, got {type(module).__name__}")
    if kind == "nnx":
        static = _hashable(static)
    model = FlaxModel(
        module=static,
        kind=kind,
        nnx_source=_Static(source) if source is not None else None,
        input_shape=input_shape,
        state_shapes=state_shapes,
        num_classes=num_classes,
        activation_spec=activation,
        use_readout=bool(readout),
        schedule=schedule,
        holomorphic=bool(holomorphic),
        dtype=dtype,
        pairs_fn=weight_pairs,
    )
    return model


__all__ = ["from_flax"]
