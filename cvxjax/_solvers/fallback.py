"""A solver that hands the problems it could not solve to a second one (``Auto``'s choice).

The pure-JAX solver is the fastest choice for small programs, but a first-order or
interior-point method in double precision can still stop at its iteration limit on a badly
scaled problem (Maros-Meszaros QBORE3D). Rather than raise, the automatic choice then solves
*that* problem again with Clarabel on the host; the rest of a batch never leaves JAX, and the
host solver only runs for the problems that need it (:meth:`HostSolver.solve`'s ``active``).

The switch happens in the solution map (:func:`cvxjax._solution_map.make_solution_map`),
which owns the residual check that decides it; this class only carries the pair.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from ._base import AbstractSolver
from ._host import HostSolver


class FallbackWorkspace(NamedTuple):
    primary: Any  # primary.init(...) for the program form it consumes
    fallback: Any  # fallback.init(canonical structure)


@dataclasses.dataclass(frozen=True, kw_only=True)
class WithFallback(AbstractSolver):
    """``primary``, then ``fallback`` for each problem whose answer is not accepted.

    Behaves as ``primary`` everywhere (name, program form, options, dtypes, residual check):
    options given to the layer are the primary's, and the fallback runs with its defaults.
    A problem falls back when the checked status of the primary's answer is neither solved nor
    a certificate of infeasibility or unboundedness (iteration limit, inaccurate, numerical
    error); ``Solution.used_fallback`` says which did.
    """

    primary: AbstractSolver = None
    fallback: HostSolver = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.primary.name

    @property
    def data_form(self) -> str:  # type: ignore[override]
        return self.primary.data_form

    @property
    def dtypes(self):  # type: ignore[override]
        return self.primary.dtypes

    @property
    def polishes(self) -> bool:  # type: ignore[override]
        return self.primary.polishes

    @property
    def supported_cones(self):  # type: ignore[override]
        return self.primary.supported_cones

    def default_check_tol(self, dtype) -> float:
        return self.primary.default_check_tol(dtype)

    def settings_spec(self, cones):
        return self.primary.settings_spec(cones)

    def check_settings(self, extra, cones) -> dict:
        return self.primary.check_settings(extra, cones)

    def init(self, structure):
        raise TypeError(
            "WithFallback has two workspaces, one per program form: build a "
            "FallbackWorkspace(primary.init(...), fallback.init(...))."
        )

    def solve(self, workspace, program, settings, warm_start=None):
        return self.primary.solve(workspace.primary, program, settings, warm_start)
