"""Simulated energy minimisation for Aeqprop ("Agnostic Physics-Driven Deep Learning",
Scellier, Mishra, Bengio, Ollivier, arXiv:2205.15021, Sections 5.1 and 5.3), for any
`holoeb.models.base.EnergyModel`.

Two simulators of the physics, both running in the one loop `iterate`:

* exact block minimisation (Section 5.3): the state step is one sweep of the model's own
  block minimiser (`holoeb.energy.schedule_step`: hard sigmoid on hidden layers) with the
  output set to its exact nudged minimiser on its box (`aeqprop_box.output_argmin`), in the
  relaxation's schedule ('sync' | 'async', the model's by default); the parameter step is

      argmin_theta sum ||u - theta||^2 / 2 eps + mean_b E(theta, x, s)         (`param_argmin`)

  from autodiff of E (no per-model formulas): for E linear in theta (dense Hopfield; the DCHN
  away from ties of its max pooling) it is u - eps dE/dtheta(s), exactly; a model whose E is
  quadratic in theta (the regression system of Sec. 5.2) says so with the class attribute
  ``linear_in_params = False`` and gets a Newton step solved by preconditioned conjugate
  gradients with autodiff Hessian-vector products (exact in at most rank(H) + 1 iterations).
  For the max-pooled DCHN, dE/dtheta depends on theta through the pooling's argmax; the
  step is taken at the previous parameters, so phase 2's alternation converges to the
  stationary point theta = u - eps dE/dtheta(theta, s).
* generic gradient descent (Section 5.1, Eqs. 14-17) on the global energy (autodiff):

      s     <- s - eta_s grad_s calE                                     (14)
      theta <- theta + eta_theta (u - theta)/eps - eta_theta grad_theta E  (15)
      u     <- u + eta_u (theta_target - theta),   eta_u = eta_theta/(4 eps)   (16, 17)

  with the paper's adaptive step sizes: a step that lowers calE is kept and its step size
  multiplied by 1.05; a step that raises it is undone and the step size halved. (The paper
  multiplies or divides by 1.05 at random when calE is unchanged; we keep the step and the
  step size, which keeps the simulation deterministic.) eta_s starts at 1 and eta_theta at
  eps (componentwise); the state step uses the per-example energy (the sum over the batch),
  so eta_s does not depend on the batch size. States are projected on the state box.

Layer order: the paper sweeps first-to-last at beta = 0 and last-to-first when nudged
(App. C); here every phase uses holoeb's schedules (`holoeb.solvers.layer_groups`). The
equilibria, and so every result checked in tests/test_aeqprop.py, do not depend on it.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from holoeb import energy
from holoeb.errors import ConfigError
from holoeb.estimators.aeqprop_box import output_argmin, output_bounds
from holoeb.estimators.aeqprop_coupling import eps_tree, global_energy, param_grad, tree_axpy
from holoeb.solvers import Relaxation, state_norm

PARAM_CG_MAX_ITERS = 64  # bound on the conjugate-gradient iterations of `param_argmin`


def linear_in_params(model):
    """E linear in theta (the EnergyModel default: 'hopfield', 'dchn'); False for models
    that declare an energy quadratic in theta (``linear_in_params = False``)."""
    return model.linear_in_params


# ---- the one loop ---------------------------------------------------------------------------
def iterate(step, carry, relaxation, state_of=lambda c: c[0]):
    """carry <- step(carry), ``relaxation.max_steps`` times, or until every example's state
    change ||state_of(new) - state_of(old)|| is <= ``relaxation.tol``.
    Returns (carry, per-example state change at the last iteration (B,), iterations)."""
    relaxation = Relaxation.coerce(relaxation)
    s0 = state_of(carry)
    leaf = s0[0]
    res0 = jnp.full((leaf.shape[0],), jnp.inf, jnp.finfo(leaf.dtype).dtype)

    def body(c):
        i, cur, _ = c
        new = step(cur)
        return i + 1, new, state_norm(tuple(a - b for a, b in zip(state_of(new), state_of(cur))))

    if relaxation.tol is None:
        _, carry, res = jax.lax.fori_loop(0, relaxation.max_steps, lambda i, c: body(c), (0, carry, res0))
        return carry, res, jnp.asarray(relaxation.max_steps, jnp.int32)
    tol = relaxation.tol
    cond = lambda c: (c[0] < relaxation.max_steps) & (jnp.max(c[2]) > tol)
    steps, carry, res = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), carry, res0))
    return carry, res, steps


# ---- exact block steps ----------------------------------------------------------------------
def state_step(model, theta, x, y, beta, schedule=None):
    """s -> one sweep of the model's exact block minimiser of E + beta C at fixed theta."""
    net = theta["net"]
    drive = model.drive(net, x)

    def step(s):
        out = output_argmin(model, theta, s, y, beta)
        return energy.schedule_step(model, net, s, drive, out, schedule or model.schedule)

    return step


