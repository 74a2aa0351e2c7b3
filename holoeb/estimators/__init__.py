"""Gradient estimators behind one interface: ``make_estimator(name, **hp)(model, params, batch, rng)``.

All return an `EstimatorResult` (see `holoeb.estimators.base`).
"""
import dataclasses
import functools

import jax

from holoeb.estimators.aeqprop import Aeqprop
from holoeb.estimators.base import Estimator, EstimatorResult
from holoeb.estimators.cauchy import Cauchy
from holoeb.estimators.continuous import Continuous
from holoeb.estimators.energy_rules import RULES as ENERGY_RULES
from holoeb.estimators.ep import EP
from holoeb.estimators.rbp import RBP
from holoeb.estimators.tbp import TBP
from holoeb.estimators.true_derivative import TrueDerivative
from holoeb.errors import ConfigError
from holoeb.registry import lookup, register
from holoeb.solvers import Relaxation

ESTIMATORS = {
    "ep": EP,
    "cauchy": Cauchy,
    "continuous": Continuous,
    "true": TrueDerivative,
    "rbp": RBP,
    "tbp": TBP,
    "aeqprop": Aeqprop,
}
ESTIMATORS.update(ENERGY_RULES)  # cl, p-ep, n-ep, c-ep, p-cpl, n-cpl, c-cpl (comparative study)


def register_estimator(name, cls):
    """Make ``cls`` (an Estimator subclass) available as ``make_estimator(name, ...)``."""
    register(ESTIMATORS, name, cls, Estimator, "estimator")


# shorthand keyword -> (relaxation field, Relaxation attribute)
SHORTHANDS = {
    "T_free": ("free", "max_steps"),
    "free_tol": ("free", "tol"),
    "free_schedule": ("free", "schedule"),
    "free_method": ("free", "method"),
    "T_nudge": ("nudge", "max_steps"),
    "nudge_tol": ("nudge", "tol"),
    "nudge_schedule": ("nudge", "schedule"),
    "nudge_method": ("nudge", "method"),
}


def estimator_fields(name):
    """Hyper-parameters ``make_estimator(name, ...)`` accepts (fields and relaxation shorthands)."""
    fields = [f.name for f in dataclasses.fields(ESTIMATORS[name])]
    return fields + [k for k, (field, _) in SHORTHANDS.items() if field in fields]


def make_estimator(name, **hyperparams):
    """Build a validated estimator. ``T_free``/``free_tol``/``free_schedule`` and
    ``T_nudge``/``nudge_tol``/``nudge_schedule`` set the ``free`` / ``nudge`` `Relaxation`
    fields (which also accept a Relaxation, a step count or a dict). Unknown names or
    hyper-parameters raise ConfigError."""
    cls = lookup(ESTIMATORS, name, "estimator")
    allowed = estimator_fields(name)
    unknown = sorted(set(hyperparams) - set(allowed))
    if unknown:
        raise ConfigError(f"estimator {name!r} has no hyper-parameter(s) {unknown}; it takes {allowed}")
    hp = {k: v for k, v in hyperparams.items() if k not in SHORTHANDS}
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    for key, (field, attr) in SHORTHANDS.items():
        if key in hyperparams:
            base = Relaxation.coerce(hp.get(field, defaults[field]), f"{name}.{field}")
            try:
                hp[field] = dataclasses.replace(base, **{attr: hyperparams[key]})
            except ConfigError as e:
                raise ConfigError(f"estimator {name!r}: {key} = {hyperparams[key]!r} is invalid ({e})") from None
    return cls(**hp)


@functools.partial(jax.jit, static_argnums=(0, 1))
def run_estimator(estimator, model, params, batch, rng=None):
    """jit-compiled ``estimator(model, params, batch, rng)``, cached per (estimator, model)
    pair and input shapes (both are hashable frozen dataclasses)."""
    return estimator(model, params, batch, rng)


__all__ = ["run_estimator", "Estimator", "EstimatorResult", "ESTIMATORS", "make_estimator", "register_estimator"]
