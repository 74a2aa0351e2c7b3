"""Relaxation to a fixed point, as an object passed to each phase.

A `Relaxation` holds how one phase relaxes: a maximum number of iterations, an
optional residual tolerance (stop as soon as every example is under it) and an
iteration schedule. Running it returns a `Solution`: final state, per-example
residual, iterations taken and a per-example converged flag. It runs inside `lax`
loops and accepts real or complex states.

Schedules (comparative study, Eqs. 99-101):
  "sync"   every layer is updated from the previous state (Eq. 99);
  "async"  the layers of even paper index k (tuple index l = k - 1 odd) are
           updated first, then those of odd k from the refreshed even ones
           (Eqs. 100-101). Only the updated layers are computed in each half-sweep.
  "async_odd_first"  the same with odd k first (the study's released code's order).
A model declares its own schedule (``model.schedule``); a relaxation whose
``schedule`` is None uses it.

The residual of a state u is the per-example norm ||step(u) - u|| of one
iteration of the schedule (the discrete vector field); it is zero exactly at a
fixed point whatever the schedule.
"""
import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from holoeb.errors import ConfigError

SCHEDULES = ("sync", "async", "async_odd_first")
METHODS = ("picard", "anderson")
CONVERGED_TOL = 1e-3  # what "converged" means for a relaxation without a tolerance


class Solution(NamedTuple):
    state: Any  # the final state (tuple of arrays, batch first)
    residual: Any  # (B,) per-example ||step(u) - u|| at the final state
    steps: Any  # iterations performed (int32 scalar)
    converged: Any  # (B,) bool: residual <= tol (or CONVERGED_TOL without a tolerance)


def check_schedule(schedule):
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def layer_groups(num_layers, schedule):
    """Tuple indices updated together, in order. Index l holds the paper's layer k = l + 1,
    so 'even k first' (Eq. 100) is l = 1, 3, ...; then l = 0, 2, ... (Eq. 101).
    'async_odd_first' swaps the halves (k = 1, 3, ... first), as the comparative study's
    released code does."""
    check_schedule(schedule)
    if schedule == "sync":
        return (tuple(range(num_layers)),)
    even_k = tuple(l for l in range(num_layers) if (l + 1) % 2 == 0)
    odd_k = tuple(l for l in range(num_layers) if (l + 1) % 2 == 1)
    halves = (odd_k, even_k) if schedule == "async_odd_first" else (even_k, odd_k)
    return tuple(g for g in halves if g)


def sweep(update, u, schedule):
    """One iteration of ``schedule`` built from a layer update ``update(u, layers) -> new
    values of those layers`` (computed from the state u passed in)."""
    u = list(u)
    for group in layer_groups(len(u), schedule):
        new = update(tuple(u), group)
        for l, v in zip(group, new):
            u[l] = v.astype(u[l].dtype)
    return tuple(u)


def scheduled(update, schedule):
    """The map u -> sweep(update, u, schedule)."""
    return lambda u: sweep(update, u, schedule)


def state_norm(u):
    """Per-example Euclidean norm over all layers, shape (B,)."""
    sq = sum(jnp.sum(jnp.abs(v.reshape(v.shape[0], -1)) ** 2, axis=1) for v in u)
    return jnp.sqrt(sq)


def residual(step, u):
    """Per-example norm of the discrete vector field F(u) = step(u) - u, shape (B,)."""
    new = step(u)
    return state_norm(tuple(a - b for a, b in zip(new, u)))


def relax(step, u0, num_steps, *, tol=None):
    """Iterate ``u <- step(u)`` from ``u0`` for ``num_steps`` iterations, or until
    max_b ||step(u) - u|| <= tol when ``tol`` is given. Returns a `Solution`."""
    return Relaxation(int(num_steps), tol).run(step, u0)


