"""Alignment of d_beta u* with RBP's delta (generalized hEP paper, Sec. 3.3, Eqs. 10-11,
Fig. 2c,d, App. C.2).

Coordinates. In the library's conventions (see `holoeb.estimators.base`) the exact
nudge-based error is d := -d sigma(u*)/d beta and RBP's delta = (I - Phi'^T)^{-1} dL/du*
(pre-activation coordinates), the nudge being g = -dL/d sigma. With D = diag sigma'(u*)
and J_u = Phi'(u*) - I, d = D J_u^{-1} g and delta = -J_u^{-T} D g, so Eq. 10 holds
exactly in the form

    d = H^{-1} H^T delta,     H = J_u D^{-1} = Psi' - D^{-1}                     (Eq. 10)

(Psi: the map from activities, Phi(u) = Psi(sigma(u))). H is symmetric iff the
couplings are (H = W - D^{-1} for the reciprocal MLP); it is the paper's J_F written
for activity coordinates up to the factor D (D H = D Psi' - I). With S, A the
symmetric and skew parts of H, the first-order expansion of App. C.2 reads

    d = delta - 2 S^{-1} A delta + O(||S^{-1} A||^2)                             (Eq. 11)

`eq11_check` verifies it with dense per-example Jacobians (small nets only).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from holoeb.bias import make_reference_fn, reference
from holoeb.diagnostics import overall_cosine, per_example_cosine
from holoeb.linear_solve import SolveConfig


def alignment_cosines(model, params, x, y, T_free=200, free_tol=None, cfg=SolveConfig()):
    """Per-example cosine between d (exact, Eq. 5) and delta (Eq. 4): (overall (B,), per layer (L, B))."""
    ref = reference(model, params, x, y, T_free, free_tol, cfg)
    per_layer = jnp.stack([per_example_cosine(e, d) for e, d in zip(ref.err_true, ref.delta)])
    return overall_cosine(ref.err_true, ref.delta), per_layer


@functools.lru_cache(maxsize=16)
def make_alignment_fn(model, T_free=200, free_tol=None, cfg=SolveConfig()):
    return jax.jit(lambda p, x, y: alignment_cosines(model, p, x, y, T_free, free_tol, cfg))


def kde(samples, grid, bandwidth=None):
    """Gaussian kernel density estimate of 1-d samples on a grid (Scott's rule bandwidth
    n^{-1/5} * std unless given; a tiny floor keeps identical samples finite)."""
    s = np.asarray(samples, float).ravel()
    s = s[np.isfinite(s)]
    if s.size == 0:
        raise ValueError("kde needs at least one finite sample")
    h = bandwidth or max(1.06 * s.std() * s.size ** (-0.2), 1e-3)
    z = (np.asarray(grid, float)[:, None] - s[None, :]) / h
    return np.exp(-0.5 * z ** 2).sum(axis=1) / (s.size * h * np.sqrt(2 * np.pi))


# ----------------------------------------------------------------------------- Eq. 11
def _flat(t):
    return jnp.concatenate([v.reshape(-1) for v in t])


def dense_h(model, params, x1, u1):
    """Dense H = (Phi' - I) D^{-1} for ONE example (x1: (1, ...), u1: state with batch 1),
    rows/columns in the order of the flattened layers. Activations must be elementwise."""
    drive = model.drive(params["net"], x1)
    shapes = [v.shape for v in u1]
    split = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]

    def unflat(z):
        return tuple(p.reshape(s) for p, s in zip(jnp.split(z, split), shapes))

    phi = lambda z: _flat(model.phi(params["net"], unflat(z), drive))
    z0 = _flat(u1)
    Ju = jax.jacfwd(phi)(z0) - jnp.eye(z0.size, dtype=z0.dtype)
    act = lambda z: _flat(tuple(model.activation(l, v) for l, v in enumerate(unflat(z))))
    dsig = jax.jvp(act, (z0,), (jnp.ones_like(z0),))[1]
    return Ju / dsig[None, :]


@functools.lru_cache(maxsize=16)
def _jitted(model, T_free, cfg):
    """(reference fn, dense-H fn) compiled once per (model, T_free, solve config)."""
    return make_reference_fn(model, T_free, None, cfg), jax.jit(lambda p, x1, u1: dense_h(model, p, x1, u1))


def eq11_check(model, params, x, y, T_free=300, cfg=SolveConfig(1e-10, 40, 40)):
    """Per-example test of Eqs. 10-11 with dense matrices (numpy, small nets):

    returns dict of (B,) arrays
      norm_SinvA       ||S^{-1} A||_F
      eq10_relerr      ||H^{-1} H^T delta - d|| / ||d||   (exact identity: ~ solver tolerance)
      relerr0 / cos0   zeroth order d ~ delta
      relerr1 / cos1   first order  d ~ delta - 2 S^{-1} A delta   (Eq. 11)
    with d the exact error and delta RBP's (matrix-free solves, `holoeb.bias.reference`)."""
    ref_fn, h_fn = _jitted(model, T_free, cfg)
    ref = ref_fn(params, x, y)
    out = {k: [] for k in ("norm_SinvA", "eq10_relerr", "relerr0", "relerr1", "cos0", "cos1")}
    for i in range(x.shape[0]):
        u1 = tuple(v[i:i + 1] for v in ref.u0)
        H = h_fn(params, x[i:i + 1], u1)
        H = np.asarray(H, np.float64)
        S, A = (H + H.T) / 2, (H - H.T) / 2
        d = np.asarray(_flat(tuple(v[i:i + 1] for v in ref.err_true)), np.float64)
        delta = np.asarray(_flat(tuple(v[i:i + 1] for v in ref.delta)), np.float64)
        SinvA = np.linalg.solve(S, A)
        pred1 = delta - 2 * SinvA @ delta
        nd = np.linalg.norm(d)
        cos = lambda a: float(a @ d / (np.linalg.norm(a) * nd))
        out["norm_SinvA"].append(np.linalg.norm(SinvA))
        out["eq10_relerr"].append(np.linalg.norm(np.linalg.solve(H, H.T @ delta) - d) / nd)
        out["relerr0"].append(np.linalg.norm(delta - d) / nd)
        out["relerr1"].append(np.linalg.norm(pred1 - d) / nd)
        out["cos0"].append(cos(delta))
        out["cos1"].append(cos(pred1))
    return {k: np.asarray(v) for k, v in out.items()}


def summarize(cos):
    """Mean / std / quantiles of a cosine sample."""
    c = np.asarray(cos, float)
    return {"mean": float(c.mean()), "std": float(c.std()), "median": float(np.median(c)),
            "q10": float(np.quantile(c, 0.1)), "q90": float(np.quantile(c, 0.9)), "n": int(c.size)}


__all__ = ["alignment_cosines", "make_alignment_fn", "kde", "dense_h", "eq11_check", "summarize"]
