"""Several run directories overlaid: training-dynamics figures (generalized hEP paper,
Figs. 3-4: weight angle, layer cosine vs RBP, Jacobian symmetry, validation error over
epochs; mean +/- std over seeds) and the final-error comparison table (Tables 1-2).

Runs are grouped by configuration: two runs belong to the same group when their
configs (config.json / metrics.json "config") agree on everything except the seed
(and other keys in IGNORED_KEYS, plus those named by ``ignore``, e.g. an evaluation batch
size that does not change training). A group's label lists the config entries that
differ between groups (or the entries named by ``label_by``).
"""
import json
import os

import numpy as np

IGNORED_KEYS = ("training.seed", "description", "data.data_dir")


def load_run(run_dir):
    """{"dir", "config", "history"} from run_dir/metrics.json (clear errors if missing)."""
    if not os.path.isdir(run_dir):
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist")
    path = os.path.join(run_dir, "metrics.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{run_dir!r} has no metrics.json (is it a `holoeb train` run directory?)")
    with open(path) as f:
        data = json.load(f)
    if not data.get("history"):
        raise ValueError(f"{path} has an empty history")
    return {"dir": run_dir, "config": data.get("config", {}), "history": data["history"]}


def flatten_config(cfg, prefix=""):
    out = {}
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True) if isinstance(v, list) else v
    return out


def _short(key):
    """'estimator.name' -> 'estimator', 'model.asymmetry' -> 'asymmetry'."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def _require_entries(option, keys, flats):
    """ValueError naming ``option`` for the first key that no run's flattened config has."""
    for k in keys:
        if not any(k in f for f in flats):
            raise ValueError(f"{option} {k!r} is not a config entry of any run; e.g. {sorted(flats[0])[:6]}")


def group_runs(runs, label_by=None, ignore=()):
    """Ordered {label: [runs]} grouping runs whose configs differ only by seed (and the
    config entries named in ``ignore``)."""
    all_flats = [flatten_config(r["config"]) for r in runs]
    _require_entries("--ignore", ignore, all_flats)
    skip = set(IGNORED_KEYS) | set(ignore)
    flats = [{k: v for k, v in f.items() if k not in skip} for f in all_flats]
    keys = [tuple(sorted((k, str(v)) for k, v in f.items())) for f in flats]
    groups = {}
    for key, run in zip(keys, runs):
        groups.setdefault(key, []).append(run)
    if label_by:
        _require_entries("--label-by", label_by, flats)
        names = list(label_by)
    else:
        all_keys = sorted(set().union(*flats))
        names = [k for k in all_keys if len({str(f.get(k)) for f in flats}) > 1]
        names.sort(key=lambda k: (not k.endswith(".name"), k))
    out = {}
    for key, members in groups.items():
        f = dict(key)
        parts = [f"{_short(n)}={f[n]}" for n in names if f.get(n) not in (None, "None")]
        label = ", ".join(parts) if parts else os.path.basename(os.path.normpath(members[0]["dir"]))
        base, i = label or "run", 2
        while label in out:
            label, i = f"{base} ({i})", i + 1
        out[label] = members
    return out


def series(history, key):
    """Per-epoch values of one metric. Keys: any scalar ('val_error', 'symmetry', ...),
    'cosine_rbp' -> (E, L), 'weight_angle' -> (E, pairs) in sorted pair order,
    'weight_angle_mean' -> (E,)."""
    if key == "weight_angle":
        names = sorted(history[0].get("weight_angle", {}))
        return np.array([[r["weight_angle"][n] for n in names] for r in history], float).reshape(len(history), len(names))
    if key == "weight_angle_mean":
        w = series(history, "weight_angle")
        return np.mean(w, axis=1) if w.shape[1] else np.full(len(history), np.nan)
    if key not in history[0]:
        raise ValueError(f"metric {key!r} not in the history; available: {sorted(history[0])}")
    return np.array([r[key] for r in history], float)


def mean_std(runs, key):
    """(epochs, mean, std, n) over the runs of a group, truncated to the shortest run."""
    E = min(len(r["history"]) for r in runs)
    vals = np.stack([series(r["history"][:E], key) for r in runs])
    epochs = np.array([rec["epoch"] for rec in runs[0]["history"][:E]])
    std = vals.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(vals[0])
    return epochs, vals.mean(axis=0), std, len(runs)


