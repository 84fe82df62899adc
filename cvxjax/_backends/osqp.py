"""OSQP backend (QPs: zero and nonnegative cones only).

OSQP solves ``min ½xᵀPx + qᵀx s.t. l ≤ Ax ≤ u``. Our rows ``Ax + s = b`` map to
``l = u = b`` on zero-cone rows (equalities) and ``l = −∞, u = b`` on nonnegative rows
(``Ax ≤ b``). OSQP's multiplier satisfies ``Px + q + Aᵀy = 0`` with ``y ≥ 0`` on active upper
bounds, which is our ``y ∈ K*`` (free on equalities, ≥ 0 on inequalities), so y needs no
conversion and the slack is ``s = b − Ax``.

The OSQP workspace (its KKT factorization pattern) is set up once per thread and updated with
new values afterwards, since the sparsity pattern never changes.
"""

from __future__ import annotations

import threading

import numpy as np

from .._errors import Status
from ._base import NO_SOLUTION as _NO_SOLUTION
from ._base import HostBackend, HostSolution


class OsqpBackend(HostBackend):
    name = "OSQP"
    supported_cones = frozenset({"zero", "nonneg"})
    # ADMM converges slowly to high accuracy; polishing (an active-set refinement with a
    # direct solve) gives solutions accurate to ~1e-10, which the derivatives need.
    default_settings = dict(
        eps_abs=1e-8, eps_rel=1e-8, polishing=True, max_iter=100_000, verbose=False,
        eps_prim_inf=1e-9, eps_dual_inf=1e-9,
    )

    def __init__(self, prepared, settings=None):
        super().__init__(prepared, settings)
        self._local = threading.local()

    def _bounds(self, b):
        cones = self.structure.cones
        lower = np.full_like(b, -np.inf)
        lower[: cones.zero] = b[: cones.zero]
        return lower, b

    def solve(self, P, q, A, b, settings=None, warm_start=None):
        import osqp

        settings = {**self.settings, **(settings or {})}
        lower, upper = self._bounds(b)
        key = tuple(sorted(settings.items()))
        solver = getattr(self._local, "solver", None)
        if solver is None or self._local.key != key:
            solver = osqp.OSQP()
            solver.setup(
                self.prepared.P_upper_matrix(P), q, self.prepared.A.matrix(A), lower, upper,
                **settings,
            )
            self._local.solver, self._local.key = solver, key
        else:
            solver.update(
                q=q, l=lower, u=upper,
                Px=self.prepared.P_upper.values_in_csc_order(P[self.prepared.upper_mask]),
                Ax=self.prepared.A.values_in_csc_order(A),
            )
        if warm_start is not None:
            solver.warm_start(x=warm_start.x, y=warm_start.y)
        result = solver.solve(raise_error=False)
        status = _STATUS.get(result.info.status_val, Status.NUMERICAL_ERROR)
        x = np.asarray(result.x, dtype=np.float64)
        y = np.asarray(result.y, dtype=np.float64)
        if status in _NO_SOLUTION:
            nan_m = np.full(self.structure.m, np.nan)
            return HostSolution(np.full(self.structure.n, np.nan), nan_m, nan_m, status, result.info.iter)
        s = b - self.prepared.A.matrix(A) @ x
        s[: self.structure.cones.zero] = 0.0
        return HostSolution(x, y, s, status, result.info.iter)


def _status_table():
    import osqp

    S = osqp.SolverStatus
    return {
        S.OSQP_SOLVED: Status.SOLVED,
        S.OSQP_SOLVED_INACCURATE: Status.INACCURATE,
        S.OSQP_PRIMAL_INFEASIBLE: Status.PRIMAL_INFEASIBLE,
        S.OSQP_PRIMAL_INFEASIBLE_INACCURATE: Status.PRIMAL_INFEASIBLE,
        S.OSQP_DUAL_INFEASIBLE: Status.DUAL_INFEASIBLE,
        S.OSQP_DUAL_INFEASIBLE_INACCURATE: Status.DUAL_INFEASIBLE,
        S.OSQP_MAX_ITER_REACHED: Status.MAX_ITERATIONS,
        S.OSQP_TIME_LIMIT_REACHED: Status.MAX_ITERATIONS,
    }


_STATUS = _status_table()
