"""The zero cone ``{0} ⊆ R^k`` (equality rows); its dual is all of ``R^k``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import Cone


class ZeroCone(Cone):
    """``K = {0} ⊆ R^dim``, ``K* = R^dim``.

    ``project`` maps everything to 0 (derivative 0); ``project_dual`` is the identity
    (derivative I).
    """

    dual_is_self = False

    def __init__(self, dim: int):
        self.dim = int(dim)

    def project(self, v: jax.Array) -> jax.Array:
        return jnp.zeros_like(v)

    def project_dual(self, v: jax.Array) -> jax.Array:
        return v
