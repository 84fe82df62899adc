"""Solver statuses and the error raised when a solve fails."""

from __future__ import annotations

import enum

import jax
import jax.numpy as jnp
import numpy as np


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
      solver: the solver's name.

    Inside ``jax.jit`` the error is raised from a host callback, and JAX re-raises it as a
    ``jax.errors.JaxRuntimeError`` whose message contains this error's message. To keep
    going instead, build the layer with ``on_failure="nan"``.
    """

    def __init__(self, message: str, status: Status | None = None, index=None, solver=None):
        super().__init__(message)
        self.status = status
        self.index = index
        self.solver = solver


def solver_error(solver_name: str, status, batch_shape=(), offset=None) -> SolverError:
    """A :class:`SolverError` describing the first failed problem of a status array.

    ``offset``: the batch index of ``status[0]`` when ``status`` is one device's shard of a
    batch (the count of failures is then the shard's)."""
    status = np.asarray(status).reshape(-1)
    failed = np.flatnonzero(status)
    first = int(failed[0])
    code = Status(int(status[first]))
    where = ""
    index = None
    if batch_shape:
        index = np.unravel_index(first, batch_shape)
        shift = 0 if offset is None else int(offset)
        index = int(index[0]) + shift if len(index) == 1 else tuple(int(i) for i in index)
        if offset is None:
            counted = f"{failed.size} of {status.size} problems failed"
        else:
            last = int(offset) + status.size - 1
            counted = f"{failed.size} of elements {int(offset)}..{last} failed"
        where = f" for batch element {index} ({counted})"
    return SolverError(
        f"cvxjax.SolverError: {solver_name} failed{where}: {code.name}: {code.describe()}.",
        status=code,
        index=index,
        solver=solver_name,
    )


def raise_if_failed(solver_name: str, status, offset=None) -> None:
    """The one place where a failed status becomes a :class:`SolverError`.

    ``status`` is an int array of :class:`Status` codes with the batch's shape. Concrete (an
    eager call, after the compiled solve returned): raise here. Traced (the layer is called
    inside the user's ``jit``/``grad``/``vmap``): a host callback raises when the compiled
    program runs, and JAX re-raises it as ``jax.errors.JaxRuntimeError`` carrying our message,
    so the status and the batch index are named in both cases.

    Why a callback and not ``equinox.error_if`` or ``checkify``: their messages are fixed at
    trace time (``branched_error_if`` can pick one of several fixed messages), so they cannot
    name the failing batch index, and checkify makes the user wrap their function. The
    callback sits under a ``cond`` so that it only runs when something failed: an
    unconditional ``jax.debug.callback`` cost ~0.2 ms per call, more than a small QP solve.
    (Under an enclosing ``vmap`` the cond becomes a select and the callback runs every time,
    with the batched status; still correct.)

    ``offset`` (traced, on a sharded batch): the batch index of this device's first element;
    each device then checks its own shard, so no status is gathered across devices.
    """
    if not isinstance(status, jax.core.Tracer):
        status = np.asarray(status)
        if np.any(status != Status.SOLVED):
            raise solver_error(solver_name, status, status.shape)
        return

    def throw(status, offset):
        status = np.asarray(status)
        if np.any(status != Status.SOLVED):
            shard_offset = None if int(offset) < 0 else int(offset)
            raise solver_error(solver_name, status, status.shape, shard_offset)

    # -1: not a shard (a traced offset cannot be None).
    offset = jnp.full((), -1, jnp.int32) if offset is None else offset
    jax.lax.cond(
        jnp.any(status != Status.SOLVED),
        lambda: jax.debug.callback(throw, status, offset),
        lambda: None,
    )


class DegenerateDerivativeError(ArithmeticError):
    """The implicit linear system of a derivative has no solution to working accuracy.

    Raised (with ``on_degenerate="raise"``) when the least-squares solution of
    ``J dz = r`` (forward mode) or ``Jᵀu = z̄`` (reverse mode) leaves a relative residual
    above the layer's ``degenerate_tol``: the solution is at a kink of the solution map
    and the requested derivative does not exist there (see ``docs/concepts/degenerate-points.md``).
    Inside ``jax.jit`` JAX re-raises it as a ``jax.errors.JaxRuntimeError`` carrying this
    message, as for [`SolverError`][cvxjax.SolverError].
    """


class DegenerateDerivativeWarning(UserWarning):
    """The warning issued instead of [`DegenerateDerivativeError`][cvxjax.DegenerateDerivativeError]
    under the default ``on_degenerate="warn"``: the derivative returned is the
    minimum-norm least-squares one, which does not satisfy the linearized optimality
    conditions."""
