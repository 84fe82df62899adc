"""The second-order (Lorentz) cone ``{(t, u) : ‖u‖₂ ≤ t}`` (self-dual)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import Cone


@jax.jit
def project_soc(v: jax.Array) -> jax.Array:
    """Projection onto the second-order cone. v = (t, u): (k,) -> (k,).

    With ``r = ‖u‖``, the closed form is::

        Π(t, u) = (t, u)                         if r ≤ t      (inside K)
                = 0                              if r ≤ −t     (inside the polar −K)
                = ((t + r)/2) · (1, u/r)         otherwise     (r > |t| ≥ 0, so r > 0)

    The derivative is taken by autodiff through this formula, which is arranged so that every
    intermediate has finite derivatives everywhere (``jnp.where`` differentiates the unused
    branches too, and ``0 · inf = NaN`` would leak into the gradient):

    * ``‖u‖ = m ‖u/m‖`` with ``m = max|uᵢ|`` held constant for differentiation (‖u‖ is
      homogeneous, so this does not change the derivative): no overflow of ‖u‖², and no
      ``1/m²`` or ``1/r²`` factors that underflow to 1/0 for tiny u;
    * the "double where": wherever ``u = 0`` the square root is taken of a harmless 1, not 0;
    * the outer branch is written with the unit vector ``û = u/r`` (its derivative is O(1/r),
      multiplied by (t + r)/2 = O(r)).

    At the non-smooth points the result is an element of the Clarke Jacobian: the identity on
    ``r = t`` (including the apex 0), zero on ``r = −t``.
    """
    if v.shape[0] == 1:  # the ray t ≥ 0
        return jnp.maximum(v, 0.0)
    t, u = v[0], v[1:]
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(u)))
    pos = m > 0
    m_s = jnp.where(pos, m, 1.0)
    w = u / m_s
    n = jnp.sqrt(jnp.where(pos, jnp.sum(w * w), 1.0))  # ‖u/m‖ ≥ 1 where u ≠ 0
    r = jnp.where(pos, m_s * n, 0.0)
    outside = 0.5 * (t + r) * jnp.concatenate([jnp.ones_like(t)[None], w / n])
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
