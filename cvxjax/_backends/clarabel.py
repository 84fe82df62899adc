"""Clarabel backend (interior point; zero, nonnegative, second-order, PSD, exponential and
power cones).

Clarabel's standard form is ours (``Ax + s = b, s ∈ K``; dual ``z ∈ K*`` with
``Px + q + Aᵀz = 0``). The one difference is the PSD triangle: Clarabel stores the *upper*
triangle column by column (off-diagonals × √2), we store the lower one, so PSD rows are
permuted on the way in and back on the way out.
"""

from __future__ import annotations

import numpy as np

from .._errors import Status
from ._base import NO_SOLUTION as _NO_SOLUTION
from ._base import (
    HostBackend,
    HostSolution,
    cone_rows_permutation,
    psd_lower_to_upper_permutation,
)


class ClarabelBackend(HostBackend):
    name = "CLARABEL"
    supported_cones = frozenset({"zero", "nonneg", "soc", "psd", "exp", "pow"})
    # Tighter than Clarabel's defaults (1e-8) so that derivatives, whose error is proportional
    # to the solution's, come out accurate; interior point reaches these in a few more steps.
    default_settings = dict(
        verbose=False, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10, tol_ktratio=1e-8,
        max_iter=200,
    )

    def __init__(self, prepared, settings=None):
        super().__init__(prepared, settings)
        cones = self.structure.cones
        self._perm = cone_rows_permutation(cones, psd_lower_to_upper_permutation)
        self._inverse_perm = np.argsort(self._perm)
        # Rows of A in Clarabel's order: row r of the permuted problem is our row perm[r].
        self._A_rows_permuted = self._inverse_perm[np.asarray(self.structure.A_rows)]
        from ._base import CscPattern

        self._A_pattern = CscPattern(
            self._A_rows_permuted, self.structure.A_cols, (self.structure.m, self.structure.n)
        )
        self._cones = _clarabel_cones(cones)

    def solve(self, P, q, A, b, settings=None, warm_start=None):
        import clarabel

        options = clarabel.DefaultSettings()
        for key, value in {**self.settings, **(settings or {})}.items():
            setattr(options, key, value)
        solver = clarabel.DefaultSolver(
            self.prepared.P_upper_matrix(P), np.asarray(q, np.float64),
            self._A_pattern.matrix(A), np.asarray(b, np.float64)[self._perm],
            self._cones, options,
        )
        solution = solver.solve()
        status = _status(solution.status)
        if status in _NO_SOLUTION:
            n, m = self.structure.n, self.structure.m
            return HostSolution(np.full(n, np.nan), np.full(m, np.nan), np.full(m, np.nan), status,
                                int(solution.iterations))
        x = np.asarray(solution.x)
        y = np.asarray(solution.z)[self._inverse_perm]
        s = np.asarray(solution.s)[self._inverse_perm]
        return HostSolution(x, y, s, status, int(solution.iterations))


def _clarabel_cones(cones):
    import clarabel

    out = []
    if cones.zero:
        out.append(clarabel.ZeroConeT(cones.zero))
    if cones.nonneg:
        out.append(clarabel.NonnegativeConeT(cones.nonneg))
    out += [clarabel.SecondOrderConeT(k) for k in cones.soc]
    out += [clarabel.PSDTriangleConeT(k) for k in cones.psd]
    out += [clarabel.ExponentialConeT() for _ in range(cones.exp)]
    out += [clarabel.PowerConeT(float(alpha)) for alpha in cones.pow]
    return out


def _status(status) -> Status:
    name = str(status).split(".")[-1]
    if name == "Solved":
        return Status.SOLVED
    if name == "AlmostSolved":
        return Status.INACCURATE
    if name in ("PrimalInfeasible", "AlmostPrimalInfeasible"):
        return Status.PRIMAL_INFEASIBLE
    if name in ("DualInfeasible", "AlmostDualInfeasible"):
        return Status.DUAL_INFEASIBLE
    if name in ("MaxIterations", "MaxTime"):
        return Status.MAX_ITERATIONS
    return Status.NUMERICAL_ERROR
