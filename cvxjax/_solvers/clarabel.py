"""Clarabel (interior point; zero, nonnegative, second-order, PSD, exponential and power cones).

Clarabel's standard form is ours (``Ax + s = b, s ∈ K``; dual ``z ∈ K*`` with
``Px + q + Aᵀz = 0``). The one difference is the PSD triangle: Clarabel stores the *upper*
triangle column by column (off-diagonals × √2), we store the lower one, so PSD rows are
permuted on the way in and back on the way out.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from .._errors import Status
from . import _settings
from ._base import ALL_CONES
from ._host import (
    CscPattern,
    HostSolution,
    HostSolver,
    cone_rows_permutation,
    psd_lower_to_upper_permutation,
)


class _ClarabelState(NamedTuple):
    perm: np.ndarray  # row r of Clarabel's problem is our row perm[r]
    inverse_perm: np.ndarray
    A_pattern: CscPattern  # A with its rows in Clarabel's order
    cones: tuple  # cone specs: (kind, argument), turned into Clarabel objects per solve


@dataclasses.dataclass(frozen=True)
class Clarabel(HostSolver):
    """Clarabel on the host; every cone. Options: Clarabel's ``DefaultSettings`` fields."""

    name = "CLARABEL"
    supported_cones = ALL_CONES
    # Tighter than Clarabel's defaults (1e-8) so that derivatives, whose error is proportional
    # to the solution's, come out accurate; interior point reaches these in a few more steps.
    default_settings = dict(
        verbose=False,
        tol_gap_abs=1e-10,
        tol_gap_rel=1e-10,
        tol_feas=1e-10,
        tol_ktratio=1e-8,
        max_iter=200,
    )

    def settings_spec(self, cones):
        return _settings.CLARABEL

    def setup(self, prepared):
        structure = prepared.structure
        cones = structure.cones
        perm = cone_rows_permutation(cones, psd_lower_to_upper_permutation)
        inverse_perm = np.argsort(perm)
        A_pattern = CscPattern(
            inverse_perm[np.asarray(structure.A_rows)],
            structure.A_cols,
            (structure.m, structure.n),
        )
        specs = ([("zero", cones.zero)] if cones.zero else []) + (
            [("nonneg", cones.nonneg)] if cones.nonneg else []
        )
        specs += [("soc", k) for k in cones.soc] + [("psd", k) for k in cones.psd]
        specs += [("exp", None)] * cones.exp + [("pow", float(a)) for a in cones.pow]
        return _ClarabelState(perm, inverse_perm, A_pattern, tuple(specs))

    def solve_numpy(self, workspace, P, q, A, b, settings, warm_start):
        import clarabel

        prepared, state = workspace
        options = clarabel.DefaultSettings()
        for key, value in settings.items():
            setattr(options, key, value)
        solver = clarabel.DefaultSolver(
            prepared.P_upper_matrix(P),
            np.asarray(q, np.float64),
            state.A_pattern.matrix(A),
            np.asarray(b, np.float64)[state.perm],
            _clarabel_cones(state.cones),
            options,
        )
        solution = solver.solve()
        y = np.asarray(solution.z)[state.inverse_perm]
        s = np.asarray(solution.s)[state.inverse_perm]
        return HostSolution(
            np.asarray(solution.x), y, s, _status(solution.status), int(solution.iterations)
        )


def _clarabel_cones(specs):
    import clarabel

    make = {
        "zero": clarabel.ZeroConeT,
        "nonneg": clarabel.NonnegativeConeT,
        "soc": clarabel.SecondOrderConeT,
        "psd": clarabel.PSDTriangleConeT,
        "exp": lambda _: clarabel.ExponentialConeT(),
        "pow": clarabel.PowerConeT,
    }
    return [make[kind](arg) for kind, arg in specs]


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
