"""optax optimizers from a config dict: SGD(+momentum) or Adam, optional weight
decay, cosine schedule, and per-parameter learning-rate scales."""
import jax
import optax


def make_schedule(cfg, total_steps):
    lr = float(cfg["learning_rate"])
    kind = cfg.get("schedule", "constant")
    if kind == "constant":
        return lr
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, max(int(total_steps), 1), alpha=float(cfg.get("final_lr_fraction", 0.0)))
    raise ValueError(f"unknown learning-rate schedule {kind!r}; use 'constant' or 'cosine'")


def lr_scale_tree(params, scales):
    """A pytree of multipliers: scales maps top-level parameter names of params['net']
    (or 'readout') to a factor; others get 1."""
    def factor(path, _):
        names = [getattr(p, "key", getattr(p, "name", None)) for p in path]
        for n in reversed(names):
            if n in scales:
                return float(scales[n])
        return 1.0

    return jax.tree_util.tree_map_with_path(factor, params)


def make_optimizer(cfg, params, total_steps):
    sched = make_schedule(cfg, total_steps)
    name = cfg.get("name", "sgd")
    if name == "sgd":
        mom = cfg.get("momentum", 0.0) or None
        core = optax.sgd(sched, momentum=mom)
    elif name == "adam":
        core = optax.adam(sched)
    else:
        raise ValueError(f"unknown optimizer {name!r}; use 'sgd' or 'adam'")
    parts = []
    if cfg.get("weight_decay"):
        parts.append(optax.add_decayed_weights(float(cfg["weight_decay"])))
    parts.append(core)
    scales = cfg.get("lr_scales") or {}
    if scales:
        tree = lr_scale_tree(params, scales)
        parts.append(optax.GradientTransformation(
            lambda p: optax.EmptyState(),
            lambda u, s, p=None: (jax.tree_util.tree_map(lambda a, f: a * f, u, tree), s),
        ))
    return optax.chain(*parts)
