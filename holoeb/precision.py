"""Half-precision free phase (generalized hEP paper, App. D.4: "the free phase with the
convolutional architecture was done in half precision, which provided a 2x speed up").

``with_free_dtype(estimator, "bfloat16")`` returns the same estimator (same class
behaviour, same hyper-parameters) whose free phase relaxes

    u <- Phi_{theta_h}(u, x_h)   for T_free - refine_steps iterations in the half dtype
                                 (parameters, input and state cast down), then
    u <- Phi_theta(u, x)         for refine_steps iterations in the model's dtype,

so the returned free state and residual are full precision and the rounding error
of the half-precision fixed point (~1e-2 relative for bfloat16) is contracted away
by the refinement. Nudged phases, implicit solves, homeostasis and gradient
assembly stay in full precision. Estimators without a free phase (continuous)
are unaffected.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp

from holoeb import dynamics
from holoeb.solvers import relax

HALF_DTYPES = ("bfloat16", "float16")


def _cast_floats(tree, dtype):
    return jax.tree_util.tree_map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, tree)


def _free_phase(self, model, params, x, u0=None):
    low = jnp.dtype(self.free_dtype)
    refine = min(int(self.free_refine_steps), int(self.T_free))
    net_h = _cast_floats(params["net"], low)
    x_h = x.astype(low)
    drive_h = model.drive(net_h, x_h)
    u = model.init_state(x_h) if u0 is None else dynamics.cast_state(u0, low)
    u = relax(lambda v: model.phi(net_h, v, drive_h), u, self.T_free - refine).state
    drive = model.drive(params["net"], x)
    u = dynamics.cast_state(u, model.init_state(x)[0].dtype)
    return relax(lambda v: model.phi(params["net"], v, drive), u, refine, tol=self.free_tol), drive


@functools.lru_cache(maxsize=None)
def _half_class(cls):
    new = dataclasses.make_dataclass(
        f"HalfFree{cls.__name__}",
        [("free_dtype", str, "bfloat16"), ("free_refine_steps", int, 20)],
        bases=(cls,),
        frozen=True,
    )
    new.free_phase = _free_phase
    new.__doc__ = f"{cls.__name__} with a half-precision free phase (see holoeb.precision)."
    return new


def with_free_dtype(estimator, free_dtype=None, refine_steps=20):
    """The estimator with its free phase in ``free_dtype`` (None or 'float32': unchanged)."""
    if free_dtype in (None, "float32", "float64"):
        return estimator
    if free_dtype not in HALF_DTYPES:
        raise ValueError(f"free_dtype must be one of {HALF_DTYPES} or None, got {free_dtype!r}")
    if int(refine_steps) < 0:
        raise ValueError(f"free_refine_steps must be >= 0, got {refine_steps}")
    fields = {f.name: getattr(estimator, f.name) for f in dataclasses.fields(estimator)}
    fields.update(free_dtype=free_dtype, free_refine_steps=int(refine_steps))
    return _half_class(type(estimator))(**fields)
