"""Parameters on disk: plain .npz files ('/'-joined pytree paths, e.g. 'net/wf2'),
pickled pytrees, and training run directories (their params file or latest orbax
checkpoint, and the model their config.json describes)."""
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np

from holoeb.errors import ConfigError


def save_params(path, params):
    """Plain .npz of a params pytree of dicts: keys are '/'-joined paths ('net/wf2')."""
    flat = {}

    def walk(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
        else:
            flat[prefix] = np.asarray(node)

    walk("", params)
    np.savez(path, **flat)


def load_params_file(path):
    """Params from a .npz written by `save_params` or a pickled pytree."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"params file {path!r} does not exist")
    if path.endswith(".npz"):
        out = {}
        with np.load(path) as z:
            for key in z.files:
                node = out
                *head, leaf = key.split("/")
                for h in head:
                    node = node.setdefault(h, {})
                node[leaf] = z[key]
        return out
    if path.endswith((".pkl", ".pickle")):
        with open(path, "rb") as f:
            return pickle.load(f)
    raise ValueError(f"unsupported params file {path!r}: use a run directory, .npz or .pkl")


def load_run_params(run_dir):
    """Parameters of a run directory: its params.npz / params.pkl, else its latest checkpoint."""
    for name in ("params.npz", "params.pkl"):
        if os.path.exists(os.path.join(run_dir, name)):
            return load_params_file(os.path.join(run_dir, name))
    if os.path.isdir(os.path.join(run_dir, "checkpoints")):
        from holoeb.checkpoint import load_params

        return load_params(run_dir)
    raise FileNotFoundError(f"no params.npz / params.pkl / checkpoints/ found in run directory {run_dir!r}")


def load_run(run_dir):
    """(TrainConfig, model, params) of a training run directory: the model its config.json
    describes and the parameters of `load_run_params`."""
    from holoeb.config import load_config
    from holoeb.models import make_model

    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir!r} has no config.json (is it a holoeb training run directory?)")
    cfg = load_config(path)
    model = make_model(cfg.model.name, **cfg.model.kwargs)
    return cfg, model, load_run_params(run_dir)


def initial_params_from(path, like):
    """The parameters stored at ``path`` (a run directory or a .npz / .pkl params file, `load_run_params` /
    `load_params_file`) as arrays of ``like``'s dtypes: a run that continues another one (training.init_from). Refused
    with a ConfigError naming the first difference when their structure or shapes differ from
    ``like`` (the model the config describes)."""
    if not os.path.exists(path):
        raise ConfigError(f"training.init_from: {path!r} does not exist (a run directory or a .npz / .pkl params file)")
    try:
        loaded = load_run_params(path) if os.path.isdir(path) else load_params_file(path)
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"training.init_from: {e}") from None
    want = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(like)[0]}
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(loaded)[0]}
    if set(want) != set(got):
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        raise ConfigError(f"training.init_from: the parameters in {path!r} do not fit the config's model "
                          f"(missing {missing[:4]}, unexpected {extra[:4]})")
    for k, v in want.items():
        if tuple(np.shape(got[k])) != tuple(v.shape):
            raise ConfigError(f"training.init_from: parameter {k} in {path!r} has shape {tuple(np.shape(got[k]))}, "
                              f"the config's model needs {tuple(v.shape)}")
    # rebuilt in ``like``'s structure: a params file drops empty subtrees (the DCHN's readout {})
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(like),
                                        [jnp.asarray(got[k], v.dtype) for k, v in want.items()])