def _vdot(a, b):
    return sum(jnp.vdot(p, q) for p, q in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def param_argmin(model, u, eps, x, s, theta0=None, max_iters=PARAM_CG_MAX_ITERS):
    """argmin_theta sum_k ||u_k - theta_k||^2 / 2 eps_k + mean_b E(theta, x, s_b).

    E linear in theta: u - eps dE/dtheta(theta0, s) (exact; theta0 matters only where dE/dtheta
    is piecewise constant in theta, e.g. max pooling). Otherwise a Newton step from theta0
    (u by default): solve (D + H) delta = (u - theta0)/eps - g(theta0), D = diag(1/eps),
    g = dE/dtheta, H = d^2E/dtheta^2 (Hessian-vector products by autodiff), by conjugate
    gradients preconditioned with diag(eps) (for H = 0 the first iterate is the linear step)."""
    eps = eps_tree(eps, u)
    theta0 = u if theta0 is None else theta0
    grad = lambda p: param_grad(model, p, x, s)
    g0 = grad(theta0)
    if linear_in_params(model):
        return jax.tree_util.tree_map(lambda a, e, g: a - e * g, u, eps, g0)
    r = jax.tree_util.tree_map(lambda a, p, e, g: (a - p) / e - g, u, theta0, eps, g0)
    z = jax.tree_util.tree_map(lambda e, ri: e * ri, eps, r)
    rz0 = _vdot(r, z)
    dtype = jnp.asarray(rz0).dtype
    tol2 = (10.0 * jnp.sqrt(jnp.finfo(dtype).eps)) ** 2 * rz0

    def matvec(p):
        hp = jax.jvp(grad, (theta0,), (p,))[1]
        return jax.tree_util.tree_map(lambda pi, e, h: pi / e + h, p, eps, hp)

    def cond(c):
        i, _, _, _, rz = c
        return (i < max_iters) & (rz > tol2)

    def body(c):
        i, delta, r, p, rz = c
        ap = matvec(p)
        alpha = rz / _vdot(p, ap)
        delta = tree_axpy(alpha, p, delta)
        r = tree_axpy(-alpha, ap, r)
        z = jax.tree_util.tree_map(lambda e, ri: e * ri, eps, r)
        rz_new = _vdot(r, z)
        p = tree_axpy(rz_new / rz, p, z)
        return i + 1, delta, r, p, rz_new

    zero = jax.tree_util.tree_map(jnp.zeros_like, theta0)
    _, delta, _, _, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), zero, r, z, rz0))
    return jax.tree_util.tree_map(jnp.add, theta0, delta)


def relax_state(model, theta, x, y, beta, s0, relaxation, schedule=None):
    """s_beta(theta) = argmin_s E + beta C at fixed theta (Eq. 10) by exact block sweeps.
    Returns (state, per-example change at the last sweep)."""
    relaxation = Relaxation.coerce(relaxation)
    step = state_step(model, theta, x, y, beta, schedule or relaxation.schedule)
    (s,), res, _ = iterate(lambda c: (step(c[0]),), (s0,), relaxation)
    return s, res


def exact_phase2(model, u, eps, x, y, beta, s0, relaxation, input_shortcut=False):
    """Clamped knobs u, nudge beta: iterations of [state sweep at theta; theta <- argmin_theta
    calE(u, ., s)]. Returns (state, theta, per-example last state change).
    ``input_shortcut``: see `dense_input_phase2` (same result, fewer flops)."""
    relaxation = Relaxation.coerce(relaxation)
    eps = eps_tree(eps, u)
    if input_shortcut:
        return dense_input_phase2(model, u, eps, x, y, beta, s0, relaxation)

    def step(c):
        s, theta = c
        new = state_step(model, theta, x, y, beta, relaxation.schedule)(s)
        return new, param_argmin(model, u, eps, x, new, theta)

    theta0 = param_argmin(model, u, eps, x, s0)
    (s, theta), res, _ = iterate(step, (s0, theta0), relaxation)
    return s, theta, res


def dense_input_phase2(model, u, eps, x, y, beta, s0, relaxation):
    """`exact_phase2` for a model whose input drive is (x @ net["w1"],) with E linear in theta
    (the dense Hopfield, holoeb.models.hopfield.DenseHopfield), a scalar eps on w1, without
    materialising w1 (n_0 x n_1) in the loop: after the parameter step w1 = u_w1 + eps_w1 x^T s_1 / B,

        x w1 = x u_w1 + eps_w1 (x x^T / B) s_1        (a B x B Gram matrix, computed once),

    and the other parameters' step is autodiff of the primitive at that drive."""
    from holoeb.models.hopfield import DenseHopfield  # the models whose drive is x @ w1

    if not isinstance(model, DenseHopfield) or not linear_in_params(model):
        raise ConfigError(f"the dense input shortcut needs a model whose drive is x @ w1 ('hopfield'), "
                          f"got {type(model).__name__}")
    e1 = eps["net"]["w1"]
    if jnp.ndim(e1) != 0:
        raise ConfigError("the dense input shortcut needs a scalar coupling eps on w1")
    B = x.shape[0]
    dt = u["net"]["w1"].dtype
    xf = x.astype(dt)
    xu = xf @ u["net"]["w1"]
    gram = e1 * (xf @ xf.T) / B
    rest = {k: v for k, v in u["net"].items() if k != "w1"}
    eps_rest = {k: v for k, v in eps["net"].items() if k != "w1"}

    def net_of(s):
        """The parameter step of every parameter but w1 (stale: the drive replaces x w1)."""
        drive = (xu + gram @ s[0].astype(dt),)
        sf = jax.lax.stop_gradient(tuple(v.astype(dt) for v in s))
        g = jax.grad(lambda r: -jnp.mean(model.primitive({**r, "w1": u["net"]["w1"]}, sf, drive)))(rest)
        new = jax.tree_util.tree_map(lambda a, e, gi: a - e * gi, rest, eps_rest, g)
        return {**new, "w1": u["net"]["w1"]}, drive

    def step(c):
        (s,) = c
        net, drive = net_of(s)
        theta = {**u, "net": net}
        out = output_argmin(model, theta, s, y, beta)
        return (energy.schedule_step(model, net, s, tuple(d.astype(s[0].dtype) for d in drive), out,
                                     relaxation.schedule or model.schedule),)

    (s,), res, _ = iterate(step, (s0,), relaxation)
    return s, param_argmin(model, u, eps, x, s), res


