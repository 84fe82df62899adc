"""Making a degenerate derivative visible: the residual of the implicit linear solve.

At a degenerate solution J = ∂F/∂z is singular (:mod:`cvxjax._robust_solve`). Where the
linear system is still consistent, its minimum-norm solution is an exact derivative (an
element of the generalized Jacobian, satisfying every linearized optimality condition).
Where it is not, no tangent satisfies the linearization: the solution map has a kink in that
direction, and the least-squares answer is a compromise that can be far from either one-sided
derivative. Consistency is measured, after the solve, by the relative residual

    ρ = ‖J dz − r‖ / ‖r‖          (forward mode; ‖Jᵀu − z̄‖ / ‖z̄‖ in reverse mode),

one extra matrix-vector product. In reverse mode ρ > 0 means exactly that the cotangent z̄
has a component along null(J), i.e. the *requested* derivative (of ⟨z̄, z⟩) is not unique;
a loss that only looks at well-defined parts of the solution (x of a problem whose duals are
not unique) passes.

ρ cannot see the other failure: a consistent system with many solutions, where the
solution x* itself is not unique (an LP with a tied cost, Maros-Meszaros QISRAEL). Then every
derivative of the requested variables depends on which optimal point the solver returned.
When the dense solve falls back to its SVD it also returns a generic element p of null(J)
(zero when LU was accepted), and the derivative is flagged when the requested CVXPY
variables move along p: ``‖visible(p)‖ / ‖p‖ > NON_UNIQUE_TOL`` (:func:`flag_degenerate`).
The Krylov path does no such check (it would need a null-space estimate per solve).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import DegenerateDerivativeError, DegenerateDerivativeWarning

POLICIES = ("warn", "raise", "nan", "ignore")


def default_degenerate_tol(dtype) -> float:
    """Largest accepted relative residual ρ of the implicit solve: 1e-6 in float64; 1e-3 in
    float32, where LU alone leaves ~1e-7·cond(J)."""
    return 1e-3 if jnp.finfo(dtype).bits <= 32 else 1e-6


# The requested primal outputs move along a null direction of J by more than this fraction
# of the direction's length: the solution itself is not unique (see flag_degenerate).
NON_UNIQUE_TOL = 1e-3


def _message(residual, tol):
    return (
        "the linearized optimality conditions have no solution at this point (relative "
        f"residual of the implicit linear solve {residual:.2e} > degenerate_tol={tol:.0e}): "
        "the solution is at a kink of the solution map (e.g. a weakly active constraint or "
        "non-unique duals) and the derivative returned is a least-squares compromise. " + _ADVICE
    )


def _non_unique_message(share):
    return (
        "the solution is not unique: the linearized optimality conditions leave a direction "
        f"free along which the requested variables move ({share:.2e} of its length > "
        f"{NON_UNIQUE_TOL:.0e}), so the derivative depends on which optimal point the solver "
        "returned (the minimum-norm one is used). " + _ADVICE
    )


_ADVICE = (
    "See docs/concepts/degenerate-points.md; pass on_degenerate='raise' for an error, "
    "'nan' for NaN derivatives or 'ignore' to silence this."
)


def _report(policy, tol):
    def report(residual, share):
        residual, share = np.asarray(residual), np.asarray(share)
        worst = float(np.max(np.where(np.isfinite(residual), residual, np.inf), initial=0.0))
        widest = float(np.max(np.where(np.isfinite(share), share, np.inf), initial=0.0))
        # Under an enclosing vmap the callback runs for the whole batch.
        if worst > tol:
            message = _message(worst, tol)
        elif widest > NON_UNIQUE_TOL:
            message = _non_unique_message(widest)
        else:
            return
        if policy == "raise":
            raise DegenerateDerivativeError("cvxjax.DegenerateDerivativeError: " + message)
        warnings.warn(message, DegenerateDerivativeWarning, stacklevel=2)

    return report


def flag_degenerate(solve, policy: str, tol: float | None = None, visible=None):
    """Wrap a linear solver ``solve(matvec, b) -> x`` so that it measures ρ and acts on it.

    ``policy``: ``"warn"`` (a :class:`~cvxjax.DegenerateDerivativeWarning`, from a host
    callback that only runs when ρ > tol), ``"raise"`` (a
    :class:`~cvxjax.DegenerateDerivativeError` from the same callback), ``"nan"`` (the
    solution becomes NaN, per problem of a batch) or ``"ignore"`` (``solve`` unchanged).
    ``tol``: default :func:`default_degenerate_tol` of the system's dtype.

    ``visible``: optional ``visible(dz, *args, **kwargs)``, linear in the flat unknowns dz,
    giving the primal values the caller reports (the requested CVXPY variables) at the
    root's arguments (passed by :func:`cvxjax._implicit.root_jvp` through ``bind``). A
    consistent system can still have many solutions; in reverse mode ρ cannot see it, yet
    the derivative then depends on which one the solve picks (Maros-Meszaros QISRAEL: every
    ``Jᵀu = z̄`` has a solution, and the gradient of the optimal value came out 6x wrong).
    So ``solve`` is also asked
    (``null_side=``, see :func:`cvxjax._robust_solve.robust_dense_solve`) for a generic
    element p of null(J), zero when J is nonsingular; the derivative is flagged when
    ``‖visible(p)‖ > NON_UNIQUE_TOL·‖p‖``, i.e. when the reported solution itself is not
    unique to first order. Null directions that only move CVXPY's auxiliary variables or
    the duals (an inactive norm's epigraph variable, duplicated constraints) pass. The
    returned solver then has a ``bind`` attribute, and a ``transposed`` one for the ``Jᵀ``
    system (:func:`cvxjax._linear_solve.transposable_solve`): there null(J) is the left
    null space of the operator it is given.
    """
    if policy not in POLICIES:
        raise ValueError(f"on_degenerate must be one of {POLICIES}, got {policy!r}.")
    if policy == "ignore":
        return solve

    def flagged_on(null_side, visible_here):
        def flagged(matvec, b):
            if visible_here is None:
                x, share = solve(matvec, b), jnp.zeros((), b.dtype)
            else:
                x, p = solve(matvec, b, null_side=null_side)
                norm_p = jnp.linalg.norm(p)
                share = jnp.linalg.norm(visible_here(p)) / jnp.where(norm_p > 0, norm_p, 1.0)
            limit = default_degenerate_tol(b.dtype) if tol is None else tol
            scale = jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny
            residual = jnp.linalg.norm(matvec(x) - b) / scale
            bad = ~(residual <= limit) | (share > NON_UNIQUE_TOL)  # NaN counts as bad
            if policy == "nan":
                return jnp.where(bad, jnp.nan, x)
            report = _report(policy, limit)
            jax.lax.cond(bad, lambda: jax.debug.callback(report, residual, share), lambda: None)
            return x

        return flagged

    def solver_for(visible_here):
        flagged = flagged_on("right", visible_here)
        flagged.transposed = flagged_on("left", visible_here)
        return flagged

    flagged = solver_for(None)
    if visible is not None:
        flagged.bind = lambda *args, **kwargs: solver_for(lambda p: visible(p, *args, **kwargs))
    return flagged
