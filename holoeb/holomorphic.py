"""Complex helpers: holomorphic softmax, real-weight x complex-activity products,
and the Cauchy contour nodes beta_k = |beta| e^{2 i pi k / N}
(generalized hEP paper, Eq. 7 and App. D.1)."""
import jax
import jax.numpy as jnp
import numpy as np


@jax.custom_jvp
def _split_exp(z):
    """exp(a + ib) = e^a (cos b + i sin b) in real arithmetic (XLA's CPU backend evaluates
    complex exp element by element; real exp / cos / sin vectorise)."""
    m = jnp.exp(jnp.real(z))
    b = jnp.imag(z)
    return jax.lax.complex(m * jnp.cos(b), m * jnp.sin(b))


@_split_exp.defjvp
def _split_exp_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    e = _split_exp(z)
    return e, e * dz


def exp(z):
    """exp(z), holomorphic; complex z in real arithmetic (same values, derivative exp(z))."""
    return _split_exp(z) if jnp.iscomplexobj(z) else jnp.exp(z)


def softmax(z, axis=-1):
    """exp(z) / sum exp(z), holomorphic in z.

    The stabilising shift uses the (real) maximum of Re z with its gradient
    stopped: subtracting a constant leaves softmax unchanged, so the function
    and its complex derivative are exact.
    """
    shift = jax.lax.stop_gradient(jnp.max(jnp.real(z), axis=axis, keepdims=True))
    e = exp(z - shift)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def log_softmax(z, axis=-1):
    shift = jax.lax.stop_gradient(jnp.max(jnp.real(z), axis=axis, keepdims=True))
    zs = z - shift
    return zs - jnp.log(jnp.sum(exp(zs), axis=axis, keepdims=True))


def matmul(s, w):
    """s @ w for a real weight w and real or complex activity s.

    A complex s is split into its real and imaginary parts stacked along the
    batch axis, so the product is one real matmul of twice the rows instead of
    a complex matmul (about 3x the cost on CPU).
    """
    if not jnp.iscomplexobj(s) or jnp.iscomplexobj(w):
        return s @ w
    n = s.shape[0]
    out = jnp.concatenate([s.real, s.imag], axis=0) @ w
    return jax.lax.complex(out[:n], out[n:])


def cauchy_nodes(beta_abs, n_points):
    """(beta_k, weight_k) with beta_k = |beta| e^{2 i pi k/N} and
    weight_k = e^{-2 i pi k/N} / (N |beta|), so that
    d_beta f(0) ~ sum_k weight_k f(beta_k)   (Eq. 7 discretised, Eq. 22).

    The leading error of this N-point rule for a holomorphic f is
    f^{(N+1)}(0) |beta|^N / (N+1)!  (App. D.1).
    """
    k = np.arange(n_points)
    phase = np.exp(2j * np.pi * k / n_points)
    return beta_abs * phase, np.conj(phase) / (n_points * beta_abs)


def cauchy_half_nodes(beta_abs, n_points):
    """Nodes of the N-point rule reduced by conjugate symmetry.

    For a system with real parameters and inputs, u*_{conj(beta)} = conj(u*_beta),
    so node N-k is the conjugate of node k and
    sum_k w_k f(beta_k) = Re-part-preserving sum over k <= N/2 with weights doubled
    for the nodes that have a distinct conjugate partner. Returns
    (real_betas, real_weights, complex_betas, complex_weights) such that
    estimate = sum_r w_r f(b_r) + 2 Re sum_c w_c f(b_c)   (exactly the N-point rule's real part).
    """
    betas, weights = cauchy_nodes(beta_abs, n_points)
    real_idx = [0] + ([n_points // 2] if n_points % 2 == 0 and n_points > 1 else [])
    cplx_idx = [k for k in range(1, (n_points + 1) // 2)]
    return (
        np.real(betas[real_idx]),
        np.real(weights[real_idx]),
        betas[cplx_idx],
        weights[cplx_idx],
    )
