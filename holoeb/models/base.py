"""The one model contract: a fixed-point map over a layered state.

A model is a frozen (hashable) dataclass deriving from `FixedPointModel`. Its
state u = (u_1, ..., u_L) is a tuple of arrays, batch first, one per layer, and
its free dynamics is the fixed-point map (generalized hEP paper, Eq. 1 and App. D.2)

    u <- Phi(theta, u, x),       nudged:  u <- Phi(theta, u, x) + beta * nudge(u, y),

with beta real or (for holomorphic models) complex. A model defines, per layer,

    phi_layers(net, u, drive, layers) -> the new values of ``layers`` computed from u,

and Phi is one iteration of the model's ``schedule`` built from it (holoeb.solvers:
'sync' updates every layer from the same state, 'async' the even paper layers
first, then the odd ones from the refreshed even layers). Every estimator,
homeostasis and the diagnostics use only the methods declared here.

Abstract (each model writes them): ``input_shape``, ``num_layers``, ``num_classes``,
``init``, ``init_state``, ``drive``, ``phi_layers``, ``activation``.
Provided (a model may refine them): ``phi``, ``activities``, ``cost``, ``nudge``,
``predict`` (a parameterized cross-entropy readout on the output activity, see
holoeb.readout), ``weight_pairs`` (none), ``active_units`` (all), ``check_batch``, and the activity-coordinate
map ``phi_activity`` used by homeostasis when ``has_activity_coordinates``.

Class-level capabilities:
  holomorphic  Phi is holomorphic in u (complex states and nudges are meaningful:
               the Cauchy and continuous-time estimators need it).
The energy-based refinement is `EnergyModel` (functions in holoeb.energy).
"""
import abc

import jax.numpy as jnp

from holoeb import energy, readout
from holoeb.errors import ConfigError, ModelEstimatorMismatch
from holoeb.solvers import sweep


