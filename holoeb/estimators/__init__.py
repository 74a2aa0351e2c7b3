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
    ESTIMATORS[name] = cls


def estimator_fields(name):
    return [f.name for f in dataclasses.fields(ESTIMATORS[name])]


def make_estimator(name, **hyperparams):
    """Build a validated estimator. Unknown names or hyper-parameters raise ValueError."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    allowed = estimator_fields(name)
    unknown = sorted(set(hyperparams) - set(allowed))
    if unknown:
        raise ValueError(f"estimator {name!r} has no hyper-parameter(s) {unknown}; it takes {allowed}")
    return ESTIMATORS[name](**hyperparams)


@functools.partial(jax.jit, static_argnums=(0, 1))
def run_estimator(estimator, model, params, batch, rng=None):
    """jit-compiled ``estimator(model, params, batch, rng)``, cached per (estimator, model)
    pair and input shapes (both are hashable frozen dataclasses)."""
    return estimator(model, params, batch, rng)


__all__ = ["run_estimator", "Estimator", "EstimatorResult", "ESTIMATORS", "make_estimator", "register_estimator"]
