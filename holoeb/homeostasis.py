"""Jacobian homeostasis and the functional-symmetry measure (generalized hEP paper,
Sec. 3.4, Eq. 12, App. A.2).

With J the Jacobian of the vector field at the free fixed point and
A = (J - J^T)/2, S = (J + J^T)/2 (Eq. 18, Hutchinson with E[eps eps^T] = I):

    ||A||_F^2 = 1/2 E[ ||J eps||^2 - eps^T J^2 eps ]     ||S||_F^2 = 1/2 E[ ||J eps||^2 + eps^T J^2 eps ]
    L_homeo   = E_eps[ ||J eps||^2 - eps^T J^2 eps ]  (= 2 ||A||^2)                     (Eq. 12)

J eps is a jvp and eps^T J^2 eps = (J^T eps) . (J eps) a vjp: no dense Jacobian.

Coordinates. J depends on the coordinates the state is written in:
- "pre_activation": J = dPhi/du - I. For the MLP this is W D - I with
  D = diag sigma'(u*): not symmetric even for symmetric W.
- "activity" (default when the model has activity coordinates, ``phi_activity``): J = dPhi/ds - I with
  s = sigma(u), i.e. J = W - I for the MLP whatever the state -- symmetric exactly
  when W is, and this is the symmetry that makes d sigma(u*)/d beta equal RBP's
  delta (push-through identity, see holoeb/estimators/base.py). Models with
  state-dependent couplings keep a state-dependent J here: the conv net
  (holoeb/models/conv.py, feedback='activity') has J = H(s) - I with H the
  derivative of the pooled forward/backward modules, a function of s through the
  softmax-pooling weights; it is symmetric for tied kernels (then Phi = dE/ds).
  The conv net with the literal D.2 feedback (u_{l+1}) has no phi_activity and
  defaults to pre-activation coordinates.

Normalisation. ``normalize="sum"`` is Eq. 12 as printed (a sum over all state
units, so its scale grows with the network). ``normalize="per_unit"`` divides by
the number of state units n (per example), as the authors' released code does;
the lambda_homeo values of the paper's Tables 3-4 (0.1-15) refer to that scale,
so it is the default. With the sum, lambda = 10 on the CPU-sized conv net (3.6k
units) diverges in a few steps.

Gradient. The parameter gradient of L_homeo is taken by autodiff with the free
fixed point u* held constant (stop_gradient): L_homeo is a penalty on the local
linearisation the system uses at its current equilibrium, and the dependence of
u* on theta would need a second implicit solve (second-order terms) for a
regulariser whose role is only to shape J; the paper's homeostatic learning rule
is likewise local in time.
"""
import jax
import jax.numpy as jnp

from holoeb.errors import ConfigError


def _vector_field(model, net, x, u_star, coordinates):
    """(map z -> F(z), point z*) in the requested coordinates, F = map - identity."""
    if coordinates not in ("activity", "pre_activation"):
        raise ConfigError(f"unknown coordinates {coordinates!r}; use 'activity' or 'pre_activation'")
    if coordinates == "activity" and not model.has_activity_coordinates:
        raise ConfigError(f"{type(model).__name__} has no activity coordinates (phi_activity): use coordinates='pre_activation'")
    drive = model.drive(net, x)
    if coordinates == "activity":
        z = model.activities(u_star)
        f = lambda s: tuple(a - b for a, b in zip(model.phi_activity(net, s, drive), s))
    else:
        z = u_star
        f = lambda u: tuple(a - b for a, b in zip(model.phi(net, u, drive), u))
    return f, z


def default_coordinates(model):
    return "activity" if model.has_activity_coordinates else "pre_activation"


def _per_example_dot(a, b):
    return sum(jnp.sum((p * q).reshape(p.shape[0], -1), axis=1) for p, q in zip(a, b))


def hutchinson_traces(model, net, x, u_star, rng, num_samples=5, coordinates=None):
    """Per-example Hutchinson estimates (Tr J^T J, Tr J^2), each of shape (num_samples, B)."""
    coordinates = coordinates or default_coordinates(model)
    f, z = _vector_field(model, net, x, jax.lax.stop_gradient(u_star), coordinates)
    _, jvp_fn = jax.linearize(f, z)
    _, vjp_fn = jax.vjp(f, z)

    def one(key):
        keys = jax.random.split(key, len(z))
        eps = tuple(jax.random.normal(k, v.shape, v.dtype) for k, v in zip(keys, z))
        je = jvp_fn(eps)
        (jte,) = vjp_fn(eps)
        return _per_example_dot(je, je), _per_example_dot(jte, je)

    return jax.vmap(one)(jax.random.split(rng, num_samples))


NORMALIZATIONS = ("sum", "per_unit")


def state_units(u):
    """Number of state units per example."""
    return sum(int(v[0].size) for v in u)


def homeostatic_loss(model, net, x, u_star, rng, num_samples=5, coordinates=None, normalize="per_unit"):
    """L_homeo = E_eps[||J eps||^2 - eps^T J^2 eps], averaged over samples and batch (Eq. 12);
    divided by the number of state units when normalize == "per_unit"."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    jtj, j2 = hutchinson_traces(model, net, x, u_star, rng, num_samples, coordinates)
    loss = jnp.mean(jtj - j2)
    return loss / state_units(u_star) if normalize == "per_unit" else loss


def homeostatic_grad(model, params, x, u_star, rng, num_samples=5, coordinates=None, normalize="per_unit"):
    """(L_homeo, dL_homeo/dparams) with u* held constant; the readout gets zeros."""
    val, g_net = jax.value_and_grad(
        lambda n: homeostatic_loss(model, n, x, u_star, rng, num_samples, coordinates, normalize)
    )(params["net"])
    return val, {"net": g_net, "readout": jax.tree_util.tree_map(jnp.zeros_like, params["readout"])}


def symmetry_measure(model, net, x, u_star, rng, num_samples=5, coordinates=None):
    """Batch mean of ||S|| / (||S|| + ||A||) at the free fixed point (Sec. 4), Hutchinson-estimated.

    Returns (measure, ||A||^2 per example mean, ||S||^2 per example mean)."""
    jtj, j2 = hutchinson_traces(model, net, x, u_star, rng, num_samples, coordinates)
    a2 = jnp.maximum(0.5 * jnp.mean(jtj - j2, axis=0), 0.0)
    s2 = jnp.maximum(0.5 * jnp.mean(jtj + j2, axis=0), 0.0)
    ns, na = jnp.sqrt(s2), jnp.sqrt(a2)
    return jnp.mean(ns / (ns + na)), jnp.mean(a2), jnp.mean(s2)
