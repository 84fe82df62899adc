"""The canonical program every part of cvxjax speaks.

All problems, whatever the backend, are held in one form (CVXPY's / SCS's conic form with an
optional quadratic objective)::

    minimize    ½ xᵀ P x + qᵀ x
    subject to  A x + s = b,   s ∈ K

with dual  P x + q + Aᵀ y = 0,  y ∈ K*,  sᵀ y = 0.

``K`` is a product of cones stacked in the fixed row order of :class:`ConeDims`: zero,
nonnegative, second-order, positive semidefinite, exponential, power. Conventions (those of
CVXPY's SCS interface, so CVXPY's canonical data can be used as is):

* second-order cone of size k: ``{(t, u) ∈ R × R^{k-1} : ‖u‖₂ ≤ t}``;
* PSD cone of order k: a symmetric k×k matrix stored as its ``svec``, k(k+1)/2 entries: the
  lower triangle, column by column, off-diagonal entries multiplied by √2 (so that
  ``svec(X)·svec(Y) = tr(XY)`` and the cone is self-dual in the Euclidean inner product);
* exponential cone: ``closure{(x, y, z) : y > 0, y·exp(x/y) ≤ z}``;
* power cone with exponent α: ``{(x, y, z) : x ≥ 0, y ≥ 0, x^α y^(1-α) ≥ |z|}``.

``P`` and ``A`` are sparse with a sparsity pattern fixed at construction (the union over all
parameter values), so the data of one problem instance is just the vectors of their nonzero
values: :class:`ProgramData` is a pytree of arrays and the pattern lives in the static
:class:`ProgramStructure`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ConeDims:
    """Sizes of the cones of ``K``, in row order. Static (hashable) metadata.

    Attributes:
      zero: number of rows in the zero cone ``{0}`` (equality constraints).
      nonneg: number of rows in the nonnegative orthant.
      soc: sizes of the second-order cones.
      psd: orders k of the PSD cones; each occupies k(k+1)/2 rows (svec).
      exp: number of 3-dimensional exponential cones.
      pow: exponent α of each 3-dimensional power cone.
    """

    zero: int = 0
    nonneg: int = 0
    soc: tuple[int, ...] = ()
    psd: tuple[int, ...] = ()
    exp: int = 0
    pow: tuple[float, ...] = ()

    @property
    def rows(self) -> int:
        """Total number of rows m of ``A`` (the dimension of ``K``)."""
        return (
            self.zero
            + self.nonneg
            + sum(self.soc)
            + sum(k * (k + 1) // 2 for k in self.psd)
            + 3 * self.exp
            + 3 * len(self.pow)
        )

    @property
    def is_qp(self) -> bool:
        """True if ``K`` has only zero and nonnegative cones (a QP that OSQP can take)."""
        return not (self.soc or self.psd or self.exp or self.pow)

    def present(self) -> tuple[str, ...]:
        """Names of the cone families that occur, e.g. ``("zero", "soc")``."""
        names = []
        for name in ("zero", "nonneg", "soc", "psd", "exp", "pow"):
            if getattr(self, name):
                names.append(name)
        return tuple(names)


@dataclasses.dataclass(frozen=True, eq=False)
class ProgramStructure:
    """Static part of a canonical program: sizes, sparsity patterns and cones.

    Attributes:
      n: number of primal variables (length of x).
      cones: the cone ``K``; ``cones.rows`` is m, the number of rows of A.
      P_rows, P_cols: int arrays (nnz_P,): pattern of the *full symmetric* P (both triangles).
      A_rows, A_cols: int arrays (nnz_A,): pattern of A (m × n).
    """

    n: int
    cones: ConeDims
    P_rows: np.ndarray
    P_cols: np.ndarray
    A_rows: np.ndarray
    A_cols: np.ndarray

    @property
    def m(self) -> int:
        return self.cones.rows


class ProgramData(NamedTuple):
    """Numerical data of one problem instance (a pytree; leaves may carry batch axes).

    Attributes:
      P: (nnz_P,) values of P on ``structure.P_rows/P_cols``.
      q: (n,) linear objective.
      A: (nnz_A,) values of A on ``structure.A_rows/A_cols``.
      b: (m,) right-hand side.
    """

    P: jax.Array
    q: jax.Array
    A: jax.Array
    b: jax.Array


def P_matvec(structure: ProgramStructure, data: ProgramData, x: jax.Array) -> jax.Array:
    """P @ x for one (unbatched) instance. x: (n,) -> (n,)."""
    contrib = data.P * x[structure.P_cols]
    return jnp.zeros(structure.n, x.dtype).at[structure.P_rows].add(contrib)


def A_matvec(structure: ProgramStructure, data: ProgramData, x: jax.Array) -> jax.Array:
    """A @ x for one instance. x: (n,) -> (m,)."""
    contrib = data.A * x[structure.A_cols]
    return jnp.zeros(structure.m, x.dtype).at[structure.A_rows].add(contrib)


def A_rmatvec(structure: ProgramStructure, data: ProgramData, y: jax.Array) -> jax.Array:
    """Aᵀ @ y for one instance. y: (m,) -> (n,)."""
    contrib = data.A * y[structure.A_rows]
    return jnp.zeros(structure.n, y.dtype).at[structure.A_cols].add(contrib)


def dense_P(structure: ProgramStructure, data: ProgramData) -> jax.Array:
    """P as a dense (n, n) array for one instance."""
    out = jnp.zeros((structure.n, structure.n), data.P.dtype)
    return out.at[structure.P_rows, structure.P_cols].add(data.P)


def dense_A(structure: ProgramStructure, data: ProgramData) -> jax.Array:
    """A as a dense (m, n) array for one instance."""
    out = jnp.zeros((structure.m, structure.n), data.A.dtype)
    return out.at[structure.A_rows, structure.A_cols].add(data.A)


# --------------------------------------------------------------------------------------------
# The program as an operator. Everything downstream of the canonicalization (the residual F,
# the KKT check of a solution, the solvers) sees a program only through this interface, so it
# is written once for both storage forms.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DenseShape:
    """Static shape of a dense program: ``n`` variables and the cone ``K`` (``m = cones.rows``).
    What :meth:`cvxjax.solvers.AbstractSolver.init` receives for a dense-form solver."""

    n: int
    cones: ConeDims

    @property
    def m(self) -> int:
        return self.cones.rows


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["data"], meta_fields=["structure"]
)
@dataclasses.dataclass(frozen=True)
class SparseProgram:
    """One instance of the canonical program on its fixed sparsity pattern (a pytree).

    ``data`` holds the nonzero values (:class:`ProgramData`), ``structure`` the static pattern
    and cones. P, A and Aᵀ are applied by gather / scatter-add over the pattern, so the cost
    is O(nnz) and nothing is densified (the large-problem path).
    """

    structure: ProgramStructure
    data: ProgramData

    form = "sparse"

    @property
    def cones(self) -> ConeDims:
        return self.structure.cones

    @property
    def q(self) -> jax.Array:
        return self.data.q

    @property
    def b(self) -> jax.Array:
        return self.data.b

    def P_matvec(self, x: jax.Array) -> jax.Array:
        return P_matvec(self.structure, self.data, x)

    def A_matvec(self, x: jax.Array) -> jax.Array:
        return A_matvec(self.structure, self.data, x)

    def A_rmatvec(self, y: jax.Array) -> jax.Array:
        return A_rmatvec(self.structure, self.data, y)


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["P", "q", "A", "b"], meta_fields=["cones"]
)
@dataclasses.dataclass(frozen=True)
class DenseProgram:
    """One instance held densely (a pytree; leaves may carry batch axes under ``vmap``).

    ``minimize ½xᵀPx + qᵀx s.t. Ax + s = b, s ∈ K`` with P (n, n), q (n,), A (m, n), b (m,).
    Dense products matter for *materializing* ∂F/∂z with ``jacfwd``: pushing n + m tangents
    through sparse gather/scatter products creates (n + m) × nnz intermediates (gigabytes at
    n ≈ 200), through dense products it is one matrix-matrix product.
    """

    P: jax.Array
    q: jax.Array
    A: jax.Array
    b: jax.Array
    cones: ConeDims | None = None

    form = "dense"

    @property
    def shape(self) -> DenseShape:
        return DenseShape(int(self.q.shape[-1]), self.cones)

    def P_matvec(self, x: jax.Array) -> jax.Array:
        return self.P @ x

    def A_matvec(self, x: jax.Array) -> jax.Array:
        return self.A @ x

    def A_rmatvec(self, y: jax.Array) -> jax.Array:
        return self.A.T @ y
