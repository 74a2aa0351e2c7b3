"""Model registry: `make_model(name, **kwargs)`."""
from holoeb.models.mlp import LoopMLP, ReciprocalMLP

MODELS = {
    "mlp": ReciprocalMLP,
    "loop_mlp": LoopMLP,
}


def register_model(name, cls):
    MODELS[name] = cls


def make_model(name, **kwargs):
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    return cls(**kwargs)
