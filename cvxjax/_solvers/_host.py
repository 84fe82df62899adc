"""Solvers that run on the host (NumPy/SciPy), called from JAX through one ``pure_callback``.

:class:`HostSolver` owns everything they share: the callback, its batching (under ``vmap``
the callback receives the whole batch, and a batch costs one host round trip), the worker
threads, the sparse index work done once per layer, and the NaN point of a failed solve. A
subclass only converts one float64 instance to its solver's conventions and back
(:meth:`HostSolver.setup` once, :meth:`HostSolver.solve_numpy` per instance). ``solve_numpy``
may be called from several threads at once, so it must not mutate shared state without a lock.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
from typing import Any, ClassVar, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from .._errors import Status
from .._program import ConeDims, ProgramStructure, SparseProgram
from ._base import AbstractSolver, RawSolution

# Statuses for which a host solve returns NaN instead of a point. For the others (inaccurate,
# iteration limit) the last iterate is returned and the residual check decides.
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
    """Index work shared by all host solvers for one :class:`ProgramStructure`."""

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


def _default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


class _Workspace(NamedTuple):
    prepared: PreparedStructure
    state: Any  # the subclass's, from setup()


@dataclasses.dataclass(frozen=True)
class HostSolver(AbstractSolver):
    """Base of the host solvers (see the module docstring).

    Fields:
      settings: solver options (see :class:`AbstractSolver`); merged over ``default_settings``.
      max_workers: host threads solving a batch (default: up to 2).

    Subclasses set ``name``, ``supported_cones`` and ``default_settings`` and implement
    :meth:`solve_numpy` (and :meth:`setup` if they need structural work).
    """

    data_form: ClassVar[str] = "sparse"
    default_settings: ClassVar[Mapping[str, Any]] = {}

    max_workers: Optional[int] = None

    def setup(self, prepared: PreparedStructure) -> Any:
        """Structural work of the subclass, once per layer (default: none)."""
        del prepared
        return None

    def solve_numpy(
        self,
        workspace: _Workspace,
        P,
        q,
        A,
        b,
        settings: Mapping[str, Any],
        warm_start: Optional[HostSolution],
    ) -> HostSolution:
        """Solve one float64 instance; ``P``/``A`` are value vectors on the structure's
        patterns, ``settings`` the full options (defaults included)."""
        raise NotImplementedError

    def init(self, structure: ProgramStructure) -> _Workspace:
        prepared = PreparedStructure.build(structure)
        return _Workspace(prepared, self.setup(prepared))

    def solve(
        self, workspace, program: SparseProgram, settings, warm_start=None, active=None
    ) -> RawSolution:
        """See :class:`AbstractSolver`. ``active`` (bool scalar, batched under ``vmap``; for
        a fallback): solve only where it is true; elsewhere the answer is NaN with status
        ``NUMERICAL_ERROR`` and no host solver runs."""
        structure = program.structure
        dtype = program.q.dtype
        n, m = structure.n, structure.m
        shapes = RawSolution(
            x=jax.ShapeDtypeStruct((n,), dtype),
            y=jax.ShapeDtypeStruct((m,), dtype),
            s=jax.ShapeDtypeStruct((m,), dtype),
            status=jax.ShapeDtypeStruct((), jnp.int32),
            iterations=jax.ShapeDtypeStruct((), jnp.int32),
        )
        options = {**self.default_settings, **dict(settings)}
        callback = functools.partial(
            self._solve_batch,
            workspace,
            options=options,
            out_dtype=np.dtype(dtype),
            masked=active is not None,
        )
        d = program.data
        warm = () if warm_start is None else (warm_start.x, warm_start.y, warm_start.s)
        mask = () if active is None else (jnp.asarray(active, bool),)
        # broadcast_all: under vmap the callback receives the whole batch at once (leading
        # axes), so a batch costs one host round trip, not one per element.
        return jax.pure_callback(
            callback, shapes, d.P, d.q, d.A, d.b, *warm, *mask, vmap_method="broadcast_all"
        )

    def _solve_batch(self, workspace, P, q, A, b, *warm, options, out_dtype, masked=False):
        """Host side: arrays with any number of leading batch axes -> a RawSolution of them."""
        structure = workspace.prepared.structure
        n, m = structure.n, structure.m
        lead = q.shape[:-1]
        batch = int(np.prod(lead, dtype=np.int64))

        def flat(a, size):
            return np.broadcast_to(np.asarray(a, np.float64), lead + (size,)).reshape(batch, size)

        active = np.ones(batch, bool)
        if masked:
            *warm, mask = warm
            active = np.broadcast_to(np.asarray(mask, bool), lead).reshape(batch)
        P, q = flat(P, P.shape[-1]), flat(q, n)
        A, b = flat(A, A.shape[-1]), flat(b, m)
        warm = [flat(w, w.shape[-1]) for w in warm]

        def one(i):
            if not active[i]:
                nan_n, nan_m = np.full(n, np.nan), np.full(m, np.nan)
                return HostSolution(nan_n, nan_m, nan_m, Status.NUMERICAL_ERROR, 0)
            start = None
            # Zeros (CvxpyLayer.cold_start, or the start after a failed problem) mean cold.
            if warm and any(np.any(w[i] != 0) for w in warm):
                start = HostSolution(*(w[i] for w in warm), Status.SOLVED)
            sol = self.solve_numpy(workspace, P[i], q[i], A[i], b[i], options, start)
            if sol.status in NO_SOLUTION:
                nan_n, nan_m = np.full(n, np.nan), np.full(m, np.nan)
                sol = HostSolution(nan_n, nan_m, nan_m, sol.status, sol.iterations)
            return sol

        workers = _default_workers() if self.max_workers is None else self.max_workers
        if workers > 1 and np.count_nonzero(active) > 1:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(one, range(batch)))
        else:
            results = [one(i) for i in range(batch)]

        def stack(field, size):
            values = np.stack([np.asarray(getattr(r, field)) for r in results])
            return values.reshape(lead + size)

        return RawSolution(
            x=stack("x", (n,)).astype(out_dtype),
            y=stack("y", (m,)).astype(out_dtype),
            s=stack("s", (m,)).astype(out_dtype),
            status=stack("status", ()).astype(np.int32),
            iterations=stack("iterations", ()).astype(np.int32),
        )
