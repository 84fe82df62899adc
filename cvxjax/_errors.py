"""Solver statuses and the error raised when a solve fails."""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Outcome of one solve. Non-zero means the returned solution must not be used."""

    SOLVED = 0
    INACCURATE = 1  # the solver stopped, but the optimality residual is above tolerance
    PRIMAL_INFEASIBLE = 2
    DUAL_INFEASIBLE = 3  # the problem is unbounded (or dual infeasible)
    MAX_ITERATIONS = 4
    NUMERICAL_ERROR = 5

    def describe(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Status.SOLVED: "solved",
    Status.INACCURATE: (
        "the solution returned by the solver does not satisfy the optimality conditions to "
        "tolerance; tighten the solver's tolerances through solver_args, or try another solver"
    ),
    Status.PRIMAL_INFEASIBLE: "the problem is infeasible (no point satisfies the constraints)",
    Status.DUAL_INFEASIBLE: "the problem is unbounded (or its dual is infeasible)",
    Status.MAX_ITERATIONS: (
        "the solver hit its iteration limit; raise max_iter through solver_args or use "
        "another solver"
    ),
    Status.NUMERICAL_ERROR: "the solver failed with a numerical error",
}


class SolverError(RuntimeError):
    """A solve failed (infeasible, unbounded, iteration limit, numerical trouble or an
    inaccurate solution).

    Attributes:
      status: the [`Status`][cvxjax.Status] of the (first) failing problem.
      index: its position in the batch (``None`` for an unbatched call).
      solver: the backend's name.

    Inside ``jax.jit`` the error is raised from a host callback, and JAX re-raises it as a
    ``jax.errors.JaxRuntimeError`` whose message contains this error's message. To keep
    going instead, build the layer with ``on_failure="nan"``.
    """

    def __init__(self, message: str, status: Status | None = None, index=None, solver=None):
        super().__init__(message)
        self.status = status
        self.index = index
        self.solver = solver
