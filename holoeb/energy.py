"""Energy-based models: energy, hard-sigmoid minimisers and energy gradients.

An energy-based model (comparative study, Sec. 3 and App. C, Eqs. 96-101) has a
state s = (s_1, ..., s_L) of activities (s_0 = x is the input) and a primitive
function Phi(theta, x, s); its energy is

    E(theta, x, s) = 1/2 sum_k ||s_k||^2 - Phi(theta, x, s)            (Eq. 96)

with the state space S = [0, 1]^{hidden} x R^{out}. The fixed-point dynamics

    s_k <- sigma_k(dPhi/ds_k),   sigma = hard sigmoid (hidden), identity (output)   (Eq. 98)

is run either synchronously (all layers from the previous state, Eq. 99) or
asynchronously (paper layers of even index k first, then those of odd index,
from the refreshed even layers, Eqs. 100-101). Because Phi is linear in each
s_k's own quadratic self-term, sigma_k(dPhi/ds_k) is the exact minimiser of E
over the box for s_k with the other layers fixed (for dense interactions).

Perturbations of the output layer (Sec. 2):
  * nudge by beta C with C(o, y) = c ||o - y||^2 (c = the model's ``cost_scale``:
    1 as printed in Sec. 3, 1/2 in the authors' released code): the output is
    set to its exact conditional minimiser argmin_o [1/2||o||^2 - o.a + beta c ||o - y||^2]
    = (a + 2 beta c y) / (1 + 2 beta c), a = dPhi/do (needs 1 + 2 beta c > 0); the
    fixed points are those of s <- sigma(dPhi/ds - beta dC/ds);
  * clamp to a target (CL: y; CpL: (1 - beta) o* + beta y, Eq. 7).

Parameter gradients of E are autodiff of E at fixed states (no per-layer formulas).

The model contract is `holoeb.models.base.EnergyModel` (a refinement of
`FixedPointModel`): a model writes ``drive`` and ``primitive``;
its ``phi_layers`` is the exact block minimiser sigma_k(dPhi/ds_k) (so Phi, the
iteration its minimiser applies, is one sweep of its schedule and every generic
estimator runs on it), its cost is the squared error above and its prediction
the output layer.
"""
import jax
import jax.numpy as jnp

from holoeb.errors import ConfigError
from holoeb.solvers import sweep


def hard_sigmoid(v):
    """sigma(v) = max(0, min(v, 1)) (comparative study, App. D)."""
    return jnp.clip(v, 0.0, 1.0)


def primitive_grads(model, net, s, drive, layers):
    """dPhi/ds_l for the layers in ``layers`` (autodiff of the summed primitive): the default
    of ``EnergyModel.state_gradient``, and the reference its closed forms are tested against."""

    def phi_of(sub):
        full = list(s)
        for l, v in zip(layers, sub):
            full[l] = v
        return jnp.sum(model.primitive(net, tuple(full), drive))

    return jax.grad(phi_of)(tuple(s[l] for l in layers))


def free_output(a, s_out):
    """Free output update: o = dPhi/do (identity activation)."""
    return a


def layer_update(model, net, s, drive, layers, output_update=free_output):
    """New values of ``layers``: sigma_k(dPhi/ds_k) from the state s, the output layer
    mapped by ``output_update(a, o)`` (a = dPhi/do): identity (free phase), the nudged
    minimiser, or a clamped target."""
    L = len(s)
    grads = model.state_gradient(net, tuple(s), drive, layers)
    return tuple(
        output_update(g, s[l]).astype(s[l].dtype) if l == L - 1 else hard_sigmoid(g) for l, g in zip(layers, grads)
    )


def schedule_step(model, net, s, drive, output_update=free_output, schedule=None):
    """One iteration of Eq. 99 (sync) or Eqs. 100-101 (async; the model's schedule by default)."""
    return sweep(lambda v, g: layer_update(model, net, v, drive, g, output_update), s, schedule or model.schedule)


def nudged_output(y_onehot, beta, cost_scale=1.0):
    """Output update of the EP-perturbed energy E + beta c ||o - y||^2 (Eq. 4):
    o = (a + 2 beta c y) / (1 + 2 beta c)."""
    k = beta * cost_scale
    if 1.0 + 2.0 * k <= 0:
        raise ConfigError(
            f"the squared-error nudge needs 1 + 2 beta c > 0 (E + beta c ||o - y||^2 is unbounded below otherwise), "
            f"got beta={beta}, c={cost_scale}: use |beta| < {0.5 / cost_scale:g}"
        )

    def update(a, o):
        return (a + 2.0 * k * y_onehot.astype(a.dtype)) / (1.0 + 2.0 * k)

    return update


