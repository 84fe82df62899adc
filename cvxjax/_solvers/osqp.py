"""OSQP (QPs: zero and nonnegative cones only).

OSQP solves ``min ½xᵀPx + qᵀx s.t. l ≤ Ax ≤ u``. Our rows ``Ax + s = b`` map to
``l = u = b`` on zero-cone rows (equalities) and ``l = −∞, u = b`` on nonnegative rows
(``Ax ≤ b``). OSQP's multiplier satisfies ``Px + q + Aᵀy = 0`` with ``y ≥ 0`` on active upper
bounds, which is our ``y ∈ K*`` (free on equalities, ≥ 0 on inequalities), so y needs no
conversion and the slack is ``s = b − Ax``.

The OSQP workspace (its KKT factorization pattern) is set up once per thread and updated with
new values afterwards, since the sparsity pattern never changes.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from .._errors import Status
from . import _settings
from ._host import NO_SOLUTION, HostSolution, HostSolver


@dataclasses.dataclass(frozen=True)
class OSQP(HostSolver):
    """OSQP on the host; QPs only. Options: OSQP's settings (``eps_abs``, ``polishing``, ...)."""

    name = "OSQP"
    supported_cones = frozenset({"zero", "nonneg"})
    # ADMM converges slowly to high accuracy; polishing (an active-set refinement with a
    # direct solve) gives solutions accurate to ~1e-10, which the derivatives need.
    default_settings = dict(
        eps_abs=1e-8,
        eps_rel=1e-8,
        polishing=True,
        max_iter=100_000,
        verbose=False,
        eps_prim_inf=1e-9,
        eps_dual_inf=1e-9,
        # The workspace is reused across calls (below); OSQP's own warm starting would then
        # start each solve from whatever this thread solved last. Off, a call is a function
        # of its arguments; a start is given explicitly (warm_start=).
        warm_starting=False,
    )

    def settings_spec(self, cones):
        return _settings.OSQP

    def setup(self, prepared):
        return threading.local()  # one OSQP workspace per host thread

    def solve_numpy(self, workspace, P, q, A, b, settings, warm_start):
        import osqp

        prepared, local = workspace
        zero = prepared.structure.cones.zero
        lower = np.full_like(b, -np.inf)
        lower[:zero] = b[:zero]
        key = tuple(sorted(settings.items()))
        solver = getattr(local, "solver", None)
        if solver is None or local.key != key:
            solver = osqp.OSQP()
            solver.setup(prepared.P_upper_matrix(P), q, prepared.A.matrix(A), lower, b, **settings)
            local.solver, local.key = solver, key
        else:
            solver.update(
                q=q,
                l=lower,
                u=b,
                Px=prepared.P_upper.values_in_csc_order(P[prepared.upper_mask]),
                Ax=prepared.A.values_in_csc_order(A),
            )
            # The workspace remembers its last solve twice over: OSQP keeps the rho it adapted,
            # and an explicit warm start switches ``warm_starting`` on for later solves.
            # Both reset, a call depends on its arguments only, not on what this thread did.
            solver.update_settings(
                rho=settings.get("rho", _DEFAULT_RHO), warm_starting=warm_start is not None
            )
        if warm_start is not None:
            solver.warm_start(x=warm_start.x, y=warm_start.y)
        result = solver.solve(raise_error=False)
        status = _STATUS.get(result.info.status_val, Status.NUMERICAL_ERROR)
        x = np.asarray(result.x, dtype=np.float64)
        y = np.asarray(result.y, dtype=np.float64)
        if status in NO_SOLUTION:
            return HostSolution(x, y, y, status, result.info.iter)
        s = b - prepared.A.matrix(A) @ x
        s[:zero] = 0.0
        return HostSolution(x, y, s, status, result.info.iter)


_DEFAULT_RHO = 0.1  # OSQP's default initial rho


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
