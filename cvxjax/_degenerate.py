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


def _message(residual, tol):
    return (
        "the linearized optimality conditions have no solution at this point (relative "
        f"residual of the implicit linear solve {residual:.2e} > degenerate_tol={tol:.0e}): "
        "the solution is at a kink of the solution map (e.g. a weakly active constraint or "
        "non-unique duals) and the derivative returned is a least-squares compromise. "
        "See docs/concepts/degenerate-points.md; pass on_degenerate='raise' for an error, "
        "'nan' for NaN derivatives or 'ignore' to silence this."
    )


def _report(policy, tol):
    def report(residual):
        residual = np.asarray(residual)
        worst = float(np.max(np.where(np.isfinite(residual), residual, np.inf), initial=0.0))
        if not worst > tol:
            return  # under an enclosing vmap the callback runs for the whole batch
        if policy == "raise":
            raise DegenerateDerivativeError(
                "cvxjax.DegenerateDerivativeError: " + _message(worst, tol)
            )
        warnings.warn(_message(worst, tol), DegenerateDerivativeWarning, stacklevel=2)

    return report


def flag_degenerate(solve, policy: str, tol: float | None = None):
    """Wrap a linear solver ``solve(matvec, b) -> x`` so that it measures ρ and acts on it.

    ``policy``: ``"warn"`` (a :class:`~cvxjax.DegenerateDerivativeWarning`, from a host
    callback that only runs when ρ > tol), ``"raise"`` (a
    :class:`~cvxjax.DegenerateDerivativeError` from the same callback), ``"nan"`` (the
    solution becomes NaN, per problem of a batch) or ``"ignore"`` (``solve`` unchanged).
    ``tol``: default :func:`default_degenerate_tol` of the system's dtype.
    """
    if policy not in POLICIES:
        raise ValueError(f"on_degenerate must be one of {POLICIES}, got {policy!r}.")
    if policy == "ignore":
        return solve

    def flagged(matvec, b):
        x = solve(matvec, b)
        limit = default_degenerate_tol(b.dtype) if tol is None else tol
        scale = jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny
        residual = jnp.linalg.norm(matvec(x) - b) / scale
        bad = ~(residual <= limit)  # NaN counts as bad
        if policy == "nan":
            return jnp.where(bad, jnp.nan, x)
        report = _report(policy, limit)
        jax.lax.cond(bad, lambda: jax.debug.callback(report, residual), lambda: None)
        return x

    return flagged
