"""The contract every cone of cvxjax's canonical form implements.

A cone object holds only static metadata (sizes, exponents: Python numbers, no arrays, no
state) and provides two pure functions, ``project`` and ``project_dual``, acting on a single
(unbatched) vector. Everything else in the library (the solvers' splitting iterations and the
implicit-differentiation residual) only ever needs these two maps and their derivatives, so
this is the whole interface.
"""

from __future__ import annotations

import abc

import jax


class Cone(abc.ABC):
    """A closed convex cone ``K ⊆ R^dim`` (one block of the canonical product cone).

    Contract for subclasses:

    * ``dim`` (int): the number of rows the cone occupies in the stacked vector.
    * ``project(v)``: Euclidean projection ``Π_K(v) = argmin_{p ∈ K} ‖p − v‖₂``.
    * ``project_dual(v)``: projection onto the dual cone
      ``K* = {y : yᵀx ≥ 0 ∀x ∈ K}``. The default uses Moreau's decomposition
      ``v = Π_K(v) + Π_{K°}(v)`` with the polar cone ``K° = −K*``; substituting ``v → −v``
      gives ``Π_{K*}(v) = v + Π_K(−v)``.
    * ``dual_is_self`` (bool): ``True`` if ``K* = K`` (then ``project_dual`` is ``project``).

    Both maps take a 1-D array of shape ``(dim,)`` and return an array of the same shape and
    dtype; batching is the caller's business (``jax.vmap``). They must be pure JAX, usable
    under ``jax.jit``, ``jax.vmap``, ``jax.jvp`` and ``jax.vjp``/``jax.grad``, must work in
    float32 as well as float64 (never hard-code a dtype), and must return *finite*
    derivatives at every point, including the non-smooth ones (apexes, cone boundaries,
    repeated eigenvalues), where any element of the Clarke generalized Jacobian is acceptable.
    """

    dim: int
    dual_is_self: bool = False

    @abc.abstractmethod
    def project(self, v: jax.Array) -> jax.Array:
        """Euclidean projection onto ``K``. v: (dim,) -> (dim,)."""

    def project_dual(self, v: jax.Array) -> jax.Array:
        """Euclidean projection onto the dual cone ``K*``. v: (dim,) -> (dim,)."""
        if self.dual_is_self:
            return self.project(v)
        return v + self.project(-v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dim={self.dim})"
