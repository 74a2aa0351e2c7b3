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