@dataclasses.dataclass(frozen=True)
class Relaxation:
    """How one phase relaxes: ``max_steps`` iterations (the maximum when ``tol`` is set),
    optional residual tolerance ``tol`` for early stopping, ``schedule`` ('sync' | 'async' |
    None = the model's own), and ``method``:

      'picard'    u <- g(u), g one sweep of the schedule (the physical dynamics);
      'anderson'  Anderson acceleration of the same map with ``memory`` m: per example,
                  u <- sum_i alpha_i g(u_i) over the last m iterates, alpha minimising
                  ||sum_i alpha_i (g(u_i) - u_i)|| with sum_i alpha_i = 1 (Walker & Ni 2011).
                  Same fixed points, fewer iterations; complex states use the Hermitian
                  inner product. It is a solver, not the physical trajectory: use it where
                  only the fixed point matters, and where the map has several (the DCHN's
                  energy has many) it may reach another one than the plain iteration. With
                  ``restart`` (default) an example whose residual ||g(u) - u|| grew since its
                  previous iterate drops its memory and takes the plain step g(u). Without it
                  Anderson stalls on the DCHN, whose hard sigmoid and max pooling make g
                  non-smooth (trained narrow DCHN, 16 test images: residual 7e-3 after 300
                  iterations, where the plain iteration reaches 1e-4 in 50; with restarts, 38).
    """

    max_steps: int = 100
    tol: Any = None
    schedule: Any = None
    method: str = "picard"
    memory: int = 5
    restart: bool = True

    dtype = None  # the dtype the relaxation runs in (None: the model's; see holoeb.precision)
    refine_steps = 0  # full-precision iterations after a low-precision relaxation

    def __post_init__(self):
        s = self.max_steps
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ConfigError(f"max_steps must be an integer >= 0, got {s!r}")
        if self.tol is not None:
            t = self.tol
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
                raise ConfigError(f"tol must be a finite positive number or None, got {t!r}")
        if self.schedule is not None:
            check_schedule(self.schedule)
        if self.method not in METHODS:
            raise ConfigError(f"unknown relaxation method {self.method!r}; choose one of {METHODS}")
        m = self.memory
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise ConfigError(f"memory must be an integer >= 1, got {m!r}")
        if not isinstance(self.restart, bool):
            raise ConfigError(f"restart must be True or False, got {self.restart!r}")

    def exactly(self, k):
        """The same schedule run for exactly ``k`` plain (picard) iterations, no tolerance stop:
        the physical trajectory cut at k (k = 0 keeps the start state)."""
        return dataclasses.replace(self, max_steps=k, tol=None, method="picard")

    @classmethod
    def coerce(cls, value, what="relaxation"):
        """A Relaxation from itself, an int (max_steps) or a dict of fields."""
        if isinstance(value, Relaxation):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"{what}: expected a Relaxation, a number of steps or a dict, got {value!r}")
        if isinstance(value, int):
            return cls(value)
        if isinstance(value, dict):
            known = {f.name for f in dataclasses.fields(cls)}
            bad = sorted(set(value) - known)
            if bad:
                raise ConfigError(f"{what}: unknown field(s) {bad}; a relaxation has {sorted(known)}")
            return cls(**value)
        raise ConfigError(f"{what}: expected a Relaxation, a number of steps or a dict, got {value!r}")

    def resolve(self, default_schedule):
        return self.schedule or default_schedule

    def run(self, step, u0):
        """Relax the full map ``step`` (state -> state) from ``u0``."""
        if self.method == "anderson":
            return self._run_anderson(step, u0)
        if self.tol is None:
            u = jax.lax.fori_loop(0, self.max_steps, lambda i, v: step(v), u0)
            steps = jnp.asarray(self.max_steps, jnp.int32)
        else:
            tol = self.tol

            def cond(c):
                i, _, res = c
                return (i < self.max_steps) & (jnp.max(res) > tol)

            def body(c):
                i, u, _ = c
                new = step(u)
                return i + 1, new, state_norm(tuple(a - b for a, b in zip(new, u)))

            leaf = jax.tree_util.tree_leaves(u0)[0]
            res0 = jnp.full((leaf.shape[0],), jnp.inf, jnp.finfo(leaf.dtype).dtype)
            steps, u, _ = jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), u0, res0))
        res = residual(step, u)
        return Solution(u, res, steps, res <= (self.tol if self.tol is not None else CONVERGED_TOL))

    def run_layers(self, update, u0, default_schedule="sync"):
        """Relax the schedule built from a layer update ``update(u, layers)`` from ``u0``."""
        return self.run(scheduled(update, self.resolve(default_schedule)), u0)

    def run_model(self, model, net, x, u0=None):
        """The free phase of ``model`` (a holoeb.models.base.FixedPointModel) at parameters
        ``net`` on inputs x, from ``u0`` (the model's initial state by default).
        Returns (Solution, drive)."""
        drive = model.drive(net, x)
        u0 = model.init_state(x) if u0 is None else u0
        return self.run_layers(lambda u, g: model.phi_layers(net, u, drive, g), u0, model.schedule), drive

    def _run_anderson(self, step, u0):
        """Anderson-accelerated fixed-point iteration in one `lax` loop (type-II, per example).
        Each layer keeps its own ring buffers of g(u_i) and f_i = g(u_i) - u_i (memory axis
        first, layers never concatenated), and the Gram matrix H_ij = <f_i, f_j> summed over
        layers gains one row and column per iteration."""
        leaves, treedef = jax.tree_util.tree_flatten(u0)
        B = leaves[0].shape[0]
        dtype = jnp.result_type(*leaves)
        real = jnp.finfo(dtype).dtype
        m = self.memory

        def flat(u):  # per-layer (B, n_l) views, in the common dtype
            return [v.reshape(B, -1).astype(dtype) for v in jax.tree_util.tree_leaves(u)]

        def unflat(z):
            return jax.tree_util.tree_unflatten(treedef, [p.reshape(v.shape).astype(v.dtype) for p, v in zip(z, leaves)])

        tol = self.tol  # None: exactly max_steps iterations

        def body(c):
            k, x, Gb, Fb, H, count, prev = c
            gx = flat(step(unflat(x)))
            f = [g - v for g, v in zip(gx, x)]
            res = state_norm(f)
            if self.restart:  # an example whose residual grew forgets its history
                count = jnp.where(res > prev, 0, count)
            count = jnp.minimum(count + 1, m)
            slot = k % m
            Gb = [buf.at[slot].set(g) for buf, g in zip(Gb, gx)]
            Fb = [buf.at[slot].set(fl) for buf, fl in zip(Fb, f)]
            h = sum(jnp.einsum("ibn,bn->bi", jnp.conj(buf), fl) for buf, fl in zip(Fb, f))  # <f_i, f>
            H = H.at[:, :, slot].set(h).at[:, slot, :].set(jnp.conj(h))
            # per example, the memory holds the last count[b] iterates: slots slot, slot - 1, ... (mod m)
            valid = (slot - jnp.arange(m)) % m < count[:, None]  # (B, m)
            scale = jnp.maximum(jnp.max(jnp.abs(jnp.diagonal(H, axis1=1, axis2=2)), axis=1), jnp.finfo(real).tiny)
            eye = jnp.eye(m, dtype=real)
            mask = valid[:, :, None] & valid[:, None, :]
            A = jnp.where(mask, H, 0) + (1e-10 * scale[:, None, None] + jnp.where(valid, 0.0, 1.0)[:, None, :]) * eye
            a = jnp.linalg.solve(A, valid.astype(A.dtype)[..., None])[..., 0]
            alpha = a / jnp.sum(a, axis=1, keepdims=True)
            # fall back to the plain step where the least squares breaks down
            ok = jnp.all(jnp.isfinite(alpha), axis=1)
            alpha = jnp.where(ok[:, None], alpha, (jnp.arange(m) == slot).astype(alpha.dtype))
            x_new = [jnp.einsum("bi,ibn->bn", alpha, buf) for buf in Gb]
            if tol is not None:  # x already meets the tolerance: keep it (the loop ends here)
                done = jnp.max(res) <= tol
                x_new = [jnp.where(done, v, xn) for v, xn in zip(x, x_new)]
            return k + 1, x_new, Gb, Fb, H, count, res

        def cond(c):
            k, res = c[0], c[-1]
            if tol is None:
                return k < self.max_steps
            return (k < self.max_steps) & ~(jnp.max(res) <= tol)

        x0 = flat(u0)
        bufs = [jnp.zeros((m,) + v.shape, dtype) for v in x0]
        H0 = jnp.zeros((B, m, m), dtype)
        res0 = jnp.full((B,), jnp.inf, real)
        count0 = jnp.zeros((B,), jnp.int32)
        init = (jnp.asarray(0, jnp.int32), x0, bufs, [jnp.zeros_like(b) for b in bufs], H0, count0, res0)
        steps, x, *_ = jax.lax.while_loop(cond, body, init)
        u = unflat(x)
        res = residual(step, u)
        return Solution(u, res, steps, res <= (self.tol if self.tol is not None else CONVERGED_TOL))
