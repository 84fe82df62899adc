"""SCS (first-order, homogeneous self-dual embedding; zero, nonnegative, second-order, PSD,
exponential and power cones).

SCS's standard form and PSD format (lower triangle, column by column, off-diagonals × √2) are
ours, so data passes through unchanged. SCS's exponential cone is
``closure{(x, y, z): y e^{x/y} ≤ z}`` and its power cone for α > 0 is
``{(x, y, z): x^α y^{1−α} ≥ |z|}``, both ours.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .._errors import Status
from . import _settings
from ._base import ALL_CONES
from ._host import HostSolution, HostSolver


@dataclasses.dataclass(frozen=True)
class SCS(HostSolver):
    """SCS on the host; every cone. Options: SCS's keyword arguments (``eps_abs``, ...)."""

    name = "SCS"
    supported_cones = ALL_CONES
    # SCS's defaults (1e-4) are far too loose for derivatives; 1e-9 with acceleration usually
    # converges on small and medium problems. The layer's residual check catches the rest.
    default_settings = dict(eps_abs=1e-9, eps_rel=1e-9, max_iters=100_000, verbose=False)

    def settings_spec(self, cones):
        return _settings.SCS

    def setup(self, prepared):
        c = prepared.structure.cones
        return dict(
            z=c.zero,
            l=c.nonneg,
            q=list(c.soc),
            s=list(c.psd),
            ep=c.exp,
            ed=0,
            p=[float(a) for a in c.pow],
        )

    def solve_numpy(self, workspace, P, q, A, b, settings, warm_start):
        import scs

        prepared, cone = workspace
        data = dict(
            P=prepared.P_upper_matrix(P),
            A=prepared.A.matrix(A),
            b=np.asarray(b, np.float64),
            c=np.asarray(q, np.float64),
        )
        solver = scs.SCS(data, cone, **settings)
        if warm_start is not None:
            result = solver.solve(warm_start=True, x=warm_start.x, y=warm_start.y, s=warm_start.s)
        else:
            result = solver.solve()
        info = result["info"]
        return HostSolution(
            np.asarray(result["x"]),
            np.asarray(result["y"]),
            np.asarray(result["s"]),
            _status(info["status_val"]),
            int(info["iter"]),
        )


def _status(status_val: int) -> Status:
    # SCS status codes (scs/include/glbopts.h): 1 solved, 2 solved/inaccurate,
    # -1 unbounded, -6 unbounded/inaccurate, -2 infeasible, -7 infeasible/inaccurate,
    # -3 indeterminate, -4 failed, -5 interrupted.
    return {
        1: Status.SOLVED,
        2: Status.INACCURATE,
        -1: Status.DUAL_INFEASIBLE,
        -6: Status.DUAL_INFEASIBLE,
        -2: Status.PRIMAL_INFEASIBLE,
        -7: Status.PRIMAL_INFEASIBLE,
    }.get(int(status_val), Status.NUMERICAL_ERROR)