def compare_table(groups):
    """Rows {label, n, final_val_error_mean/std, best_val_error_mean/std, epoch, epochs,
    final_cosine_rbp_mean, final_cosine_rbp_active_mean, dirs}. Runs of a group that are still
    running (fewer epochs than others) are compared at the last epoch all of them have
    reached (``epoch``); ``epochs`` lists the epochs each run has reached, so a partial group
    shows as such."""
    rows = []
    for label, runs in groups.items():
        E = min(len(r["history"]) for r in runs)  # the last epoch every run of the group has reached
        at = [r["history"][E - 1] for r in runs]
        final = np.array([h["val_error"] for h in at], float)
        best = np.array([min(h["val_error"] for h in r["history"][:E]) for r in runs], float)
        cos = [np.mean(h["cosine_rbp"]) for h in at if "cosine_rbp" in h]
        cos_active = [np.mean(h["cosine_rbp_active"]) for h in at if "cosine_rbp_active" in h]
        sd = lambda v: float(v.std(ddof=1)) if len(v) > 1 else 0.0
        rows.append({
            "label": label, "n": len(runs),
            "epoch": at[0]["epoch"],
            "epochs": sorted({r["history"][-1]["epoch"] for r in runs}),
            "final_val_error_mean": float(final.mean()), "final_val_error_std": sd(final),
            "best_val_error_mean": float(best.mean()), "best_val_error_std": sd(best),
            "final_cosine_rbp_mean": float(np.mean(cos)) if cos else None,
            "final_cosine_rbp_active_mean": float(np.mean(cos_active)) if len(cos_active) == len(at) else None,
            "dirs": [r["dir"] for r in runs],
        })
    return rows


def format_table(rows):
    """Markdown table in the shape of the papers' Tables 1-2 (mean +/- std over seeds). The epoch
    column reads "2 (runs at 2/4)" for a group compared before all its runs have finished."""
    fmt = lambda v: f"{v:.3f}" if v is not None else "-"
    lines = ["| run | n | epoch | final val. error (%) | best val. error (%) | cos vs RBP (final) | "
             "cos vs RBP, active units |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        ep = str(r["epoch"]) if r["epochs"] == [r["epoch"]] else f"{r['epoch']} (runs at {'/'.join(map(str, r['epochs']))})"
        lines.append(f"| {r['label']} | {r['n']} | {ep} | "
                     f"{r['final_val_error_mean']:.2f} +/- {r['final_val_error_std']:.2f} | "
                     f"{r['best_val_error_mean']:.2f} +/- {r['best_val_error_std']:.2f} | "
                     f"{fmt(r['final_cosine_rbp_mean'])} | {fmt(r['final_cosine_rbp_active_mean'])} |")
    return "\n".join(lines)


def _band(ax, x, m, s, color, label, ls="-"):
    ax.plot(x, m, ls, marker="o", ms=3, color=color, label=label)
    if np.any(s > 0):
        ax.fill_between(x, m - s, m + s, color=color, alpha=0.2)


def plot_runs(groups, path, title=""):
    """Figs. 3-4: validation error, train loss, weight angle, layer cosine vs RBP and
    Jacobian symmetry over epochs; one color per group, mean +/- std over its seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 5, figsize=(22, 4))
    layer_styles = ["-", "--", ":", "-."]
    for i, (label, runs) in enumerate(groups.items()):
        c = plt.cm.tab10(i % 10)
        n = len(runs)
        lab = f"{label} (n={n})"
        for a, key in zip(ax[:2], ("val_error", "train_loss")):
            ep, m, s, _ = mean_std(runs, key)
            _band(a, ep, m, s, c, lab)
        if runs[0]["history"][0].get("weight_angle"):
            ep, m, s, _ = mean_std(runs, "weight_angle_mean")
            _band(ax[2], ep, m, s, c, lab)
        ep, m, s, _ = mean_std(runs, "cosine_rbp")
        for l in range(m.shape[1]):
            _band(ax[3], ep, m[:, l], s[:, l], c, f"{label}, layer {l + 1}" if i == 0 or l == 0 else None,
                  layer_styles[l % len(layer_styles)])
        if "symmetry" in runs[0]["history"][0]:
            ep, m, s, _ = mean_std(runs, "symmetry")
            _band(ax[4], ep, m, s, c, lab)
    ax[0].set(title="validation error (%)", xlabel="epoch")
    ax[1].set(title="train loss", xlabel="epoch")
    ax[2].set(title="angle(W_f, W_b^T) (deg, mean over layers)", xlabel="epoch")
    ax[3].set(title="layer cosine vs RBP delta (-, --, : = layer 1, 2, 3)", xlabel="epoch")
    ax[4].set(title="Jacobian symmetry ||S||/(||S||+||A||)", xlabel="epoch")
    ax[0].legend(fontsize=7)
    ax[3].legend(fontsize=6)
    fig.suptitle(title or "training dynamics (mean +/- std over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_compare(rows, groups, path):
    """The table's overlaid plot: validation error over epochs per group (mean +/- std)
    next to a bar chart of the final validation error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, (label, runs) in enumerate(groups.items()):
        ep, m, s, n = mean_std(runs, "val_error")
        _band(ax[0], ep, m, s, plt.cm.tab10(i % 10), f"{label} (n={n})")
    ax[0].set(title="validation error (%)", xlabel="epoch")
    ax[0].legend(fontsize=7)
    x = np.arange(len(rows))
    ax[1].bar(x, [r["final_val_error_mean"] for r in rows], yerr=[r["final_val_error_std"] for r in rows],
              color=[plt.cm.tab10(i % 10) for i in range(len(rows))], capsize=4)
    ax[1].set_xticks(x, [r["label"] for r in rows], rotation=20, ha="right", fontsize=7)
    ax[1].set(title="final validation error (%), mean +/- std")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
