"""The experiments of "Agnostic Physics-Driven Deep Learning" (Scellier, Mishra, Bengio, Ollivier,
arXiv:2205.15021): linear regression (Section 5.2, Figs. 2-3) and a dense Hopfield network
trained on Fashion-MNIST (Section 5.3, Appendix C). `holoeb aeqprop-linreg` and
`holoeb aeqprop-fmnist` (holoeb/commands/aeqprop.py) parse arguments and call these.

Linear regression. Fourier features up to frequency 10, a random degree-10 Legendre target
(Eq. 19), samples z ~ U[-1, 1] presented one at a time; SGD with step eps*beta against
optimistic, pessimistic and centered Aeqprop. The plotted loss is the true loss of the
model's free prediction, J(theta) = mean_z 1/2 (s_0(theta, z) - f(z))^2 on a uniform grid of
512 points of [-1, 1]. Simulation modes: "gradient" (the paper's: Eqs. 14-17, 50 steps per
phase, iterative controller, knobs carried over from one sample to the next) or "exact"
(block-exact minimisation with the one-step controller).

Fashion-MNIST. The registered 'hopfield' model in the paper's setting (784-2048-10,
init_scheme 'xavier_half' with gains (0.8, 1.2), output box [-1, 2], cost_scale 1/2). Each
training step is one call of the "aeqprop" estimator (phase 1 with the one-step controller,
phase 2 with clamped knobs, exact block minimisation) and the new parameters are read off
phase 2: theta <- theta_t (= theta - eps_k beta grads_k). Test error: argmax of the output
layer at the free equilibrium (beta = 0, fixed parameters).

Coupling strengths. The joint energy in (s, theta) must have a strict minimum (Assumption 6):
eliminating w_1 leaves -eps_{w1}/2 ||x^T s_1||^2 / B, a Hebbian positive feedback whose largest
eigenvalue is ~eps_{w1} lambda_max(x x^T / B) (~120 for Fashion-MNIST pixels in [0, 1], batch 32).
Beyond eps_{w1} ~ 0.003 phase 2 runs away (measured: no convergence, cosine to the true
gradient < 0.5), so the default per-component couplings are eps = (w1 0.002, w2 0.01, b 0.02)
and beta = 0.5, i.e. SGD steps eps_k beta = (0.001, 0.005, 0.01) -- smaller than Table 2's.
These runs go through the one training loop (holoeb.training.train, `fmnist_train_config`).
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from holoeb.errors import ConfigError
from holoeb.estimators.aeqprop_procedure import aeqprop_step
from holoeb.estimators.base import check_positive_int
from holoeb.estimators.aeqprop_variants import nudges
from holoeb.models import make_model
from holoeb.models.fourier_regression import FourierRegression
from holoeb.reports import write_json

# ---- linear regression (Section 5.2) ------------------------------------------------------
METHODS = ("sgd", "optimistic", "pessimistic", "centered")


def random_legendre_target(rng, degree=10):
    """f(z) = sum_{i<=d} w_i L_i(z), w_i ~ N(0, 1)  (Eq. 19). Returns numpy Legendre coefficients."""
    return np.asarray(jax.random.normal(rng, (degree + 1,)), np.float64)


def legendre_eval(coeffs, z):
    """Evaluate sum_i c_i L_i(z) by the three-term recurrence (jit-able)."""
    z = jnp.asarray(z)
    p_prev, p = jnp.ones_like(z), z
    out = coeffs[0] * p_prev + (coeffs[1] * p if len(coeffs) > 1 else 0.0)
    for n in range(1, len(coeffs) - 1):
        p_prev, p = p, ((2 * n + 1) * z * p - n * p_prev) / (n + 1)
        out = out + coeffs[n + 1] * p
    return out


def make_problem(seed, num_samples, degree=10):
    key = jax.random.PRNGKey(seed)
    k1, k2 = jax.random.split(key)
    coeffs = random_legendre_target(k1, degree)
    z = jax.random.uniform(k2, (num_samples,), jnp.float32, -1.0, 1.0)
    grid = jnp.linspace(-1.0, 1.0, 512)
    return coeffs, z, legendre_eval(coeffs, z), grid, legendre_eval(coeffs, grid)


def run_method(model, method, eps, beta, z, y, grid, fgrid, mode="gradient", steps=50):
    """Train from theta = 0 on the sample sequence; returns the loss curve (num_samples + 1,)."""
    theta0 = model.init()

    def test_loss(theta):
        return jnp.mean(0.5 * (model.free_prediction(theta, grid[:, None]) - fgrid) ** 2)

    if method == "sgd":
        def step(carry, zy):
            theta, u = carry
            x, t = zy[0].reshape(1, 1), zy[1].reshape(1)
            g = jax.grad(lambda p: jnp.mean(0.5 * (model.free_prediction(p, x) - t) ** 2))(theta)
            theta = jax.tree_util.tree_map(lambda p, gi: p - eps * beta * gi, theta, g)
            return (theta, u), test_loss(theta)
    else:
        b1, b2 = nudges(method, beta)
        relax, ctrl = ("gradient", "iterative") if mode == "gradient" else ("exact", "one_step")

        def step(carry, zy):
            theta, u = carry
            x, t = zy[0].reshape(1, 1), zy[1].reshape(1)
            out = aeqprop_step(model, theta, x, t, eps=eps, beta1=b1, beta2=b2, relaxation=relax,
                               controller=ctrl, steps1=steps, steps2=steps, u0=u)
            return (out.theta, out.u), test_loss(out.theta)

    _, curve = jax.lax.scan(step, (theta0, theta0), (z, y))
    return np.concatenate([[float(test_loss(theta0))], np.asarray(curve)])


def run_grid(betas, epss, num_samples, state_l2=0.0, seed=0, mode="gradient", steps=50, methods=METHODS):
    model = FourierRegression(max_freq=10, state_l2=state_l2)
    coeffs, z, y, grid, fgrid = make_problem(seed, num_samples)
    curves = {}
    for beta in betas:
        for eps in epss:
            for m in methods:
                curves[(beta, eps, m)] = run_method(model, m, eps, beta, z, y, grid, fgrid, mode, steps)
    return curves, coeffs


def plot_grid(curves, betas, epss, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(betas), len(epss), figsize=(4 * len(epss), 3 * len(betas)), squeeze=False)
    styles = {"sgd": ("k", "-"), "optimistic": ("C0", "--"), "pessimistic": ("C3", "-."), "centered": ("C2", ":")}
    for i, beta in enumerate(betas):
        for j, eps in enumerate(epss):
            ax = axes[i, j]
            for m, (c, ls) in styles.items():
                if (beta, eps, m) not in curves:
                    continue
                v = np.asarray(curves[(beta, eps, m)], np.float64)
                v = np.where(np.isfinite(v), v, np.nan)
                ax.plot(np.clip(v, 1e-6, 1e6), color=c, ls=ls, lw=1.3, label=m if m == "sgd" else f"{m} Aeqprop")
            ax.set_yscale("log")
            ax.set_title(f"beta={beta}, eps={eps}", fontsize=9)
            ax.set_xlabel("samples")
            ax.set_ylabel("test loss")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- dense Hopfield on Fashion-MNIST (Section 5.3) -------------------------------------------
FMNIST_DEFAULTS = dict(hidden=2048, beta=0.5, eps_w1=0.002, eps_w2=0.01, eps_b=0.02, batch_size=32, epochs=2,
                       train_subset=0, T_free=20, T_nudge=20, seed=0)


def fmnist_model(hidden):
    """The registered 'hopfield' model in the Aeqprop paper's setting (Sec. 5.3, App. C)."""
    return make_model("hopfield", in_features=784, hidden=(int(hidden),), num_classes=10, gains=(0.8, 1.2),
                      init_scheme="xavier_half", output_bounds=(-1.0, 2.0), cost_scale=0.5)


