"""A training run's directory: its lock, whether a saved run is the same run (resume / study
cells), and its outputs (config.json is written by the loop; metrics.json, metrics.csv with
one column per scalar, curves.png and convergence.png here)."""
import contextlib
import dataclasses
import fcntl
import json
import os

from holoeb.config import as_train_config
from holoeb.errors import ConfigError


def same_run_settings(a, b):
    """True when two run configs (TrainConfig or plain dicts, e.g. a run directory's config.json)
    decide the same results: a resume continues a run only then, and a study counts a run
    directory as its cell only then."""
    return comparable_config(a) == comparable_config(b)


def comparable_config(cfg):
    """The settings that decide a run's results: a saved config written before a setting
    existed gets its default (a model / estimator option equal to its default counts as absent), and settings that only change how a run is carried out
    (resuming, checkpoint / logging intervals, the evaluation batch size: every example relaxes on its
    own, so evaluation does not depend on how the examples are batched) are left out."""
    try:
        cfg = as_train_config(cfg).to_dict()
    except (ConfigError, TypeError, ValueError):
        pass
    c = json.loads(json.dumps(cfg))
    for k in ("resume", "checkpoint_every", "progress", "log_every", "eval_batch_size"):
        c.get("training", {}).pop(k, None)
    from holoeb.estimators import ESTIMATORS
    from holoeb.models import MODELS

    for section, registry in (("model", MODELS), ("estimator", ESTIMATORS)):  # an option at its default = absent
        sec = c.get(section)
        cls = registry.get(sec.get("name")) if isinstance(sec, dict) else None
        if cls is not None and dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if f.name in sec and f.name != "name" and f.default is not dataclasses.MISSING:
                    try:
                        if json.loads(json.dumps(f.default)) == sec[f.name]:
                            del sec[f.name]
                    except TypeError:  # a default that is not JSON (e.g. a Relaxation) stays as given
                        pass
    return c


@contextlib.contextmanager
def locked_run_directory(run_dir):
    """Create ``run_dir`` and hold an exclusive lock on it (run_dir/.lock, flock: released when
    the process ends, also by kill -9). A path that is a file, or a directory another process
    is training into, is refused with a ConfigError."""
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise ConfigError(f"run directory {run_dir!r} is a file; give --out a directory (new or a run to resume)")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, ".lock"), "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"run directory {run_dir!r} is being written by another process; use another --out") from None
        try:
            yield run_dir
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_resumable(run_dir, cfg_dict):
    """Refuse (ConfigError) a run directory whose config.json describes a different run
    (`same_run_settings`): resuming it would continue another experiment."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    if not same_run_settings(saved, cfg_dict):
        raise ConfigError(
            f"{run_dir} holds a run with a different config; use another --out, "
            "or --set training.resume=false to start over in it"
        )


def write_config(run_dir, cfg_dict):
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(cfg_dict, f, indent=2)


def write_metrics(run_dir, cfg, history):
    from holoeb.plotting import plot_convergence, plot_history

    with open(os.path.join(run_dir, "metrics.json"), "w") as f:
        json.dump({"config": cfg, "history": history}, f, indent=2)
    flat = [flatten_record(r) for r in history]
    cols = list(dict.fromkeys(k for r in flat for k in r))
    with open(os.path.join(run_dir, "metrics.csv"), "w") as f:
        f.write(",".join(cols) + "\n")
        for r in flat:
            f.write(",".join(str(r.get(c, "")) for c in cols) + "\n")
    path, title = os.path.join(run_dir, "curves.png"), os.path.basename(os.path.normpath(run_dir))
    if all("cosine_rbp" in r for r in history):
        plot_history(history, path, title=title)
    else:  # diagnostics off: loss and error curves only
        _plot_loss_error(history, path, title)
    plot_convergence(history, os.path.join(run_dir, "convergence.png"), title)


def _plot_loss_error(history, path, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, ax = plt.subplots(1, 2, figsize=(8, 3.6))
    ax[0].plot(ep, [r["train_loss"] for r in history], "o-")
    ax[0].set(title="train loss", xlabel="epoch")
    ax[1].plot(ep, [r["val_error"] for r in history], "o-", color="C3", label="test")
    ax[1].plot(ep, [100 * (1 - r["train_acc"]) for r in history], "o-", color="C0", label="train (running)")
    ax[1].set(title="error (%)", xlabel="epoch")
    ax[1].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def flatten_record(rec):
    out = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            for kk, vv in v.items():
                out[f"{k}.{kk}"] = vv
        elif isinstance(v, list):
            for i, vv in enumerate(v):
                out[f"{k}.{i + 1}"] = vv
        else:
            out[k] = v
    return out
