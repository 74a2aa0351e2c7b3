"""Dense layered Hopfield-like network with parameters as floating variables
(Agnostic-EqProp paper, Section 5.3, Eqs. 20-21, Appendix C).

State s = (s_1, ..., s_N) in the box S = prod_k [p_k, q_k]^{n_k}, input s_0 = x,
row-vector convention (w_k has shape (n_{k-1}, n_k)):

    E(theta, x, s) = sum_k 1/2 ||s_k||^2 - sum_k s_{k-1} w_k s_k^T - sum_k b_k . s_k     (Eq. 20-21)
    C(s, y)        = 1/2 ||s_N - onehot(y)||^2

(The paper writes C = ||s_N - y||^2; we keep the 1/2 of Section 5.2 so that the output's
quadratic coefficient (1 + beta)/2 stays positive for the pessimistic nudge -beta = -0.5;
with the paper's C it would vanish and the output energy be flat.)

Coordinate-wise exact minimisation (Section 5.3, z* = clip(-b/2a)): units within a layer do
not interact, so a whole layer is one exact block update,

    hidden k:  s_k = clip(s_{k-1} w_k + s_{k+1} w_{k+1}^T + b_k, p_k, q_k)
    output N:  s_N = argmin_{[p_N, q_N]} (1+beta)/2 z^2 - (s_{N-1} w_N + b_N + beta y) z,

and, with the coupling ||u - theta||^2 / 2 eps, every parameter is an independent quadratic,
relaxed in parallel (mean over the batch, see holoeb.agnostic.coupling):

    w_k = u_{w_k} + eps_{w_k} mean_i s_{k-1,i}^T s_{k,i},       b_k = u_{b_k} + eps_{b_k} mean_i s_{k,i}.
"""
import dataclasses
import math

import jax
import jax.numpy as jnp

from holoeb.agnostic.box import box_quadratic_argmin


