"""Eliminate the variables that equality rows define, giving a smaller dense program.

CVXPY's canonicalization adds auxiliary variables: ``sum_squares(L @ x - b)`` becomes ``tᵀt``
with one new variable and one equality row ``t − L x + b = 0`` per row of ``L``, and a norm or
an absolute value does the same. For a dense least-squares QP with n variables the canonical
program therefore has about 2n variables and n more equality rows than the problem the user
wrote, and every dense step downstream (the pure-JAX interior-point method, the Newton
refinement, the implicit-function linear system) pays for the larger size, cubically.

We undo this with a structural presolve. An equality row r and a column t form a *pivot pair*
when t appears in no other equality row and ``A[r, t]`` is a constant (independent of the
parameters) and not tiny relative to the row. At most one pair per row is taken, so for the
chosen rows E and columns T the block ``A[E, T]`` is a constant diagonal ``diag(a)``, invertible
for every parameter value. Row r then *defines* t in terms of the kept columns K:

    t = (b_E − A[E, K] x_K) / a        i.e.   x = S x_K + x₀,
    S = [I; −A[E, K]/a] (rows ordered K, T),   x₀ = [0; b_E/a].

Substituting x into the program and dropping the rows E gives the equivalent program in x_K::

    minimize ½ x_Kᵀ (SᵀPS) x_K + (Sᵀ(q + P x₀))ᵀ x_K
    subject to A[R] S x_K + s_R = b_R − A[R] x₀,  s_R ∈ K_R        (R: the other rows)

Its optimal (x_K, y_R) extends to an optimal (x, y) of the original: x from the formula
above, y_R unchanged, s_E = 0, and y_E from the stationarity of the eliminated columns,
``(P x + q)_T + A[R, T]ᵀ y_R + a ⊙ y_E = 0``. Both maps are smooth (affine in the solution,
rational in the data with constant denominators), so derivatives pass through them exactly;
the implicit function theorem is applied to the smaller program only.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._program import (
    ConeDims,
    DenseProgram,
    DenseShape,
    ProgramData,
    ProgramStructure,
    SparseProgram,
)

# A pivot must be at least this fraction of the largest constant entry of its row: a column
# with a small coefficient would be defined by dividing by it, which amplifies rounding errors.
_PIVOT_RELATIVE_THRESHOLD = 1e-3


@dataclasses.dataclass(frozen=True, eq=False)
class Elimination:
    """Which variables and equality rows are eliminated (static, index arrays).

    Attributes:
      structure: the original program's structure.
      kept_cols: (n_kept,) columns that stay variables, ascending.
      elim_cols: (n_elim,) eliminated columns T; ``elim_cols[i]`` is defined by row
        ``elim_rows[i]`` with pivot ``pivots[i]``.
      elim_rows: (n_elim,) the defining equality rows E.
      kept_rows: (m_kept,) every other row, ascending (so the reduced cone keeps the row order).
      pivots: (n_elim,) the constant, nonzero ``A[elim_rows[i], elim_cols[i]]``.
      cones: the reduced program's cones (``zero`` shrinks by n_elim, the rest is unchanged).
      col_order, row_order: ``[kept; eliminated]`` columns / rows (permutations).
      col_position, row_position: their inverses (where each original column / row went).
    """

    structure: ProgramStructure
    kept_cols: np.ndarray
    elim_cols: np.ndarray
    elim_rows: np.ndarray
    kept_rows: np.ndarray
    pivots: np.ndarray
    cones: ConeDims
    col_order: np.ndarray
    row_order: np.ndarray
    col_position: np.ndarray
    row_position: np.ndarray

    @property
    def n(self) -> int:
        """Number of variables of the reduced program."""
        return int(self.kept_cols.size)

    @property
    def m(self) -> int:
        """Number of rows of the reduced program."""
        return int(self.kept_rows.size)

    # The reduction interface (as CVXPY's ``Reduction``: apply, then invert the solution).
    form = "dense"

    @property
    def shape(self) -> DenseShape:
        """Static shape of the reduced program."""
        return DenseShape(self.n, self.cones)

    def apply(self, program: SparseProgram):
        """``(reduced DenseProgram, inverse data)`` for one instance. Differentiable."""
        blk = blocks(self, program.data)
        return reduce_program(blk, self.cones), blk

    def restrict(self, x, y, s):
        """A solution ``(x, y, s)`` of the original program as one of the reduced program."""
        return x[self.kept_cols], y[self.kept_rows], s[self.kept_rows]

    def invert(self, blk, x_kept, y_kept):
        """A solution of the reduced program as ``(x, y)`` of the original (see :func:`expand`)."""
        return expand(self, blk, x_kept, y_kept)


def build_elimination(
    structure: ProgramStructure, constant_mask: np.ndarray, constant_values: np.ndarray
) -> Elimination:
    """Choose the pivot pairs (see the module docstring).

    Args:
      structure: the canonical program's structure.
      constant_mask, constant_values: (nnz_A,), which entries of A never depend on the
        parameters and their values (``CanonicalProblem.constant_A_entries``).
    """
    n, m, n_zero = structure.n, structure.m, structure.cones.zero
    rows, cols = structure.A_rows, structure.A_cols
    in_zero = rows < n_zero
    zero_rows_per_col = np.bincount(cols[in_zero], minlength=n)
    magnitude = np.where(constant_mask, np.abs(constant_values), 0.0)
    row_scale = np.zeros(m)
    np.maximum.at(row_scale, rows, magnitude)
    candidate = (
        in_zero
        & constant_mask
        & (zero_rows_per_col[cols] == 1)
        & (magnitude > 0)
        & (magnitude >= _PIVOT_RELATIVE_THRESHOLD * row_scale[rows])
    )
    # Per row, the candidate with the largest |pivot| (sort by magnitude, keep the first per row).
    idx = np.flatnonzero(candidate)
    idx = idx[np.argsort(-magnitude[idx], kind="stable")]
    _, first = np.unique(rows[idx], return_index=True)
    chosen = np.sort(idx[first])
    if chosen.size >= n:  # keep at least one variable so the reduced program is not empty
        chosen = chosen[: n - 1]
    elim_rows = rows[chosen].astype(np.int64)
    elim_cols = cols[chosen].astype(np.int64)
    order = np.argsort(elim_cols)
    elim_rows, elim_cols, pivots = (
        elim_rows[order],
        elim_cols[order],
        constant_values[chosen][order],
    )
    kept_cols = np.setdiff1d(np.arange(n), elim_cols)
    kept_rows = np.setdiff1d(np.arange(m), elim_rows)
    cones = dataclasses.replace(structure.cones, zero=n_zero - int(elim_rows.size))
    col_order = np.concatenate([kept_cols, elim_cols])
    row_order = np.concatenate([kept_rows, elim_rows])
    col_position, row_position = np.argsort(col_order), np.argsort(row_order)
    arrays = (
        kept_cols,
        elim_cols,
        elim_rows,
        kept_rows,
        pivots,
        cones,
        col_order,
        row_order,
        col_position,
        row_position,
    )
    for a in arrays:
        if isinstance(a, np.ndarray):
            a.flags.writeable = False
    return Elimination(structure, *arrays)


def elimination_for(canonical) -> Elimination:
    """The elimination of a ``CanonicalProblem`` (its structure and constant entries of A)."""
    return build_elimination(canonical.structure, *canonical.constant_A_entries())


class Blocks(NamedTuple):
    """The pieces of one instance that the reduction needs (dense, blocked by K/T and R/E).

    P_KK (n_k, n_k), P_KT (n_k, n_e), P_TT (n_e, n_e), q_K (n_k,), q_T (n_e,),
    A_RK (m_k, n_k), A_RT (m_k, n_e), b_R (m_k,), and the substitution ``x_T = M x_K + c``:
    M (n_e, n_k) = −A[E, K]/a, c (n_e,) = b_E/a.
    """

    P_KK: jax.Array
    P_KT: jax.Array
    P_TT: jax.Array
    q_K: jax.Array
    q_T: jax.Array
    A_RK: jax.Array
    A_RT: jax.Array
    b_R: jax.Array
    M: jax.Array
    c: jax.Array


def blocks(elim: Elimination, data: ProgramData) -> Blocks:
    """Scatter P and A straight into the permuted order (kept first, eliminated last), so
    every block is a slice: cheaper than gathers from the original order, and their
    transposes in reverse mode are plain slices too."""
    s = elim.structure
    nk, mk = elim.n, elim.m
    dtype = data.q.dtype
    P = (
        jnp.zeros((s.n, s.n), dtype)
        .at[elim.col_position[s.P_rows], elim.col_position[s.P_cols]]
        .add(data.P)
    )
    A = (
        jnp.zeros((s.m, s.n), dtype)
        .at[elim.row_position[s.A_rows], elim.col_position[s.A_cols]]
        .add(data.A)
    )
    q = data.q[elim.col_order]
    b = data.b[elim.row_order]
    pivots = jnp.asarray(elim.pivots, dtype)
    return Blocks(
        P_KK=P[:nk, :nk],
        P_KT=P[:nk, nk:],
        P_TT=P[nk:, nk:],
        q_K=q[:nk],
        q_T=q[nk:],
        A_RK=A[:mk, :nk],
        A_RT=A[:mk, nk:],
        b_R=b[:mk],
        M=-A[mk:, :nk] / pivots[:, None],
        c=b[mk:] / pivots,
    )


def reduce_program(blk: Blocks, cones: ConeDims | None = None) -> DenseProgram:
    """The reduced program (module docstring) for one instance, dense. Differentiable.

    With ``x = (x_K, M x_K + c)``: ``SᵀPS = P_KK + P_KT M + (P_KT M)ᵀ + Mᵀ P_TT M`` etc.
    """
    PM = blk.P_KT @ blk.M
    return DenseProgram(
        P=blk.P_KK + PM + PM.T + blk.M.T @ (blk.P_TT @ blk.M),
        q=blk.q_K + blk.P_KT @ blk.c + blk.M.T @ (blk.q_T + blk.P_TT @ blk.c),
        A=blk.A_RK + blk.A_RT @ blk.M,
        b=blk.b_R - blk.A_RT @ blk.c,
        cones=cones,
    )


def restrict(elim: Elimination, x: jax.Array, v: jax.Array):
    """A solution ``(x, v)`` of the original program, as one of the reduced program."""
    return x[elim.kept_cols], v[elim.kept_rows]


def expand(elim: Elimination, blk: Blocks, x_kept: jax.Array, y_kept: jax.Array):
    """A primal-dual solution ``(x_K, y_R)`` of the reduced program, as ``(x, y)`` of the
    original one (module docstring). Differentiable in the data and the solution."""
    pivots = jnp.asarray(elim.pivots, x_kept.dtype)
    x_elim = blk.M @ x_kept + blk.c
    # Stationarity of the eliminated columns: (Px + q)_T + A[R, T]ᵀ y_R + a ⊙ y_E = 0.
    gradient_T = blk.P_KT.T @ x_kept + blk.P_TT @ x_elim + blk.q_T
    if y_kept.shape[-1]:
        # y_kept is left out when no rows remain (an unconstrained least squares): for a
        # host solver's vmapped answer, reverse mode gave its empty cotangent the batch size
        # as its one axis, and dot_general / concatenate rejected it.
        gradient_T = gradient_T + blk.A_RT.T @ y_kept
    y_elim = -gradient_T / pivots
    x = jnp.concatenate([x_kept, x_elim])[elim.col_position]
    y = (jnp.concatenate([y_kept, y_elim]) if y_kept.shape[-1] else y_elim)[elim.row_position]
    return x, y


@dataclasses.dataclass(frozen=True, eq=False)
class NoReduction:
    """The identity reduction of the sparse (large-problem) path: the solver, the residual F
    and the implicit system all see the canonical program on its sparsity pattern."""

    structure: ProgramStructure

    form = "sparse"

    @property
    def cones(self) -> ConeDims:
        return self.structure.cones

    @property
    def shape(self) -> ProgramStructure:
        return self.structure

    def apply(self, program: SparseProgram):
        return program, None

    def restrict(self, x, y, s):
        return x, y, s

    def invert(self, inverse_data, x, y):
        del inverse_data
        return x, y
