"""Half-precision free phase (generalized hEP paper, App. D.4: "the free phase with the
convolutional architecture was done in half precision, which provided a 2x speed up").

`MixedPrecisionRelaxation` wraps a relaxation: on a model's free phase it relaxes

    u <- Phi_{theta_h}(u, x_h)   for max_steps - refine_steps iterations in the half dtype
                                 (parameters, input and state cast down), then
    u <- Phi_theta(u, x)         for refine_steps iterations in the model's dtype
                                 (stopping early at ``tol`` if set),

so the returned free state and residual are full precision and the rounding error
of the half-precision fixed point (~1e-2 relative for bfloat16) is contracted away
by the refinement. ``with_free_dtype(estimator, "bfloat16")`` is the same estimator
with its ``free`` relaxation wrapped. Nudged phases, implicit solves, homeostasis and
gradient assembly stay in full precision. Estimators without a free phase
(continuous) are unaffected.
"""
import dataclasses

import jax
import jax.numpy as jnp

from holoeb import dynamics
from holoeb.errors import ConfigError
from holoeb.solvers import Relaxation

HALF_DTYPES = ("bfloat16", "float16")


def _cast_floats(tree, dtype):
    return jax.tree_util.tree_map(lambda p: p.astype(dtype) if jnp.issubdtype(p.dtype, jnp.floating) else p, tree)


def _relaxation_fields(relaxation):
    """The plain `Relaxation` fields of ``relaxation`` (every one, so a new field carries over)."""
    return {f.name: getattr(relaxation, f.name) for f in dataclasses.fields(Relaxation)}


@dataclasses.dataclass(frozen=True)
class MixedPrecisionRelaxation(Relaxation):
    """A free-phase relaxation run mostly in ``dtype`` and refined in full precision."""

    dtype: str = "bfloat16"
    refine_steps: int = 20

    def __post_init__(self):
        super().__post_init__()
        if self.dtype not in HALF_DTYPES:
            raise ConfigError(f"free_dtype must be one of {HALF_DTYPES} or None, got {self.dtype!r}")
        if isinstance(self.refine_steps, bool) or not isinstance(self.refine_steps, int) or self.refine_steps < 0:
            raise ConfigError(f"free_refine_steps must be an integer >= 0, got {self.refine_steps!r}")

    def run_model(self, model, net, x, u0=None):
        low = jnp.dtype(self.dtype)
        refine = min(self.refine_steps, self.max_steps)
        full = Relaxation(**_relaxation_fields(self))
        u_low = None if u0 is None else dynamics.cast_state(u0, low)
        half, _ = dataclasses.replace(full, max_steps=self.max_steps - refine, tol=None).run_model(
            model, _cast_floats(net, low), x.astype(low), u_low
        )
        u = dynamics.cast_state(half.state, model.init_state(x)[0].dtype)
        return dataclasses.replace(full, max_steps=refine).run_model(model, net, x, u)


def with_free_dtype(estimator, free_dtype=None, refine_steps=20):
    """The estimator with its free phase in ``free_dtype`` (None or 'float32': unchanged)."""
    if free_dtype in (None, "float32", "float64"):
        return estimator
    f = estimator.free
    wrapped = MixedPrecisionRelaxation(**_relaxation_fields(f), dtype=free_dtype, refine_steps=int(refine_steps))
    return dataclasses.replace(estimator, free=wrapped)