@dataclasses.dataclass(frozen=True)
class DenseHopfield:
    in_features: int = 784
    hidden: tuple = (2048,)
    num_classes: int = 10
    gains: tuple = (0.8, 1.2)  # Table 2
    hidden_bounds: tuple = (0.0, 1.0)
    output_bounds: tuple = (-1.0, 2.0)
    dtype: str = "float32"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "gains", tuple(float(g) for g in self.gains))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}")
        if len(self.gains) != len(self.hidden) + 1:
            raise ValueError(f"need one gain per weight matrix ({len(self.hidden) + 1}), got {self.gains}")
        for name, (lo, hi) in (("hidden_bounds", self.hidden_bounds), ("output_bounds", self.output_bounds)):
            if not lo < hi:
                raise ValueError(f"{name} must be an interval (lo < hi), got {(lo, hi)}")

    @property
    def sizes(self):
        return (self.in_features,) + self.hidden + (self.num_classes,)

    @property
    def num_layers(self):
        return len(self.sizes) - 1

    @property
    def input_shape(self):
        return (self.in_features,)

    def init(self, rng):
        """Half Xavier-uniform weights (Eq. 113), zero biases."""
        dt = jnp.dtype(self.dtype)
        keys = jax.random.split(rng, self.num_layers)
        theta = {}
        for k in range(1, self.num_layers + 1):
            fi, fo = self.sizes[k - 1], self.sizes[k]
            c = self.gains[k - 1] / 2.0 * math.sqrt(6.0 / (fi + fo))
            theta[f"w{k}"] = jax.random.uniform(keys[k - 1], (fi, fo), dt, -c, c)
            theta[f"b{k}"] = jnp.zeros((fo,), dt)
        return theta

    def init_state(self, theta, x):
        return tuple(jnp.zeros((x.shape[0], n), x.dtype) for n in self.sizes[1:])

    def bounds(self):
        return (tuple(self.hidden_bounds),) * len(self.hidden) + (tuple(self.output_bounds),)

    def check_batch(self, x, y):
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"inputs must have shape (B, {self.in_features}), got {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if not jnp.issubdtype(y.dtype, jnp.integer):
            raise ValueError(f"labels must be integer class indices, got dtype {y.dtype}")

    def check_nudge(self, beta):
        """Bounded box: any beta gives a minimum (beta <= -1 puts the output on the box's ends)."""

    def target(self, y):
        return jax.nn.one_hot(y, self.num_classes)

    def energy(self, theta, x, s):
        prev = x
        e = 0.0
        for k, sk in enumerate(s, start=1):
            e = e + 0.5 * jnp.sum(sk**2, 1) - jnp.sum((prev @ theta[f"w{k}"]) * sk, 1) - sk @ theta[f"b{k}"]
            prev = sk
        return e

    def cost(self, s, y):
        return 0.5 * jnp.sum((s[-1] - self.target(y).astype(s[-1].dtype)) ** 2, 1)

    def predict(self, s):
        return s[-1]

    # ---- exact coordinate-wise minimisation ---------------------------------------
    def layer_update(self, theta, x, y, beta, s, k, first_drive=None):
        """Exact minimiser of the global energy over layer k (1-based) given the others.
        ``first_drive`` optionally replaces x w_1 (see `phase2_relax`)."""
        N = self.num_layers
        prev = x if k == 1 else s[k - 2]
        h = (first_drive if (k == 1 and first_drive is not None) else prev @ theta[f"w{k}"]) + theta[f"b{k}"]
        if k < N:
            h = h + s[k] @ theta[f"w{k + 1}"].T
            lo, hi = self.hidden_bounds
            return jnp.clip(h, lo, hi)
        lo, hi = self.output_bounds
        t = self.target(y).astype(h.dtype)
        return box_quadratic_argmin(0.5 * (1.0 + beta), -(h + beta * t), lo, hi).astype(h.dtype)

    def first_drive(self, theta, x):
        """x w_1: constant while the parameters are fixed (computed once per relaxation)."""
        return x @ theta["w1"]

    def state_sweep(self, theta, x, y, beta, s, backward=False, first_drive=None):
        """One iteration: every layer relaxed once, first-to-last or last-to-first (App. C)."""
        s = list(s)
        order = range(self.num_layers, 0, -1) if backward else range(1, self.num_layers + 1)
        for k in order:
            s[k - 1] = self.layer_update(theta, x, y, beta, s, k, first_drive)
        return tuple(s)

    def argmin_params(self, u, eps, x, s, skip_w1=False):
        """All parameters relaxed in parallel: theta = u - eps dE/dtheta(s) (exact, E is linear in theta)."""
        B = x.shape[0]
        theta = {}
        prev = x
        for k, sk in enumerate(s, start=1):
            if not (skip_w1 and k == 1):
                theta[f"w{k}"] = u[f"w{k}"] + eps[f"w{k}"] * (prev.T @ sk) / B
            theta[f"b{k}"] = u[f"b{k}"] + eps[f"b{k}"] * jnp.mean(sk, 0)
            prev = sk
        return theta

    def phase2_relax(self, u, eps, x, y, beta, s, num_steps):
        """Phase 2 with clamped knobs: `num_steps` x [layers last-to-first, then all parameters
        in parallel]. Same sequence as alternating `state_sweep(backward=True)` and
        `argmin_params`, but w_1 (n_0 x n_1) is never materialised inside the loop:

            x w_1 = x u_{w_1} + eps_{w_1} (x x^T / B) s_1        (s_1 from the last parameter update).

        Returns (state, theta, per-example change of the state at the last iteration)."""
        B = x.shape[0]
        xu = x @ u["w1"]
        gram_eps = eps["w1"] * (x @ x.T) / B if jnp.ndim(eps["w1"]) == 0 else None
        if gram_eps is None:  # per-component eps on w_1: no shortcut
            def body(_, carry):
                s, theta, _ = carry
                new = self.state_sweep(theta, x, y, beta, s, backward=True)
                return new, self.argmin_params(u, eps, x, new), _state_change(new, s)
        else:
            def body(_, carry):
                s, theta, _ = carry
                drive = xu + gram_eps @ theta["_s1"]
                net = {k: v for k, v in theta.items() if k != "_s1"}
                new = self.state_sweep(net, x, y, beta, s, backward=True, first_drive=drive)
                small = self.argmin_params(u, eps, x, new, skip_w1=True)
                small["w1"] = net["w1"]  # stale, unused in the loop: the drive replaces x w_1
                small["_s1"] = new[0]
                return new, small, _state_change(new, s)
        theta0 = self.argmin_params(u, eps, x, s)
        res0 = jnp.full((B,), jnp.inf, x.dtype)
        if gram_eps is None:
            s, theta, res = jax.lax.fori_loop(0, num_steps, body, (s, theta0, res0))
            return s, theta, res
        theta0 = dict(theta0, _s1=s[0])
        s, theta, res = jax.lax.fori_loop(0, num_steps, body, (s, theta0, res0))
        theta = self.argmin_params(u, eps, x, s)
        return s, theta, res


def _state_change(new, old):
    return jnp.sqrt(sum(jnp.sum((a - b) ** 2, 1) for a, b in zip(new, old)))