class FixedPointModel(abc.ABC):
    """Abstract fixed-point model (see the module docstring)."""

    schedule = "sync"  # iteration schedule of Phi: 'sync' | 'async'
    holomorphic = True  # Phi is holomorphic in the state
    asymmetry = None  # initial forward/backward weight angle (radians) for models that have one

    # ---- shapes ---------------------------------------------------------------
    @property
    @abc.abstractmethod
    def input_shape(self):
        """Per-example input shape, e.g. (784,) or (32, 32, 3)."""

    @property
    @abc.abstractmethod
    def num_layers(self):
        """Number L of state layers (the last one is the output layer)."""

    @property
    @abc.abstractmethod
    def num_classes(self):
        """Number of classes scored by ``predict``."""

    # ---- parameters and state ---------------------------------------------------
    @abc.abstractmethod
    def init(self, rng):
        """Parameters {'net': ..., 'readout': ...} (readout may be empty)."""

    @abc.abstractmethod
    def init_state(self, x):
        """The initial state for a batch x: a tuple of L arrays (dtype of x)."""

    # ---- dynamics ---------------------------------------------------------------
    @abc.abstractmethod
    def drive(self, net, x):
        """Input-dependent constants of Phi, computed once per relaxation: a tuple of arrays."""

    @abc.abstractmethod
    def phi_layers(self, net, u, drive, layers):
        """New values of the layers in ``layers`` (tuple of indices), all computed from u."""

    @abc.abstractmethod
    def activation(self, layer, u):
        """sigma_l(u_l): the activity of layer l."""

    def phi(self, net, u, drive):
        """The free map Phi: one iteration of the model's schedule."""
        return sweep(lambda v, g: self.phi_layers(net, v, drive, g), u, self.schedule)

    def phi_sync(self, net, u, drive):
        """Every layer updated at once from u (the synchronous / Jacobi sweep). Same fixed points
        as ``phi`` whatever the schedule; its u-Jacobian J = D W is the one the push-through
        identity (generalized hEP paper, Eq. 4-6) pairs with the nudge-based error vectors,
        so gradients and RBP's delta are assembled with it."""
        return sweep(lambda v, g: self.phi_layers(net, v, drive, g), u, "sync")

    def phi_full(self, net, u, x):
        """``phi_sync`` with the input drive recomputed: the map whose theta-Jacobian enters the
        gradient, grad = (dPhi/dtheta)^T delta. With an async schedule the schedule's own map
        would pair (dPhi_async/dtheta)^T with -du*/dbeta, which is not the gradient (biased
        even as beta -> 0; measured with holoeb.time_resolved)."""
        return self.phi_sync(net, u, self.drive(net, x))

    def activities(self, u):
        return tuple(self.activation(l, v) for l, v in enumerate(u))

    def output_features(self, u):
        """Activity of the output layer, flattened to (B, n_features)."""
        s = self.activation(len(u) - 1, u[-1])
        return s.reshape(s.shape[0], -1)

    # ---- readout: cost, nudge, prediction ------------------------------------------
    def cost(self, params, u, y):
        """(B,) per-example loss at state u (default: readout cross-entropy)."""
        return readout.cross_entropy(params["readout"], self.output_features(u), y)

    def nudge(self, params, u, y):
        """dF/dbeta, the direction beta multiplies: a tuple like u (default: the readout
        nudge -dL/d sigma(u_L) on the output layer, zeros elsewhere)."""
        g = readout.nudge(params["readout"], self.output_features(u), y)
        return tuple(jnp.zeros_like(v) for v in u[:-1]) + (g.reshape(u[-1].shape).astype(u[-1].dtype),)

    def predict(self, params, u):
        """(B, num_classes) class scores at state u (default: the readout logits)."""
        return readout.logits(params["readout"], self.output_features(u))

    # ---- diagnostics ----------------------------------------------------------------
    def active_units(self, u):
        """Per layer, 1.0 where the unit's activation has a nonzero derivative at the state u and
        0.0 where it is saturated (a tuple like u, real). Error vectors are compared with RBP's
        delta on these units as well as on all of them: the nudge-based error -d sigma(u*)/d beta
        is D delta (push-through identity, generalized hEP paper Eqs. 4-6, D = sigma'), zero
        wherever D is. Default: every unit (smooth activations)."""
        return tuple(jnp.ones(v.shape, jnp.real(v).dtype) for v in u)

    def clamped_units(self, u):
        """Per layer, a pair of masks (at the lower bound, at the upper bound) of the units whose
        activation is saturated at the state u (real, shaped like u's layers). Where the activation
        is bounded, active_units is 1 - lower - upper. A clamped unit passes no error backward, and one at
        the same bound for every input passes no information forward (holoeb.diagnostics.frozen_fractions).
        Default: no unit is clamped (smooth activations)."""
        return tuple((jnp.zeros(v.shape, jnp.real(v).dtype),) * 2 for v in u)

    def weight_pairs(self, net):
        """[(name, W^f, (W^b)^T-shaped)] forward/backward pairs for the weight-angle diagnostic."""
        return []

    @property
    def has_activity_coordinates(self):
        """True when ``phi_activity`` (Phi as a function of the activities) is defined."""
        return False

    def phi_activity(self, net, s, drive):
        """The free map as a function of the activities s = sigma(u) (homeostasis coordinates)."""
        raise ConfigError(f"{type(self).__name__} has no activity coordinates: use coordinates='pre_activation'")

    # ---- input checks -------------------------------------------------------------------
    def check_batch(self, batch):
        """Raise a ConfigError naming what is wrong with a batch (x, y) (shapes are static under jit)."""
        x, y = batch
        name = type(self).__name__
        if tuple(x.shape[1:]) != tuple(self.input_shape):
            raise ConfigError(
                f"input shape mismatch: model {name} expects examples of shape "
                f"{tuple(self.input_shape)}, got a batch of shape {tuple(x.shape)}"
            )
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise ConfigError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise ConfigError(f"labels must be integer class indices, got dtype {y.dtype}")


