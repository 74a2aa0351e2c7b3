"""Implicit linear solves at the free fixed point, matrix-free (jvp / vjp only).

With J = dF/du = Phi'(u*) - I at the free fixed point (generalized hEP paper, Eqs. 3-5):

  forward (true d_beta u*):   (I - Phi')   v = dF/dbeta     ->  v = -J^{-1} dF/dbeta
  adjoint (RBP delta):        (I - Phi'^T) d = dL/du        ->  d = -J^{-T} dL/du

Both are solved with restarted GMRES on the whole batch at once (the system is
block diagonal over examples). A dense Jacobian is never formed.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import gmres

from holoeb.solvers import state_norm


class SolveConfig(NamedTuple):
    tol: float = 1e-6  # relative residual ||b - A v|| / ||b||
    restart: int = 10
    maxiter: int = 20  # number of restarts


def _solve(matvec, b, cfg):
    v, _ = gmres(matvec, b, tol=cfg.tol, atol=0.0, restart=cfg.restart, maxiter=cfg.maxiter)
    r = jax.tree_util.tree_map(lambda p, q: p - q, b, matvec(v))
    rel = state_norm(r) / jnp.maximum(state_norm(b), jnp.finfo(jnp.real(b[0]).dtype).tiny)
    return v, rel


def implicit_solve(phi_u, u_star, rhs, cfg=SolveConfig(), *, transpose=False):
    """The one linear solve at a fixed point, with J = dPhi/du at ``u_star``:

        transpose=False:  v = (I - J)^{-1} rhs     (Jacobian-vector products; true d_beta u*)
        transpose=True:   d = (I - J)^{-T} rhs     (vector-Jacobian products; RBP's delta)

    Returns (solution, per-example relative residual ||rhs - A v|| / ||rhs||)."""
    if transpose:
        _, vjp_fn = jax.vjp(phi_u, u_star)
        matvec = lambda d: tuple(a - b for a, b in zip(d, vjp_fn(tuple(d))[0]))
    else:
        _, jvp_fn = jax.linearize(phi_u, u_star)
        matvec = lambda v: tuple(a - b for a, b in zip(v, jvp_fn(v)))
    return _solve(matvec, tuple(rhs), cfg)
