"""One optimizer builder for every training run (``holoeb train`` and ``holoeb study``).

``make_optimizer(cfg, params, steps_per_epoch, epochs)`` builds an optax
transformation from the ``optimizer`` config section (holoeb.config.OptimizerConfig,
or a dict of its fields):

* ``name``: "sgd" (with ``momentum``; 0 = plain SGD) or "adam";
* ``weight_decay``: L2 term ``wd * theta`` added to the gradient before the optimizer;
* base learning rates per parameter: ``learning_rate``, or, with ``layer_lrs``, one rate
  per layer of ``params["net"]`` (layer k = the entries whose name ends in k, e.g. w2/b2;
  other parameters keep ``learning_rate``), each multiplied by the ``lr_scales`` factor of
  the innermost parameter name it matches (e.g. {"layer1": 25, "readout": 5});
* ``schedule`` applied to each base rate eta:
    "constant";
    "cosine": per-step cosine decay over all steps to ``final_lr_fraction * eta``;
    "cosine_epochs": per-epoch cosine annealing to the absolute ``eta_min`` (comparative
    study, App. D): lr(epoch) = eta_min + (eta - eta_min) (1 + cos(pi epoch / T_max)) / 2,
    epoch = step // steps_per_epoch clipped at T_max (``T_max`` in epochs, default: epochs).
"""
import math
import re

import jax
import jax.numpy as jnp
import optax

from holoeb.errors import ConfigError

SCHEDULES = ("constant", "cosine", "cosine_epochs")
OPTIMIZERS = ("sgd", "adam")


def _get(cfg, key, default=None):
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def make_schedule(cfg, eta, steps_per_epoch, epochs):
    """The learning-rate schedule (a float or a step -> lr function) for base rate ``eta``."""
    kind = _get(cfg, "schedule", "constant")
    eta = float(eta)
    if kind == "constant":
        return eta
    if kind == "cosine":
        total = max(int(steps_per_epoch) * int(epochs), 1)
        return optax.cosine_decay_schedule(eta, total, alpha=float(_get(cfg, "final_lr_fraction", 0.0) or 0.0))
    if kind == "cosine_epochs":
        eta_min = float(_get(cfg, "eta_min", 0.0) or 0.0)
        T_max = int(_get(cfg, "T_max", None) or epochs)
        if T_max < 1:
            raise ConfigError(f"optimizer.T_max must be >= 1, got {T_max}")
        spe = max(int(steps_per_epoch), 1)

        def lr(count):
            epoch = jnp.minimum(count // spe, T_max)
            return eta_min + (eta - eta_min) * (1 + jnp.cos(jnp.pi * epoch / T_max)) / 2

        return lr
    raise ConfigError(f"optimizer.schedule: unknown learning-rate schedule {kind!r}; use one of {list(SCHEDULES)}")


def _names(path):
    return [getattr(p, "key", getattr(p, "name", None)) for p in path]


def param_names(params):
    """Every dict key along the parameter paths (the names lr_scales may use)."""
    out = set()
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        out.update(n for n in _names(path) if isinstance(n, str))
    return out


def _layer_index(name):
    m = re.search(r"(\d+)$", str(name))
    return int(m.group(1)) if m else None


def lr_scale_tree(params, scales):
    """A pytree of multipliers: the factor of the innermost name in ``scales`` along each
    leaf's path (e.g. 'wf2' or 'readout'); 1 for leaves matching none."""
    def factor(path, _):
        for n in reversed(_names(path)):
            if n in scales:
                return float(scales[n])
        return 1.0

    return jax.tree_util.tree_map_with_path(factor, params)


def base_lr_tree(cfg, params):
    """A pytree of per-parameter base learning rates (before the schedule)."""
    lr = float(_get(cfg, "learning_rate"))
    scales = dict(_get(cfg, "lr_scales", None) or {})
    unknown = sorted(set(scales) - param_names(params))
    if unknown:
        raise ConfigError(f"optimizer.lr_scales: unknown parameter name(s) {unknown}; "
                          f"valid names: {sorted(param_names(params))}")
    layer_lrs = _get(cfg, "layer_lrs", None)
    layer_of = {}
    if layer_lrs is not None:
        net = params.get("net", {}) if isinstance(params, dict) else {}
        layers = sorted({_layer_index(n) for n in net if _layer_index(n) is not None})
        if len(layer_lrs) != len(layers):
            raise ConfigError(f"optimizer.layer_lrs must give one learning rate per layer ({len(layers)}: "
                              f"layers {layers} of the model's parameters), got {list(layer_lrs)}")
        layer_of = dict(zip(layers, [float(v) for v in layer_lrs]))

    def base(path, _):
        names = _names(path)
        eta = lr
        if layer_of and len(names) >= 2 and names[0] == "net" and _layer_index(names[1]) in layer_of:
            eta = layer_of[_layer_index(names[1])]
        for n in reversed(names):
            if n in scales:
                return eta * float(scales[n])
        return eta

    return jax.tree_util.tree_map_with_path(base, params)


def make_optimizer(cfg, params, steps_per_epoch, epochs=1):
    """optax transformation for ``params`` from the optimizer config (see module doc)."""
    name = _get(cfg, "name", "sgd")
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.name: unknown optimizer {name!r}; use one of {list(OPTIMIZERS)}")
    lrs = base_lr_tree(cfg, params)
    for v in jax.tree_util.tree_leaves(lrs):
        if not (math.isfinite(v) and v > 0):
            raise ConfigError(f"optimizer: learning rates must be finite and > 0, got {v}")
    wd = float(_get(cfg, "weight_decay", 0.0) or 0.0)
    momentum = float(_get(cfg, "momentum", 0.0) or 0.0)

    def one(eta):
        sched = make_schedule(cfg, eta, steps_per_epoch, epochs)
        core = optax.sgd(sched, momentum=momentum or None) if name == "sgd" else optax.adam(sched)
        return optax.chain(optax.add_decayed_weights(wd), core) if wd else core

    distinct = sorted(set(jax.tree_util.tree_leaves(lrs)))
    if len(distinct) <= 1:
        return one(distinct[0] if distinct else float(_get(cfg, "learning_rate")))
    label = {eta: f"lr{i}" for i, eta in enumerate(distinct)}
    labels = jax.tree_util.tree_map(lambda eta: label[eta], lrs)
    return optax.multi_transform({label[eta]: one(eta) for eta in distinct}, labels)
