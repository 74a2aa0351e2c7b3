"""Dense Hopfield-like network (784-2048-10) trained by Aeqprop on Fashion-MNIST
(Agnostic-EqProp paper, Section 5.3 and Appendix C), CPU-sized protocol.

Each training step is one call of the "aeqprop" estimator (phase 1 with the one-step
controller, phase 2 with clamped knobs, exact coordinate-wise minimisation) and the new
parameters are read off phase 2: theta <- theta_t (= theta - eps_k beta grads_k).
Test error: argmax of the output layer at the free equilibrium (beta = 0, fixed parameters).

Coupling strengths. The joint energy in (s, theta) must have a strict minimum (Assumption 6):
eliminating w_1 leaves -eps_{w1}/2 ||x^T s_1||^2 / B, a Hebbian positive feedback whose largest
eigenvalue is ~eps_{w1} lambda_max(x x^T / B) (~120 for Fashion-MNIST pixels in [0, 1], batch 32).
Beyond eps_{w1} ~ 0.003 phase 2 runs away (measured: no convergence, cosine to the true
gradient < 0.5), so the default per-component couplings are eps = (w1 0.002, w2 0.01, b 0.02)
and beta = 0.5, i.e. SGD steps eps_k beta = (0.001, 0.005, 0.01) -- smaller than Table 2's.
"""
import time

import jax
import jax.numpy as jnp
import numpy as np

from holoeb.agnostic.dense_hopfield import DenseHopfield
from holoeb.agnostic.relaxation import relax_state
from holoeb.data import load_fashion_mnist
from holoeb.estimators import make_estimator

DEFAULTS = dict(hidden=2048, beta=0.5, eps_w1=0.002, eps_w2=0.01, eps_b=0.02, batch_size=32, epochs=2,
                train_subset=0, T_free=20, T_nudged=20, T_eval=30, seed=0)


def load(split, n=0, data_dir=None):
    x, y = load_fashion_mnist(split, data_dir)
    x = x.reshape(x.shape[0], -1).astype(np.float32) / 255.0
    y = y.astype(np.int32)
    return (x[:n], y[:n]) if n else (x, y)


def evaluate(model, theta, x, y, T, batch=1000):
    @jax.jit
    def errors(th, xb, yb):
        s, _ = relax_state(model, th, xb, yb, 0.0, model.init_state(th, xb), T)
        return jnp.sum(jnp.argmax(s[-1], -1) != yb), jnp.sum(model.cost(s, yb))

    wrong, cost = 0, 0.0
    for i in range(0, len(y), batch):
        w, c = errors(theta, jnp.asarray(x[i:i + batch]), jnp.asarray(y[i:i + batch]))
        wrong, cost = wrong + int(w), cost + float(c)
    return wrong / len(y), cost / len(y)


def train_variant(variant, cfg, data, log=print):
    (xtr, ytr), (xte, yte) = data
    model = DenseHopfield(hidden=(cfg["hidden"],))
    est = make_estimator("aeqprop", variant=variant, beta=cfg["beta"], eps=cfg["eps_b"],
                         eps_per_param=(("w1", cfg["eps_w1"]), ("w2", cfg["eps_w2"])),
                         T_free=cfg["T_free"], T_nudged=cfg["T_nudged"])
    theta = model.init(jax.random.PRNGKey(cfg["seed"]))

    @jax.jit
    def step(th, xb, yb):
        r = est.estimate(model, th, (xb, yb), None)
        return r.aux["theta_next"], r.loss, r.accuracy, r.aux["phase2_residual"]

    rng = np.random.default_rng(cfg["seed"])
    B = cfg["batch_size"]
    history = []
    t0 = time.time()
    for epoch in range(cfg["epochs"]):
        order = rng.permutation(len(ytr))
        losses, accs, res = [], [], []
        for i in range(0, len(order) - B + 1, B):
            idx = order[i:i + B]
            theta, loss, acc, r2 = step(theta, jnp.asarray(xtr[idx]), jnp.asarray(ytr[idx]))
            losses.append(loss), accs.append(acc), res.append(r2)
        train_loss = float(np.mean(jax.device_get(losses)))
        train_err = 1.0 - float(np.mean(jax.device_get(accs)))
        test_err, test_cost = evaluate(model, theta, xte, yte, cfg["T_eval"])
        entry = dict(epoch=epoch + 1, train_loss=train_loss, train_error_running=train_err, test_error=test_err,
                     test_cost=test_cost, phase2_residual_max=float(np.max(jax.device_get(res))),
                     seconds=time.time() - t0)
        history.append(entry)
        log(f"[{variant}] " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()))
    return theta, history