class EnergyModel(FixedPointModel):
    """An energy-based model whose state is its activities (comparative study, Eqs. 96-101).

    A subclass defines the shapes, ``init``, ``init_state``, ``drive`` (a tuple) and
    ``primitive(net, s, drive) -> (B,)`` (optionally ``state_gradient``, its closed-form
    state gradient), and has the fields ``schedule`` and ``cost_scale``. The hard sigmoid is not holomorphic, so complex nudges are refused."""

    holomorphic = False
    cost_scale = 1.0
    output_bounds = None  # box of the output layer (None: unbounded)
    linear_in_params = True  # E is linear in theta (Aeqprop's exact parameter step is then one gradient)

    @abc.abstractmethod
    def primitive(self, net, s, drive):
        """The primitive function Phi(theta, x, s) per example, shape (B,)."""

    def activation(self, layer, u):
        return u

    def state_gradient(self, net, s, drive, layers):
        """dPhi/ds_l for the layers l in ``layers`` (a tuple of arrays), the input of every layer
        update. Default: autodiff of the summed primitive; a model may give the closed form
        (the same values, computed faster)."""
        return energy.primitive_grads(self, net, s, drive, layers)

    def phi_layers(self, net, u, drive, layers):
        """sigma_k(dPhi/ds_k) for the layers k in ``layers`` (Eq. 98): the exact minimiser of E
        over s_k with the other layers fixed."""
        return energy.layer_update(self, net, u, drive, layers)

    def energy(self, net, x, s):
        return energy.energy(self, net, x, s)

    def cost(self, params, u, y):
        return energy.squared_error(u[-1], readout.one_hot(y, self.num_classes, u[-1].dtype), self.cost_scale)

    def nudge(self, params, u, y):
        """-dC/do on the output layer, zeros elsewhere (for the generic estimators)."""
        o = u[-1]
        g = -2.0 * self.cost_scale * (o - readout.one_hot(y, self.num_classes, o.dtype))
        return tuple(jnp.zeros_like(v) for v in u[:-1]) + (g,)

    def predict(self, params, u):
        return u[-1]

    def active_units(self, u):
        """Hidden units strictly inside the hard sigmoid's (0, 1) (sigma' = 1; clamped units have
        sigma' = 0 and a zero nudge-based error, comparative study Eq. 98); the output layer
        everywhere, or strictly inside ``output_bounds`` when it is boxed."""
        hidden = tuple(((v > 0) & (v < 1)).astype(v.dtype) for v in u[:-1])
        o = u[-1]
        if self.output_bounds is None:
            return hidden + (jnp.ones_like(o),)
        lo, hi = self.output_bounds
        return hidden + (((o > lo) & (o < hi)).astype(o.dtype),)

    def clamped_units(self, u):
        """Hidden units at the hard sigmoid's lower clamp (s <= 0) and upper clamp (s >= 1); the output
        layer at ``output_bounds`` when it is boxed (never otherwise)."""
        hidden = tuple(((v <= 0).astype(v.dtype), (v >= 1).astype(v.dtype)) for v in u[:-1])
        o = u[-1]
        if self.output_bounds is None:
            return hidden + ((jnp.zeros_like(o), jnp.zeros_like(o)),)
        lo, hi = self.output_bounds
        return hidden + (((o <= lo).astype(o.dtype), (o >= hi).astype(o.dtype)),)


def require_energy_model(model, who):
    """Raise ModelEstimatorMismatch unless ``model`` is an `EnergyModel`."""
    if not isinstance(model, EnergyModel):
        raise ModelEstimatorMismatch(
            f"{who} needs an energy-based model (holoeb.models.base.EnergyModel: 'hopfield' or 'dchn'); "
            f"{type(model).__name__} is a fixed-point model without an energy. Use ep, cauchy, true, rbp or tbp on it."
        )
