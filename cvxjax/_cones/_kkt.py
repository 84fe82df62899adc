"""Jacobian of a projection onto a 3-d cone at a smooth boundary point (exp and power cones).

At a point p of the smooth part of ∂K with outward normal ∇g and multiplier λ ≥ 0
(``v0 = p + λ∇g``), differentiating ``p − v0 + λ∇g(p) = 0, g(p) = 0`` gives

    DΠ(v0) = W − (W∇g)(W∇g)ᵀ / (∇gᵀ W ∇g),      W = (I + λ∇²g)^{-1}.

For both the exponential and the power cone, ∇²g is rank one with its range in the first two
coordinates, ``∇²g ∝ q qᵀ``. In the orthonormal basis ``B = [p̂, q̂, e₃]`` (p̂ ⊥ q̂ in the
first two coordinates) W is therefore ``diag(1, η, 1)`` with ``η = 1/(1 + λ‖∇²g‖) ∈ (0, 1]``,
and with ``t = W^{1/2} Bᵀ∇g``:

    DΠ = B · W^{1/2} (I − t̂ t̂ᵀ) W^{1/2} · Bᵀ.

Forming the formula this way, rather than as W − …, matters: near the polar cone η can be far
below machine epsilon while ∇g is nearly parallel to q̂ with a huge component along it, and
the naive ``∇gᵀW∇g = ‖∇g‖² − (1−η)(q̂·∇g)²`` then cancels catastrophically (giving O(1)
errors). Here ``∇gᵀW∇g = ‖t‖² = (p̂·∇g)² + η (q̂·∇g)² + (∂g/∂z)²`` is a sum of non-negative
terms, and the callers supply ``t_q = √η (q̂·∇g)`` in a form that stays finite and accurate
when η → 0 while q̂·∇g → ∞.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def unit(x: jax.Array) -> jax.Array:
    """x/‖x‖ without overflow or underflow in the norm (x ≠ 0)."""
    x = x / jnp.max(jnp.abs(x))
    return x / jnp.sqrt(jnp.sum(x * x))


def projection_jacobian(p_hat, q_hat, sqrt_eta, t) -> jax.Array:
    """DΠ = B diag(1, √η, 1)(I − t̂t̂ᵀ) diag(1, √η, 1) Bᵀ with B = [p̂, q̂, e₃]. -> (3, 3).

    Args:
      p_hat, q_hat: (3,) orthonormal, zero third entries.
      sqrt_eta: scalar √η ∈ [0, 1].
      t: (3,) any positive multiple of ``W^{1/2} Bᵀ∇g`` (non-zero).
    """
    dtype = t.dtype
    e3 = jnp.array([0.0, 0.0, 1.0], dtype)
    B = jnp.stack([p_hat, q_hat, e3], axis=1)
    th = unit(t)
    d = jnp.stack([jnp.ones_like(sqrt_eta), sqrt_eta, jnp.ones_like(sqrt_eta)])
    M = (jnp.eye(3, dtype=dtype) - jnp.outer(th, th)) * d[:, None] * d[None, :]
    return B @ M @ B.T
