"""Experiment configuration: nested dicts loaded from JSON, merged over defaults,
with dotted-path overrides (``--set estimator.N=6``)."""
import copy
import json

DEFAULTS = {
    "model": {"name": "mlp", "hidden": [256, 256], "asymmetry": 0.0},
    "estimator": {"name": "cauchy", "N": 2, "beta": 0.5, "T_free": 150, "T_nudge": 20},
    # Table 3 (generalized hEP paper): SGD, lr 1e-2, momentum 0.9, batch 50, 50 epochs
    "optimizer": {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9, "weight_decay": 0.0, "schedule": "constant", "lr_scales": {}},
    "data": {"dataset": "fashion_mnist", "data_dir": None, "train_size": None, "val_size": None},
    "training": {"batch_size": 50, "epochs": 50, "seed": 0, "eval_batch_size": 1000, "max_residual": None},
    # lambda scales L_homeo divided by the number of state units ("per_unit", as in the
    # authors' code, the scale of the paper's lambda values); "sum" is Eq. 12 as printed
    "homeostasis": {"lambda": 0.0, "num_samples": 5, "coordinates": None, "normalize": "per_unit"},
    "diagnostics": {"batch_size": 100, "num_samples": 20},
}


def merge(base, override):
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in ("estimator", "model"):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config(path=None, overrides=None):
    """DEFAULTS <- JSON file <- overrides (a dict of dotted paths -> values)."""
    cfg = copy.deepcopy(DEFAULTS)
    if path:
        with open(path) as f:
            user = json.load(f)
        unknown = sorted(set(user) - set(DEFAULTS) - {"description"})
        if unknown:
            raise ValueError(f"config {path}: unknown section(s) {unknown}; known: {sorted(DEFAULTS)}")
        cfg = merge(cfg, user)
    for key, value in (overrides or {}).items():
        set_path(cfg, key, value)
    return cfg


def set_path(cfg, dotted, value):
    keys = dotted.split(".")
    node = cfg
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def parse_value(text):
    """'6' -> 6, '0.5' -> 0.5, 'true' -> True, '[1,2]' -> [1, 2], other -> str."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
