"""Learning-curve figures from a run's per-epoch history."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_history(history, path, title=""):
    ep = [r["epoch"] for r in history]
    fig, ax = plt.subplots(1, 5, figsize=(20, 3.6))
    ax[0].plot(ep, [r["train_loss"] for r in history], "o-")
    ax[0].set(title="train loss", xlabel="epoch")
    ax[1].plot(ep, [r["val_error"] for r in history], "o-", color="C3")
    ax[1].set(title="validation error (%)", xlabel="epoch")
    cos = np.array([r["cosine_rbp"] for r in history])
    for l in range(cos.shape[1]):
        ax[2].plot(ep, cos[:, l], "o-", label=f"layer {l + 1}")
    ax[2].set(title="cosine vs RBP delta", xlabel="epoch", ylim=(-1.05, 1.05))
    ax[2].legend(fontsize=7)
    angles = history[0]["weight_angle"]
    for name in angles:
        ax[3].plot(ep, [r["weight_angle"][name] for r in history], "o-", label=name)
    ax[3].set(title="angle(W_f, W_b^T) (deg)", xlabel="epoch")
    if angles:
        ax[3].legend(fontsize=7)
    ax[4].plot(ep, [r["symmetry"] for r in history], "o-", color="C2")
    ax[4].set(title="Jacobian symmetry ||S||/(||S||+||A||)", xlabel="epoch")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_convergence(history, path, title=""):
    """Whether the relaxations converged as training went, next to the error curve: error
    (test, running train), free / nudged residuals (median, max, fraction above tolerance),
    weight norms per parameter, the cosine of the update to RBP's / TBP's gradient, and the
    fraction of each hidden layer's units at the lower / upper clamp (probe batch, free state)."""
    ep = [r["epoch"] for r in history]
    get = lambda key: [r.get(key, np.nan) for r in history]
    fig, ax = plt.subplots(1, 6, figsize=(25, 3.6))
    ax[0].plot(ep, get("val_error"), "o-", color="C3", label="test")
    ax[0].plot(ep, [100 * (1 - a) for a in get("train_acc")], "o-", color="C0", label="train (running)")
    ax[0].set(title="error (%)", xlabel="epoch")
    ax[0].legend(fontsize=7)
    for key, color, label in (("train_residual", "C0", "free max"), ("train_residual_median", "C0", "free median"),
                              ("train_nudge_residual", "C1", "nudged max"),
                              ("train_nudge_residual_median", "C1", "nudged median")):
        ax[1].semilogy(ep, get(key), "o-" if "median" in key else "s--", color=color, label=label, ms=4)
    ax[1].set(title="residual (mean over steps)", xlabel="epoch")
    ax[1].legend(fontsize=7)
    ax[2].plot(ep, [100 * v for v in get("train_unconverged")], "o-", color="C0", label="free")
    ax[2].plot(ep, [100 * v for v in get("train_nudge_unconverged")], "s--", color="C1", label="nudged")
    ax[2].plot(ep, [100 * v for v in get("val_unconverged")], "^:", color="C3", label="test free")
    ax[2].set(title="examples above tolerance (%)", xlabel="epoch")
    ax[2].legend(fontsize=7)
    names = list(history[-1].get("weight_norm", {}))
    for name in names:
        ax[3].plot(ep, [r.get("weight_norm", {}).get(name, np.nan) for r in history], "o-", ms=3, label=name)
    ax[3].set(title="parameter norms", xlabel="epoch")
    if names:
        ax[3].legend(fontsize=6, ncol=2)
    ax[4].plot(ep, get("update_cosine_rbp"), "o-", color="C2", label="vs RBP")
    ax[4].plot(ep, get("update_cosine_tbp"), "s--", color="C4", label="vs TBP")
    ax[4].set(title="cosine of the update (probe batch)", xlabel="epoch", ylim=(-1.05, 1.05))
    ax[4].legend(fontsize=7)
    n_layers = len(history[-1].get("clamped_lower", []))
    for l in range(n_layers - 1):  # hidden layers (the output layer is unbounded unless boxed)
        for key, style in (("clamped_lower", "o-"), ("clamped_upper", "s--"), ("frozen", "x:")):
            vals = [100 * r[key][l] if key in r else np.nan for r in history]
            ax[5].plot(ep, vals, style, color=f"C{l}", ms=3, label=f"layer {l + 1} {key.split('_')[-1]}")
    ax[5].set(title="units at a clamp / at one clamp for every probe example (frozen), %", xlabel="epoch",
              ylim=(-3, 103))
    if n_layers:
        ax[5].legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
