"""The contract between the layer and a host (CPU, NumPy/SciPy) solver backend.

A backend solves *one* instance of the canonical program of :mod:`cvxjax._program`

    minimize ½ xᵀPx + qᵀx   subject to   Ax + s = b,  s ∈ K

given as float64 NumPy arrays of nonzero values on the fixed sparsity pattern of a
:class:`~cvxjax._program.ProgramStructure`, and returns the primal-dual triple (x, y, s) with
``Px + q + Aᵀy = 0``, ``y ∈ K*``, ``sᵀy = 0`` in *our* conventions (each backend converts to and
from its solver's conventions). A backend is built once per layer (the expensive structural
work — CSC index arrays, cone lists, permutations — happens in ``__init__``) and its ``solve``
is called from a ``jax.pure_callback``, possibly from several threads at once, so ``solve``
must not mutate shared state without a lock.

Backends are never differentiated: derivatives come from the optimality residual.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Mapping, NamedTuple, Optional

import numpy as np
import scipy.sparse as sp

from .._errors import Status
from .._program import ConeDims, ProgramStructure


# Statuses for which a backend returns NaN instead of a point. For the others (inaccurate,
# iteration limit) it returns its last iterate and the layer's residual check decides.
NO_SOLUTION = frozenset({Status.PRIMAL_INFEASIBLE, Status.DUAL_INFEASIBLE, Status.NUMERICAL_ERROR})


class HostSolution(NamedTuple):
    """Result of one host solve (float64 NumPy arrays)."""

    x: np.ndarray  # (n,)
    y: np.ndarray  # (m,) dual, in K*
    s: np.ndarray  # (m,) slack, in K
    status: Status
    iterations: int = 0


class CscPattern:
    """Fixed sparsity pattern turned into CSC index arrays once, so that building the matrix
    for new values is a gather instead of a COO→CSC conversion with a sort."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]):
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        self.shape = shape
        self.order = np.lexsort((rows, cols))  # sort by column, then row
        r, c = rows[self.order], cols[self.order]
        if r.size > 1 and np.any((np.diff(c) == 0) & (np.diff(r) == 0)):
            raise ValueError("sparsity pattern has duplicate entries")
        self.indices = r.astype(np.int32)
        self.indptr = np.searchsorted(c, np.arange(shape[1] + 1)).astype(np.int32)

    def matrix(self, values: np.ndarray) -> sp.csc_matrix:
        # Explicit zeros are kept: OSQP's and Clarabel's `update` need an unchanging pattern.
        return sp.csc_matrix(
            (np.asarray(values, dtype=np.float64)[self.order], self.indices, self.indptr),
            shape=self.shape,
        )

    def values_in_csc_order(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)[self.order]


@dataclasses.dataclass
class PreparedStructure:
    """Index work shared by all backends for one :class:`ProgramStructure`."""

    structure: ProgramStructure
    A: CscPattern
    P_upper: CscPattern
    upper_mask: np.ndarray  # which entries of the full-P value vector are on or above the diagonal

    @classmethod
    def build(cls, structure: ProgramStructure) -> "PreparedStructure":
        n, m = structure.n, structure.m
        upper = np.asarray(structure.P_rows) <= np.asarray(structure.P_cols)
        return cls(
            structure=structure,
            A=CscPattern(structure.A_rows, structure.A_cols, (m, n)),
            P_upper=CscPattern(
                np.asarray(structure.P_rows)[upper], np.asarray(structure.P_cols)[upper], (n, n)
            ),
            upper_mask=upper,
        )

    def P_upper_matrix(self, P_values: np.ndarray) -> sp.csc_matrix:
        return self.P_upper.matrix(np.asarray(P_values)[self.upper_mask])


def psd_lower_to_upper_permutation(k: int) -> np.ndarray:
    """Permutation ``perm`` with ``svec_upper = svec_lower[perm]`` for a k×k PSD block.

    Our svec lists the lower triangle column by column; Clarabel lists the upper triangle
    column by column. For a symmetric matrix, entry (i, j) of the upper triangle equals entry
    (j, i) of the lower one (and the √2 scaling of off-diagonals is the same).
    """
    lower_index = {}
    for j in range(k):
        for i in range(j, k):
            lower_index[(i, j)] = len(lower_index)
    perm = [lower_index[(j, i)] for j in range(k) for i in range(j + 1)]
    return np.asarray(perm, dtype=np.int64)


def cone_rows_permutation(cones: ConeDims, psd_perm) -> np.ndarray:
    """Row permutation of the whole cone vector that applies ``psd_perm(k)`` inside each PSD
    block and leaves every other row in place."""
    perm = np.arange(cones.rows)
    start = cones.zero + cones.nonneg + sum(cones.soc)
    for k in cones.psd:
        size = k * (k + 1) // 2
        perm[start : start + size] = start + psd_perm(k)
        start += size
    return perm


class HostBackend(abc.ABC):
    """Base of the host solver backends (see the module docstring for the contract).

    Subclasses set ``name`` (CVXPY's solver name) and ``supported_cones`` (names as in
    :meth:`ConeDims.present`), and implement :meth:`solve`.
    """

    name: str = ""
    supported_cones: frozenset = frozenset()
    default_settings: Mapping[str, Any] = {}

    def __init__(self, prepared: PreparedStructure, settings: Optional[Mapping[str, Any]] = None):
        self.prepared = prepared
        self.structure = prepared.structure
        self.settings = {**self.default_settings, **(settings or {})}

    @abc.abstractmethod
    def solve(
        self,
        P: np.ndarray,
        q: np.ndarray,
        A: np.ndarray,
        b: np.ndarray,
        settings: Optional[Mapping[str, Any]] = None,
        warm_start: Optional[HostSolution] = None,
    ) -> HostSolution:
        """Solve one instance. ``P``/``A`` are value vectors on the structure's patterns."""


def relative_kkt_residual(
    prepared: PreparedStructure, P, q, A, b, solution: HostSolution
) -> float:
    """Largest of the relative primal, dual and gap residuals of a host solution (SCS-style).

    ``‖Ax + s − b‖∞ / (1 + max(‖Ax‖∞, ‖s‖∞, ‖b‖∞))``,
    ``‖Px + q + Aᵀy‖∞ / (1 + max(‖Px‖∞, ‖Aᵀy‖∞, ‖q‖∞))`` and
    ``|xᵀPx + qᵀx + bᵀy| / (1 + |xᵀPx + qᵀx| + |bᵀy + ½xᵀPx|)`` (the duality gap with the
    quadratic term split as in the Wolfe dual). Cone membership of y and s is the solver's
    guarantee and is restored exactly anyway when the layer projects ``v = y − s``.
    """
    x, y, s = solution.x, solution.y, solution.s
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y)) and np.all(np.isfinite(s))):
        return np.inf
    Amat = prepared.A.matrix(A)
    Pfull = prepared.P_upper_matrix(P)
    Px = Pfull @ x + Pfull.T @ x - Pfull.diagonal() * x
    Ax, ATy = Amat @ x, Amat.T @ y
    inf = lambda v: float(np.max(np.abs(v))) if v.size else 0.0
    primal = inf(Ax + s - b) / (1.0 + max(inf(Ax), inf(s), inf(b)))
    dual = inf(Px + q + ATy) / (1.0 + max(inf(Px), inf(ATy), inf(q)))
    xPx = float(x @ Px)
    gap = abs(xPx + q @ x + b @ y) / (1.0 + abs(xPx + q @ x) + abs(b @ y + 0.5 * xPx))
    return max(primal, dual, gap)
