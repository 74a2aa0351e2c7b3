"""The linear-regression experiment of Section 5.2 (Figs. 2 and 3 of the Agnostic-EqProp paper).

Fourier features up to frequency 10, a random degree-10 Legendre target (Eq. 19), samples
z ~ U[-1, 1] presented one at a time; SGD with step eps*beta against optimistic, pessimistic
and centered Aeqprop. The plotted loss is the true loss of the model's free prediction,
J(theta) = mean_z 1/2 (s_0(theta, z) - f(z))^2 on a uniform grid of 512 points of [-1, 1].

Simulation modes: "gradient" (the paper's: Eqs. 14-17, 50 steps per phase, iterative
controller, knobs carried over from one sample to the next) or "exact" (block-exact
minimisation with the one-step controller).
"""
import jax
import jax.numpy as jnp
import numpy as np

from holoeb.agnostic.linear_regression import FourierRegression, legendre_eval, random_legendre_target
from holoeb.agnostic.procedure import aeqprop_step
from holoeb.agnostic.variants import nudges

METHODS = ("sgd", "optimistic", "pessimistic", "centered")


def make_problem(seed, num_samples, degree=10):
    key = jax.random.PRNGKey(seed)
    k1, k2 = jax.random.split(key)
    coeffs = random_legendre_target(k1, degree)
    z = jax.random.uniform(k2, (num_samples,), jnp.float32, -1.0, 1.0)
    grid = jnp.linspace(-1.0, 1.0, 512)
    return coeffs, z, legendre_eval(coeffs, z), grid, legendre_eval(coeffs, grid)


def run_method(system, method, eps, beta, z, y, grid, fgrid, mode="gradient", steps=50):
    """Train from theta = 0 on the sample sequence; returns the loss curve (num_samples + 1,)."""
    theta0 = system.init()

    def test_loss(theta):
        return jnp.mean(0.5 * (system.free_prediction(theta, grid[:, None]) - fgrid) ** 2)

    if method == "sgd":
        def step(carry, zy):
            theta, u = carry
            x, t = zy[0].reshape(1, 1), zy[1].reshape(1)
            g = jax.grad(lambda p: jnp.mean(0.5 * (system.free_prediction(p, x) - t) ** 2))(theta)
            theta = jax.tree_util.tree_map(lambda p, gi: p - eps * beta * gi, theta, g)
            return (theta, u), test_loss(theta)
    else:
        b1, b2 = nudges(method, beta)
        relax, ctrl = ("gradient", "iterative") if mode == "gradient" else ("exact", "one_step")

        def step(carry, zy):
            theta, u = carry
            x, t = zy[0].reshape(1, 1), zy[1].reshape(1)
            out = aeqprop_step(system, theta, x, t, eps=eps, beta1=b1, beta2=b2, relaxation=relax,
                               controller=ctrl, steps1=steps, steps2=steps, u0=u)
            return (out.theta, out.u), test_loss(out.theta)

    _, curve = jax.lax.scan(step, (theta0, theta0), (z, y))
    return np.concatenate([[float(test_loss(theta0))], np.asarray(curve)])


def run_grid(betas, epss, num_samples, state_l2=0.0, seed=0, mode="gradient", steps=50, methods=METHODS):
    system = FourierRegression(max_freq=10, state_l2=state_l2)
    coeffs, z, y, grid, fgrid = make_problem(seed, num_samples)
    curves = {}
    for beta in betas:
        for eps in epss:
            for m in methods:
                curves[(beta, eps, m)] = run_method(system, m, eps, beta, z, y, grid, fgrid, mode, steps)
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
