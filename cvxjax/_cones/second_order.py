"""The second-order (Lorentz) cone ``{(t, u) : ‖u‖₂ ≤ t}`` (self-dual)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import Cone


def project_soc(v: jax.Array) -> jax.Array:
    """Projection onto the second-order cone. v = (t, u): (k,) -> (k,).

    With ``r = ‖u‖``, the closed form is::

        Π(t, u) = (t, u)                         if r ≤ t      (inside K)
                = 0                              if r ≤ −t     (inside the polar −K)
                = ((t + r)/2) · (1, u/r)         otherwise     (r > |t| ≥ 0, so r > 0)

    The derivative is taken by autodiff through this formula. ``r = √(‖u‖²)`` has an infinite
    derivative at ``u = 0`` and ``u/r`` is 0/0 there; both only occur in the first two
    branches, but ``jnp.where`` still differentiates the unused branch and ``0 · inf = NaN``
    would leak into the gradient. Hence the "double where": the square root and the division
    are evaluated on a harmless substitute (1) wherever ``‖u‖ = 0`` so every branch has finite
    derivatives everywhere. At the non-smooth points the result is an element of the Clarke
    Jacobian: the identity on ``r = t`` (including the apex 0), zero on ``r = −t``.
    """
    t, u = v[0], v[1:]
    r2 = jnp.sum(u * u)
    pos = r2 > 0
    r_safe = jnp.sqrt(jnp.where(pos, r2, 1.0))
    r = jnp.where(pos, r_safe, 0.0)
    scale = 0.5 * (t + r)
    outside = jnp.concatenate([scale[None], (scale / r_safe) * u])
    inside = r <= t
    polar = r <= -t
    return jnp.where(inside, v, jnp.where(polar, jnp.zeros_like(v), outside))


class SecondOrderCone(Cone):
    """``K = K* = {(t, u) ∈ R × R^{dim−1} : ‖u‖₂ ≤ t}``. ``dim = 1`` is the ray ``t ≥ 0``."""

    dual_is_self = True

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"second-order cone needs dim >= 1, got {dim}")
        self.dim = int(dim)

    def project(self, v: jax.Array) -> jax.Array:
        return project_soc(v)