def fmnist_train_config(variant, cfg, data_dir=None):
    """The `holoeb.training` config of one Aeqprop variant on Fashion-MNIST (Sec. 5.3).

    Each step is one call of the "aeqprop" estimator, whose grads are
    (theta_{t-1} - theta_t) / (eps_k (beta_2 - beta_1)); SGD with learning rate
    beta_2 - beta_1 (= beta for every variant) and per-parameter scales eps_k therefore
    applies exactly theta_t, the parameters read off phase 2. Pixels stay in [0, 1]
    (no normalisation, no flips): the couplings' stability bound depends on that scale."""
    eps = {"w1": cfg["eps_w1"], "w2": cfg["eps_w2"], "b1": cfg["eps_b"], "b2": cfg["eps_b"]}
    m = fmnist_model(cfg["hidden"])
    return {
        "model": {"name": "hopfield", "in_features": 784, "hidden": [int(cfg["hidden"])], "num_classes": 10,
                  "gains": list(m.gains), "init_scheme": m.init_scheme, "output_bounds": list(m.output_bounds),
                  "cost_scale": m.cost_scale},
        "estimator": {"name": "aeqprop", "variant": variant, "beta": cfg["beta"], "eps": cfg["eps_b"],
                      "eps_per_param": [["w1", cfg["eps_w1"]], ["w2", cfg["eps_w2"]]],
                      "T_free": int(cfg["T_free"]), "T_nudge": int(cfg["T_nudge"]), "input_shortcut": True},
        "optimizer": {"name": "sgd", "learning_rate": float(cfg["beta"]), "momentum": 0.0, "lr_scales": eps},
        "data": {"dataset": "fashion_mnist", "data_dir": data_dir, "train_size": int(cfg["train_subset"]) or None,
                 "random_flip": False, "normalize": False},
        "training": {"batch_size": int(cfg["batch_size"]), "epochs": int(cfg["epochs"]), "seed": int(cfg["seed"])},
        "diagnostics": {"enabled": False},
    }