def exact_homeostasis(model, theta_target, u0, eps, x, y, beta, s0, relaxation, gain=1.0):
    """Iterative (proportional) controller with exact relaxation (Section 5.1, Eq. 16 with the
    physics relaxed exactly): repeat [state sweep; theta <- argmin_theta calE; u <- u + gain
    (theta_target - theta)]. gain = 1 is dead-beat. Returns (state, theta, u, last state change)."""
    relaxation = Relaxation.coerce(relaxation)
    eps = eps_tree(eps, theta_target)

    def step(c):
        s, theta, u = c
        new = state_step(model, theta, x, y, beta, relaxation.schedule)(s)
        theta = param_argmin(model, u, eps, x, new, theta)
        u = jax.tree_util.tree_map(lambda a, t, p: a + gain * (t - p), u, theta_target, theta)
        return new, theta, u

    theta0 = param_argmin(model, u0, eps, x, s0)
    (s, theta, u), res, _ = iterate(step, (s0, theta0, u0), relaxation)
    return s, theta, u, res


# ---- generic gradient-descent relaxation -------------------------------------------------
def project(model, s):
    """Projection on the state box: hidden layers [0, 1], the output on its bounds."""
    lo, hi = output_bounds(model)
    return tuple(jnp.clip(v, 0.0, 1.0) for v in s[:-1]) + (jnp.clip(s[-1], lo, hi),)


class GradientRelaxation(NamedTuple):
    state: Any
    theta: Any
    u: Any
    residual: Any  # (B,) per-example state change at the last step
    eta_s: Any  # final adaptive step-size factors
    eta_theta: Any


def gradient_relax(model, u, theta, s, x, y, eps, beta, relaxation, *, theta_target=None, float_theta=True,
                   eta_s=1.0, eta_theta=1.0):
    """Eqs. (14)-(17) with adaptive step sizes. ``theta_target`` given: homeostatic phase, the
    proportional controller (16) adjusts u; None: knobs clamped (eta_u = 0). ``float_theta``
    False keeps theta fixed (state relaxation only). ``eta_theta`` is a factor on eps."""
    eps_t = eps_tree(eps, theta)
    B = x.shape[0]
    calE = lambda uu, th, ss: global_energy(model, uu, th, ss, x, y, eps_t, beta)
    dtype = jax.tree_util.tree_leaves(theta)[0].dtype
    keep = lambda ok, a, b: jax.tree_util.tree_map(lambda p, q: jnp.where(ok, p, q), a, b)

    def step(c):
        s, th, uu, fs, ft = c
        e0 = calE(uu, th, s)
        gs = jax.grad(lambda v: calE(uu, th, v))(s)
        s_new = project(model, tuple(a - fs * B * g for a, g in zip(s, gs)))
        e1 = calE(uu, th, s_new)
        ok = e1 <= e0
        s_next = keep(ok, s_new, s)
        fs = jnp.where(e1 < e0, fs * 1.05, jnp.where(ok, fs, fs * 0.5))
        if float_theta:
            e0 = calE(uu, th, s_next)
            gt = jax.grad(lambda p: calE(uu, p, s_next))(th)
            th_new = jax.tree_util.tree_map(lambda p, g, e: p - ft * e * g, th, gt, eps_t)
            e1 = calE(uu, th_new, s_next)
            okt = e1 <= e0
            th_next = keep(okt, th_new, th)
            if theta_target is not None:
                uu = jax.tree_util.tree_map(
                    lambda a, t, p: jnp.where(okt, a + (ft / 4.0) * (t - p), a), uu, theta_target, th_next
                )
            ft = jnp.where(e1 < e0, ft * 1.05, jnp.where(okt, ft, ft * 0.5))
            th = th_next
        return s_next, th, uu, fs, ft

    c0 = (s, theta, u, jnp.asarray(eta_s, dtype), jnp.asarray(eta_theta, dtype))
    (s, th, uu, fs, ft), res, _ = iterate(step, c0, relaxation)
    return GradientRelaxation(s, th, uu, res, fs, ft)
