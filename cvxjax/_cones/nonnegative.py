"""The nonnegative orthant ``R^k_+`` (self-dual)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import Cone


class NonnegativeCone(Cone):
    """``K = K* = {x ∈ R^dim : x ≥ 0}``; ``Π_K(v) = max(v, 0)`` elementwise.

    The derivative is ``diag(1[v > 0])``; at a tie ``v_i = 0`` JAX's ``maximum`` rule gives
    ½, the same convention as the PSD cone's zero eigenvalues.
    """

    dual_is_self = True

    def __init__(self, dim: int):
        self.dim = int(dim)

    def project(self, v: jax.Array) -> jax.Array:
        return jnp.maximum(v, 0.0)
