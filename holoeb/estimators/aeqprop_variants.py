"""The three Aeqprop variants as a pair of nudges (beta_1, beta_2).

"Agnostic Physics-Driven Deep Learning" (Scellier, Mishra, Bengio, Ollivier, arXiv:2205.15021),
Section 4 and Appendix A (Eqs. 27-28): phase 1 holds theta at theta_{t-1} under nudge beta_1,
phase 2 releases it under nudge beta_2 > beta_1:

    optimistic   (beta_1, beta_2) = (0, beta)
    pessimistic  (beta_1, beta_2) = (-beta, 0)
    centered     (beta_1, beta_2) = (-beta/2, +beta/2)

In all three beta_2 - beta_1 = beta, so the step is eps*beta times the gradient of the
Lyapunov function L_{beta_1; beta_2} (Theorem 3, Eq. 30).
"""
import math

from holoeb.errors import ConfigError

VARIANTS = ("optimistic", "pessimistic", "centered")


def check_variant(variant):
    if variant not in VARIANTS:
        raise ConfigError(f"unknown Aeqprop variant {variant!r}; choose one of {list(VARIANTS)}")
    return variant


def check_beta(beta):
    """beta must be a finite, strictly positive Python number (it sets beta_2 - beta_1)."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ConfigError(f"beta must be a finite positive real number (beta_2 - beta_1 > 0), got {beta!r}")
    return float(beta)


def nudges(variant, beta):
    """(beta_1, beta_2) of a variant (Section 4)."""
    check_variant(variant)
    beta = check_beta(beta)
    return {
        "optimistic": (0.0, beta),
        "pessimistic": (-beta, 0.0),
        "centered": (-beta / 2.0, beta / 2.0),
    }[variant]
