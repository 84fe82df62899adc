"""Linear solves of the implicit system ``J dz = r`` (J = ∂F/∂z of :mod:`cvxjax._residual`).

J is square but singular at degenerate solutions (weakly active constraints, LP vertices with
non-unique duals, CVXPY's auxiliary variables). These solvers never return NaN or inf there.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._linear_solve import materialize, solve_bicgstab, solve_gmres, solve_normal_cg

# A pivot of LU's U this small relative to the largest marks J as singular to working
# accuracy. LU with partial pivoting then still returns a finite x with a small residual when
# the system is consistent, but one with an arbitrary (often huge) component along null(J):
# on the Maros-Meszaros QP QSHARE2B that component made the gradient 30% wrong. A false
# alarm (an ill-conditioned but nonsingular J) costs one SVD and gives the same answer.
_PIVOT_RATIO = 1e-11

# The minimum-norm solve keeps the fewest singular triplets of J that solve the system to
# this relative residual (times sqrt(eps): 1.5e-10 in float64, 3.5e-6 in float32, below the
# default degenerate_tol of cvxjax._degenerate). A fixed cutoff on the singular values
# does not work both ways: at a degenerate solution J's "zero" singular values are only as
# small as the solver's accuracy (~1e-9 relative), and dividing by them gives a derivative
# with a huge, arbitrary null-space component (Maros-Meszaros QSHARE2B: 30% wrong); but an
# ill-conditioned, nonsingular J (DUALC1) has singular values as small that carry the answer,
# and cutting them made that gradient 13x wrong.
_RESIDUAL_FACTOR = 1e-2

# Singular values below this many eps times the largest are zero: J's exact null space at
# a degenerate point comes out at ~1e-17 (QSHARE2B), while the smallest genuine singular
# value of a badly scaled, nonsingular J can be 2e-14 (DUALC1, condition number 5e13, where
# LU's answer is right and dropping that direction made the gradient 3x wrong).
_RANK_EPS = 10.0


# A dropped singular direction counts as a null direction of J (for the non-uniqueness
# check of cvxjax._degenerate) only if its singular value is also below sqrt(eps) times the
# largest: a well-conditioned direction can be dropped just because b has no component
# along it, and at a degenerate solution the "zero" singular values sit near the solver's
# accuracy (~1e-9 relative), well below sqrt(eps) = 1.5e-8 in float64.
def _null_threshold(sigma):
    return jnp.sqrt(jnp.finfo(sigma.dtype).eps) * sigma[0]


def _min_norm_solve(J, b, null_side=None):
    """The minimum-norm x with ``‖Jx − b‖ ≤ τ‖b‖``, τ = ``_RESIDUAL_FACTOR·sqrt(eps)``, among
    the truncated-SVD solutions; the least-squares solution at J's numerical rank (singular
    values above ``_RANK_EPS·eps·σ_max``) if none reaches τ (an inconsistent system; the
    caller reports the residual).

    With ``J = U diag(σ) Vᵀ`` and ``c = Uᵀb``, keeping the k largest singular values leaves the
    residual ``‖c[k:]‖`` (U is square and orthogonal), so every truncation is priced from one
    SVD. (Equilibrating J first, Ruiz's scaling, was tried: it made DUALC8's derivative NaN
    and flagged QSHARE2B's correct one.)

    ``null_side``: ``None`` returns x; ``"right"`` / ``"left"`` return ``(x, p)`` with p the
    projection of a fixed generic vector onto the numerical null space of J (``"right"``,
    the columns of V dropped) or of Jᵀ (``"left"``, the columns of U dropped): a generic
    element of that null space, zero when there is none.
    """
    U, sigma, Vt = jnp.linalg.svd(J)
    c = U.T @ b
    eps = jnp.finfo(b.dtype).eps
    tail = jnp.sqrt(jnp.cumsum((c * c)[::-1])[::-1])  # tail[k] = ‖c[k:]‖
    tail = jnp.concatenate([tail, jnp.zeros(1, b.dtype)])
    tau = _RESIDUAL_FACTOR * jnp.sqrt(eps) * (jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny)
    rank = jnp.sum(sigma > _RANK_EPS * eps * sigma[0])
    k = jnp.minimum(jnp.argmax(tail <= tau), rank)
    keep = jnp.arange(b.size) < k
    x = Vt.T @ jnp.where(keep, c / jnp.where(keep, sigma, 1.0), 0.0)
    if null_side is None:
        return x
    null = ~keep & (sigma <= _null_threshold(sigma))
    basis = Vt.T if null_side == "right" else U
    # A fixed generic vector (any vector not orthogonal to the null space does; a
    # deterministic one keeps the solve a pure function without random-number machinery).
    probe = jnp.sin(1.0 + 0.7548776662466927 * jnp.arange(b.size, dtype=b.dtype))
    return x, basis @ jnp.where(null, basis.T @ probe, 0.0)


def _solve_with_fallback(J, b, null_side=None):
    """``J x = b`` by LU; the minimum-norm solution when J is singular.

    Falls back when LU is non-finite, leaves a relative residual above ``1e4·eps·len(b)``,
    or meets a pivot below ``_PIVOT_RATIO`` times the largest. The fallback is the
    minimum-norm solution by SVD (:func:`_min_norm_solve`): for a consistent system an
    exact solution orthogonal to the (numerical) null space of J, for an inconsistent one
    the least-squares solution (whose residual the caller reports; see
    :func:`cvxjax._degenerate.flag_degenerate`). With ``null_side`` also a generic element of
    a null space (:func:`_min_norm_solve`; zero where LU is accepted: J is nonsingular).
    """
    lu, pivots = jax.scipy.linalg.lu_factor(J)
    x = jax.scipy.linalg.lu_solve((lu, pivots), b)
    scale = jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny
    residual = jnp.linalg.norm(J @ x - b) / scale
    eps = jnp.finfo(b.dtype).eps
    u = jnp.abs(jnp.diagonal(lu))
    well_pivoted = jnp.min(u) > _PIVOT_RATIO * jnp.max(u)
    good = jnp.all(jnp.isfinite(x)) & (residual < 1e4 * eps * b.size) & well_pivoted
    if null_side is None:
        return jax.lax.cond(good, lambda: x, lambda: _min_norm_solve(J, b))
    return jax.lax.cond(
        good, lambda: (x, jnp.zeros_like(b)), lambda: _min_norm_solve(J, b, null_side)
    )


# On CPU a batch of dense solves runs as a loop of unbatched LAPACK calls. Two reasons:
# (1) jaxlib 0.10's *batched* CPU LAPACK kernels split the batch over XLA's intra-op thread
# pool and block until the pieces finish; when two of them run at once (e.g. the LU and the
# fallback factorization of the two branches below, which vmap turns into a select) they can occupy every
# pool thread and wait on each other forever -- a deadlock we hit on a 2-core machine in
# batched gradients (gdb: both XLA threads in jax::ParallelBatchMap -> BlockingCounter::Wait).
# (2) Unbatched, the ``cond`` stays a real branch, so the fallback only runs where needed.
# On accelerators the batched kernels are the right choice.
_solve_each_with_fallback = {
    side: jax.custom_batching.sequential_vmap(
        functools.partial(_solve_with_fallback, null_side=side)
    )
    for side in (None, "right", "left")
}

_lu_solve_each = jax.custom_batching.sequential_vmap(jnp.linalg.solve)


def _on_cpu() -> bool:
    return jax.default_backend() == "cpu"


def robust_dense_solve(matvec, b, null_side=None):
    """LU solve, falling back to the minimum-norm least-squares solve (SVD) when J is
    (numerically) singular (:func:`_solve_with_fallback`).

    Singular J arises at degenerate solutions (see module docstring). LU then produces inf/NaN
    or a vector with an arbitrary component along null(J). The fallback used to be a damped
    solve ``(JᵀJ + δI)⁻¹Jᵀb``; it is biased (for a consistent system it does not satisfy J's
    rows: on Maros-Meszaros DUALC8 the gradient was off by 6x), so it was replaced by the
    exact minimum-norm solve. The price: under ``vmap`` on accelerators the ``cond`` becomes a
    ``select`` that evaluates both branches, and a batched SVD costs several LUs. On CPU the
    batch runs one problem at a time and the SVD only where LU failed.

    ``null_side`` (``"right"``: null(J), ``"left"``: null(Jᵀ)) makes it return ``(x, p)``
    with p a generic element of that numerical null space (zero if J is nonsingular), for
    the non-uniqueness check of :func:`cvxjax._degenerate.flag_degenerate`.
    """
    J = materialize(matvec, b)
    if _on_cpu():
        return _solve_each_with_fallback[null_side](J, b)
    return _solve_with_fallback(J, b, null_side)


def robust_krylov_solve(matvec, b, null_side=None):
    """BiCGSTAB; restarted GMRES if that fails; CG on the normal equations if both do.

    BiCGSTAB is the fastest of the three here (3x faster than GMRES on a sparse QP with
    n = 2000: short recurrences, one pair of matvecs per step), but it can break down on the
    indefinite, nonsymmetric J of the conic residual (seen: NaN on a least-squares QP whose
    variables have no quadratic term); GMRES cannot break down on a nonsingular J. At a
    degenerate solution J is singular (e.g. an LP with a whole optimal edge) and both can
    return NaN; CG on ``JᵀJ x = Jᵀb`` started from 0 stays in the row space of J and converges
    to the minimum-norm least-squares solution, the same generalized derivative the dense path
    returns. Unbatched, each fallback runs only when needed; under ``vmap`` on accelerators
    the ``cond`` becomes a ``select`` and all run.

    ``null_side`` makes it return ``(x, 0)``: matrix-free, it has no null-space basis, so
    the non-uniqueness check of :func:`cvxjax._degenerate.flag_degenerate` does not run on
    this path (only the residual check does).
    """
    scale = jnp.linalg.norm(b) + jnp.finfo(b.dtype).tiny

    def accurate(x):
        residual = jnp.linalg.norm(matvec(x) - b) / scale
        return jnp.all(jnp.isfinite(x)) & (residual <= 1e-6)

    x = solve_bicgstab(matvec, b)

    def after_bicgstab():
        x_gmres = solve_gmres(matvec, b)
        return jax.lax.cond(accurate(x_gmres), lambda: x_gmres, lambda: solve_normal_cg(matvec, b))

    x = jax.lax.cond(accurate(x), lambda: x, after_bicgstab)
    return x if null_side is None else (x, jnp.zeros_like(b))


def dense_lu_solve(J, r):
    """``J⁻¹ r`` by LU (unbatched LAPACK calls on CPU, for the reason above)."""
    return (_lu_solve_each if _on_cpu() else jnp.linalg.solve)(J, r)