def nudged_output_step(y_onehot, beta, cost_scale=1.0):
    """One fixed-point step of the output under E + beta c ||o - y||^2, from its current value o:
    o <- a - 2 beta c (o - y), the Hopfield update of the comparative study's released code (its output's
    pre-activation is minus the augmented energy's gradient without the o^2 / 2 term). Its fixed point is
    ``nudged_output``'s minimiser, reached when |2 beta c| < 1; a phase of K iterations stops short of it."""
    k = beta * cost_scale
    if abs(2.0 * k) >= 1.0:
        raise ConfigError(
            f"the output's fixed-point step o <- a - 2 beta c (o - y) converges only for |2 beta c| < 1, "
            f"got beta={beta}, c={cost_scale}: use |beta| < {0.5 / cost_scale:g} or the exact minimiser"
        )

    def update(a, o):
        return a - 2.0 * k * (o - y_onehot.astype(o.dtype))

    return update


def clamped_output(target):
    """Output clamped to ``target`` (CL: y, Eq. 2; CpL: (1-beta) o* + beta y, Eq. 7)."""

    def update(a, o):
        return target.astype(a.dtype)

    return update


def energy(model, net, x, s):
    """E(theta, x, s) per example, shape (B,) (Eq. 96 / Eq. 18)."""
    sq = sum(0.5 * jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1) for v in s)
    return sq - model.primitive(net, s, model.drive(net, x))


def param_dtype(net):
    return jax.tree_util.tree_leaves(net)[0].dtype


def energy_param_grad(model, net, x, s):
    """dE/dtheta at fixed states, averaged over the batch (autodiff of E). States and
    input are promoted to the parameters' dtype (float32 update after a 16-bit relaxation)."""
    dt = param_dtype(net)
    s = jax.lax.stop_gradient(tuple(v.astype(dt) for v in s))
    return jax.grad(lambda n: jnp.mean(energy(model, n, x.astype(dt), s)))(net)


def contrast_grad(model, net, x, s_a, beta_a, s_b, beta_b):
    """[dE/dtheta(s_b) - dE/dtheta(s_a)] / (beta_b - beta_a): the energy-based rules'
    gradient estimate (Eqs. 3, 5, 6, 8, 9 with Delta theta = -eta * this)."""
    if beta_a == beta_b:
        raise ConfigError("the two phases of a contrastive rule need different beta")
    dt = param_dtype(net)
    sa = jax.lax.stop_gradient(tuple(v.astype(dt) for v in s_a))
    sb = jax.lax.stop_gradient(tuple(v.astype(dt) for v in s_b))
    xf = x.astype(dt)

    def contrast(n):
        return jnp.mean(energy(model, n, xf, sb) - energy(model, n, xf, sa)) / (beta_b - beta_a)

    return jax.grad(contrast)(net)


def squared_error(o, y_onehot, scale=1.0):
    """C(o, y) = scale ||o - y||^2 per example (Sec. 3, cost function; scale 1 as printed)."""
    d = o.reshape(o.shape[0], -1) - y_onehot.astype(o.dtype)
    return scale * jnp.sum(d * d, axis=1)


def check_cost_scale(c):
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0 or c == float("inf"):
        raise ConfigError(f"cost_scale must be a finite positive number, got {c!r}")


def fixed_point_residual(model, net, s, drive):
    """Per-example ||sigma(dPhi/ds) - s|| with every layer computed from the same s
    (the synchronous map, Eq. 98): zero exactly at a fixed point, whatever the schedule."""
    new = layer_update(model, net, s, drive, tuple(range(len(s))))
    sq = sum(jnp.sum(((a - b).astype(jnp.float32) ** 2).reshape(a.shape[0], -1), axis=1) for a, b in zip(new, s))
    return jnp.sqrt(sq)


def iterations_to_residual(model, net, x, tol, max_iter):
    """Iterations of the model's schedule from the zero state until the fixed-point
    residual (max over the batch) is <= tol; max_iter + 1 if never reached.
    Returns (iterations, final residual)."""
    drive = model.drive(net, x)

    def cond(c):
        i, _, r = c
        return (i <= max_iter) & (r > tol)

    def body(c):
        i, s, _ = c
        s = schedule_step(model, net, s, drive)
        return i + 1, s, jnp.max(fixed_point_residual(model, net, s, drive))

    s0 = model.init_state(x)
    r0 = jnp.max(fixed_point_residual(model, net, s0, drive))
    i, _, r = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), s0, r0))
    return i, r
