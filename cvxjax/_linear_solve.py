"""Linear solvers for the implicit-function-theorem system.

Every solver has the signature ``solve(matvec, b) -> x`` with ``matvec(x) = J x`` a linear
function on flat 1-D arrays and ``b`` a 1-D array; it returns x with ``J x ≈ b``.

They are used *inside* ``jax.lax.custom_linear_solve`` (see :func:`transposable_solve`), which
is what makes the implicit derivative work in both modes: the JVP rule solves ``J u = r``, and
reverse mode is obtained by JAX transposing that linear solve, which calls the same ``solve``
on the transposed operator ``Jᵀ`` (JAX builds ``vecmat`` from ``matvec`` by linear
transposition). None of the solvers is itself differentiated: ``custom_linear_solve`` defines
its own derivative, ``d(J⁻¹b) = J⁻¹(db − dJ·J⁻¹b)``.
"""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp
import jax.scipy.sparse.linalg as jsp_linalg

Matvec = Callable[[jax.Array], jax.Array]
LinearSolve = Callable[[Matvec, jax.Array], jax.Array]


def _default_tol(dtype) -> float:
    # Iterative solvers stop on a relative residual; the Jacobian error this causes adds to the
    # error of the root itself, so ask for a residual well below what float32 / float64 can
    # represent in a typical solution (‖x‖·eps·cond).
    return 1e-5 if jnp.finfo(dtype).bits <= 32 else 1e-10


def materialize(matvec: Matvec, b: jax.Array) -> jax.Array:
    """The dense matrix J (len(b), len(b)) of a linear ``matvec``, column by column."""
    # matvec is linear, so its Jacobian at any point is J; jacfwd pushes the identity through it.
    return jax.jacfwd(matvec)(jnp.zeros_like(b))


def solve_lu(matvec: Matvec, b: jax.Array) -> jax.Array:
    """Dense LU: materialize J (n² memory, n matvecs) and solve. Exact; best for n ≲ 2000."""
    return jnp.linalg.solve(materialize(matvec, b), b)


def solve_lstsq(matvec: Matvec, b: jax.Array) -> jax.Array:
    """Dense minimum-norm least squares ``argmin ‖x‖ s.t. x ∈ argmin ‖Jx − b‖`` (via SVD).

    Unlike LU it stays finite when J is singular, e.g. at degenerate points of a constrained
    problem (weakly active constraints, non-unique duals), where it returns the minimum-norm
    element of the set of generalized derivatives.
    """
    return jnp.linalg.lstsq(materialize(matvec, b), b)[0]


def solve_cg(matvec: Matvec, b: jax.Array, *, tol=None, maxiter=None) -> jax.Array:
    """Conjugate gradient. Only valid when J is symmetric positive definite
    (e.g. stationarity conditions of a strictly convex objective)."""
    tol = _default_tol(b.dtype) if tol is None else tol
    return jsp_linalg.cg(matvec, b, tol=tol, atol=0.0, maxiter=maxiter)[0]


def solve_gmres(matvec: Matvec, b: jax.Array, *, tol=None, restart=20, maxiter=None) -> jax.Array:
    """Restarted GMRES: any nonsingular J."""
    tol = _default_tol(b.dtype) if tol is None else tol
    restart = min(restart, b.size)
    maxiter = 10 * b.size if maxiter is None else maxiter
    return jsp_linalg.gmres(
        matvec, b, tol=tol, atol=0.0, restart=restart, maxiter=maxiter, solve_method="batched"
    )[0]


def solve_bicgstab(matvec: Matvec, b: jax.Array, *, tol=None, maxiter=None) -> jax.Array:
    """BiCGSTAB: any nonsingular J, short recurrences (less memory than GMRES)."""
    tol = _default_tol(b.dtype) if tol is None else tol
    return jsp_linalg.bicgstab(matvec, b, tol=tol, atol=0.0, maxiter=maxiter)[0]


def solve_normal_cg(matvec: Matvec, b: jax.Array, *, tol=None, maxiter=None) -> jax.Array:
    """CG on the normal equations ``JᵀJ x = Jᵀb``: any J with full column rank, matrix-free.

    Squares the condition number, so it converges slower than GMRES on ill-conditioned J.
    """
    tol = _default_tol(b.dtype) if tol is None else tol
    transpose = jax.linear_transpose(matvec, b)
    rmatvec = lambda r: transpose(r)[0]
    normal_matvec = lambda x: rmatvec(matvec(x))
    return jsp_linalg.cg(normal_matvec, rmatvec(b), tol=tol, atol=0.0, maxiter=maxiter)[0]


SOLVERS: dict[str, LinearSolve] = {
    "lu": solve_lu,
    "lstsq": solve_lstsq,
    "cg": solve_cg,
    "gmres": solve_gmres,
    "bicgstab": solve_bicgstab,
    "normal_cg": solve_normal_cg,
}

DEFAULT_SOLVE = "lu"


def resolve_solve(solve: Union[str, LinearSolve, None]) -> LinearSolve:
    """Turn a solver name (or ``None`` for the default, or a callable) into a callable."""
    if solve is None:
        solve = DEFAULT_SOLVE
    if isinstance(solve, str):
        try:
            return SOLVERS[solve]
        except KeyError:
            raise ValueError(
                f"Unknown linear solver {solve!r}; expected one of {sorted(SOLVERS)} "
                "or a callable solve(matvec, b) -> x."
            ) from None
    if not callable(solve):
        raise ValueError(
            f"`solve` must be a solver name {sorted(SOLVERS)} or a callable "
            f"solve(matvec, b) -> x, got {type(solve).__name__}."
        )
    return solve


def transposable_solve(matvec: Matvec, b: jax.Array, solve: LinearSolve) -> jax.Array:
    """``J⁻¹ b`` as a JAX-transposable linear map of ``b`` (so reverse mode works).

    ``jax.lax.custom_linear_solve`` records the solve as a linear primitive in ``b`` whose
    transpose is ``J⁻ᵀ``, computed by calling ``solve`` on the transposed matvec -- or
    ``solve.transposed`` if the solver has that attribute (one that must know which of the
    two systems it solves, such as :func:`cvxjax._degenerate.flag_degenerate`'s).
    """
    transposed = getattr(solve, "transposed", solve)
    return jax.lax.custom_linear_solve(
        matvec,
        b,
        solve=lambda mv, rhs: solve(mv, rhs),
        transpose_solve=lambda vm, rhs: transposed(vm, rhs),
    )