def train_fmnist_variant(variant, cfg, run_dir, data_dir=None, log=print, progress=True):
    """Train one variant through `holoeb.training.train` in ``run_dir`` (resumable); returns
    its history as fractions: train_loss, train_error_running, test_error, test_loss, seconds."""
    from holoeb.training import train

    history = train(fmnist_train_config(variant, cfg, data_dir), run_dir, progress=progress, log=log)
    t = 0.0
    out = []
    for r in history:
        t += r["epoch_time_s"]
        out.append(dict(epoch=r["epoch"], train_loss=r["train_loss"], train_error_running=1.0 - r["train_acc"],
                        test_error=r["val_error"] / 100.0, test_cost=r["val_loss"], seconds=t))
    return history, out


# ---- experiment drivers (output directories) -------------------------------------------------
def _num(v):
    v = float(v)
    return v if np.isfinite(v) else str(v)


def run_linreg_experiment(out, modes=("gradient", "exact"), steps=50, samples=1000, samples_fig3=5000, seed=0,
                          log=print):
    """Figs. 2 and 3: fig2_<mode>.png, fig3_<mode>.png and results.json in ``out``."""
    import os

    for name, v in (("steps", steps), ("samples", samples), ("samples_fig3", samples_fig3)):
        check_positive_int(name, v)
    check_positive_int("seed", seed, minimum=0)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out!r} is a file, not a directory")
    os.makedirs(out, exist_ok=True)
    results = {"protocol": {"features": "Fourier up to frequency 10", "target": "random degree-10 Legendre",
                            "steps_per_phase": steps, "samples_fig2": samples, "samples_fig3": samples_fig3,
                            "seed": seed, "loss": "mean 1/2 (s_0(theta,z) - f(z))^2 on 512 grid points"}}
    for mode in modes:
        t0 = time.time()
        betas, epss = (0.5, 0.1, 0.01), (0.5, 0.1, 0.01)
        curves, _ = run_grid(betas, epss, samples, seed=seed, mode=mode, steps=steps)
        plot_grid(curves, betas, epss, os.path.join(out, f"fig2_{mode}.png"),
                  f"Aeqprop linear regression ({mode} relaxation); rows beta, columns eps")
        curves3, _ = run_grid((1.5,), epss, samples_fig3, state_l2=1.0, seed=seed, mode=mode, steps=steps)
        plot_grid(curves3, (1.5,), epss, os.path.join(out, f"fig3_{mode}.png"),
                  f"beta = 1.5 with the ||s||^2 stabiliser ({mode} relaxation)")
        summ = lambda cs: {f"beta={b},eps={e},{m}": {"final": _num(v[-1]), "mean_last_100": _num(np.mean(v[-100:]))}
                           for (b, e, m), v in cs.items()}
        results[mode] = {"fig2": summ(curves), "fig3": summ(curves3), "seconds": time.time() - t0}
        log(f"[{mode}] done in {time.time() - t0:.1f}s")
    write_json(os.path.join(out, "results.json"), results)
    log(f"wrote {out}/results.json and figures")
    return results


def run_fmnist_experiment(out, cfg, variants=("optimistic", "pessimistic", "centered"), data_dir=None, log=print):
    """Train each variant; results.json (history per variant) and fmnist.png in ``out``."""
    import os

    os.makedirs(out, exist_ok=True)
    results = {"config": cfg, "variants": {}}
    for v in variants:
        _, hist = train_fmnist_variant(v, cfg, os.path.join(out, v), data_dir, log)
        results["variants"][v] = {"history": hist, "final_test_error": hist[-1]["test_error"]}
        write_json(os.path.join(out, "results.json"), results)
    plot_fmnist(results, os.path.join(out, "fmnist.png"))
    for v, r in results["variants"].items():
        log(f"{v}: test error {100 * r['final_test_error']:.2f}%")
    return results


def plot_fmnist(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for v, r in results["variants"].items():
        h = r["history"]
        ax.plot([e["epoch"] for e in h], [100 * e["test_error"] for e in h], "o-", label=f"{v} Aeqprop")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_title(f"Dense Hopfield 784-{results['config']['hidden']}-10, Fashion-MNIST")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
