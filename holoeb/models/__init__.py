"""Model registry: `make_model(name, **kwargs)`."""
import dataclasses

from holoeb.errors import ConfigError
from holoeb.models.base import FixedPointModel
from holoeb.models.conv import AsymConvNet
from holoeb.models.dchn import DCHN
from holoeb.models.flax_adapter import from_flax  # noqa: F401  (user flax modules -> models)
from holoeb.models.hopfield import DenseHopfield
from holoeb.models.mlp import LoopMLP, ReciprocalMLP
from holoeb.registry import lookup, register

MODELS = {
    "mlp": ReciprocalMLP,
    "loop_mlp": LoopMLP,
    "hopfield": DenseHopfield,
    "dchn": DCHN,
    "asym_conv": AsymConvNet,
}


def register_model(name, cls):
    """Make ``cls`` (a FixedPointModel subclass) available as ``make_model(name, ...)``."""
    register(MODELS, name, cls, FixedPointModel, "model")


def make_model(name, **kwargs):
    cls = lookup(MODELS, name, "model")
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ConfigError(f"model {name!r} has no option(s) {unknown}; it takes {fields}")
    return cls(**kwargs)
