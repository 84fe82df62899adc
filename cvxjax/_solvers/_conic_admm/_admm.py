"""A pure-JAX dense conic solver: ADMM to moderate accuracy, then semismooth Newton on F.

Problem (the canonical form of :mod:`cvxjax._program`, any product cone K)::

    minimize ½xᵀPx + qᵀx   subject to   Ax + s = b,  s ∈ K;   dual  Px + q + Aᵀy = 0, y ∈ K*.

**ADMM** (the splitting of OSQP extended to cones, as in COSMO, Garstka, Cannon & Goulart
2021). With step sizes σ > 0 (on x) and ρ > 0 (per row: 10³ρ on equality rows, and constant
on every other cone block so that the projection stays Euclidean), relaxation α ∈ (0, 2):

    (P + σI + AᵀRA) x̃ = σxᵏ − q + AᵀR(b − sᵏ − R⁻¹yᵏ)        (one Cholesky factor of H)
    ν = R(Ax̃ − b + sᵏ + R⁻¹yᵏ),   s̃ = sᵏ − R⁻¹(ν − yᵏ)
    xᵏ⁺¹ = αx̃ + (1 − α)xᵏ,   w = αs̃ + (1 − α)sᵏ − R⁻¹yᵏ
    sᵏ⁺¹ = Π_K(w),   yᵏ⁺¹ = R(sᵏ⁺¹ − w) = RΠ_{K*}(−w) ∈ K*         (Moreau's decomposition).

At a fixed point ν = y, Px + q + Aᵀy = 0 and Ax + s = b: the KKT conditions (our sign of y is
the negative of COSMO's). The data are equilibrated first (cone-respecting Ruiz scaling,
:mod:`._scaling`), and ρ is rebalanced every few checks from the ratio of the scaled primal
and dual residuals (OSQP's rule), refactoring H when it moves by more than 5×.

**Infeasibility.** The successive differences converge to certificates (Banjac et al. 2019):
δy = yᵏ⁺¹ − yᵏ with Aᵀδy ≈ 0, bᵀδy < 0, δy ∈ K* proves primal infeasibility; δx with Pδx ≈ 0,
qᵀδx < 0, −Aδx ∈ K proves unboundedness. Tested on the normalized differences in scaled units.

**Newton polish.** ADMM converges linearly and slowly to high accuracy; the conic residual
F(x, v) of :mod:`cvxjax._residual` (v = y − s) is semismooth, and near a solution whose cone
faces ADMM has identified Newton converges quadratically. So once the relative KKT residual is
below ``polish_at`` a few Newton steps on F are tried; they are kept if the result meets
``tol``, otherwise ADMM continues and the next attempt waits for a 10× smaller residual.

Cost: one n×n Cholesky per ρ update; per iteration two triangular solves, two products with A
and one projection onto K (PSD blocks through ``eigh``); per Newton attempt one LU of order
n + m (the same matrix the backward pass factors).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.linalg import cho_solve

from ..._cones import ProductCone
from ..._errors import Status
from ..._program import ConeDims, DenseProgram
from ..._residual import conic_residual, kkt_residuals, newton_refine
from ._scaling import equilibrate, row_blocks

_SIGMA = 1e-6
_ALPHA = 1.6
_RHO_INIT = 0.1
_RHO_EQ_FACTOR = 1e3
_RHO_MIN, _RHO_MAX = 1e-6, 1e6
_ADAPT_EVERY = 5  # checks between ρ updates
_RUNNING = -1


class ConicSolution(NamedTuple):
    """x (n,), y (m,) in K*, s (m,) in K, status (int32 :class:`cvxjax.Status` code),
    iterations (int32, ADMM iterations), polished (bool: the answer came from Newton on F)."""

    x: jax.Array
    y: jax.Array
    s: jax.Array
    status: jax.Array
    iterations: jax.Array
    polished: jax.Array


class _Scaled(NamedTuple):
    P: jax.Array
    q: jax.Array
    A: jax.Array
    b: jax.Array


class _State(NamedTuple):
    x: jax.Array
    s: jax.Array
    y: jax.Array
    dx: jax.Array  # last ADMM differences (for the certificates)
    dy: jax.Array
    chol: jax.Array  # Cholesky factor of H for the current ρ
    rho: jax.Array  # scalar ρ
    checks: jax.Array  # blocks of check_every ADMM iterations done
    polish_at: jax.Array
    status: jax.Array
    polished: jax.Array
    answer: tuple  # (x, y, s) in original units, once solved


def solve_conic(
    P,
    q,
    A,
    b,
    cones: ConeDims,
    *,
    tol=None,
    max_iter: int = 10_000,
    check_every: int = 10,
    polish_steps: int = 2,
    polish_at=None,
    tol_inf=None,
    warm_start=None,
) -> ConicSolution:
    """Solve one dense conic program (see the module docstring). Pure JAX, unbatched.

    Args:
      P (n, n), q (n,), A (m, n), b (m,): the data; ``cones`` the static cone of the rows.
      tol: relative KKT residual (:func:`cvxjax._residual.kkt_residuals`) at which a point is
        accepted; default 1e-9 in float64, 1e-5 in float32.
      max_iter: ADMM iterations (static); ``check_every``: iterations between checks.
      polish_steps: Newton steps per polish attempt; ``polish_at``: residual of the first
        attempt (default 1e-3 in float64, 1e-2 in float32).
      tol_inf: threshold of the certificate tests (default 1e-6 float64, 1e-3 float32).
      warm_start: ``(x, y, s)`` in original units, or ``None`` (start at 0).
    """
    dtype = jnp.result_type(P, q, A, b)
    wide = jnp.finfo(dtype).bits >= 64
    tol = (1e-9 if wide else 1e-5) if tol is None else tol
    polish_at = (1e-3 if wide else 1e-2) if polish_at is None else polish_at
    tol_inf = (1e-6 if wide else 1e-3) if tol_inf is None else tol_inf
    n, m = q.shape[0], b.shape[0]
    P = 0.5 * (P + P.T)
    program = DenseProgram(P, q, A, b, cones)
    cone = ProductCone(cones)
    F = conic_residual(cone)
    blocks = row_blocks(cones)
    col, row, c = equilibrate(P, q, A, b, blocks)
    sc = _Scaled(c * P * col[:, None] * col[None, :], c * col * q, A * row[:, None] * col, row * b)
    is_eq = jnp.arange(m) < cones.zero

    def rho_rows(rho):
        return jnp.where(is_eq, _RHO_EQ_FACTOR * rho, rho)

    def factor(rho):
        H = sc.P + _SIGMA * jnp.eye(n, dtype=dtype) + (sc.A.T * rho_rows(rho)) @ sc.A
        return lax.linalg.cholesky(H, symmetrize_input=False)

    def unscale(x, y, s):
        return col * x, row * y / c, s / row

    def admm(_, carry):
        x, s, y, _, _, chol, rho = carry
        r_vec = rho_rows(rho)
        r = sc.b - s - y / r_vec
        xt = cho_solve((chol, True), _SIGMA * x - sc.q + sc.A.T @ (r_vec * r))
        nu = r_vec * (sc.A @ xt - r)
        st = s - (nu - y) / r_vec
        x_new = _ALPHA * xt + (1 - _ALPHA) * x
        w = _ALPHA * st + (1 - _ALPHA) * s - y / r_vec
        s_new = cone.project(w)
        y_new = r_vec * (s_new - w)
        return x_new, s_new, y_new, x_new - x, y_new - y, chol, rho

    def certificates(st):
        def normalized(d):
            size = jnp.max(jnp.abs(d), initial=0.0)
            return d / jnp.where(size > 0, size, 1.0), size > jnp.finfo(dtype).tiny

        d, moved = normalized(st.dy)
        primal_inf = (
            moved
            & (jnp.max(jnp.abs(sc.A.T @ d), initial=0.0) <= tol_inf)
            & (sc.b @ d < -tol_inf)
            & (jnp.max(jnp.abs(d - cone.project_dual(d)), initial=0.0) <= tol_inf)
        )
        e, moved = normalized(st.dx)
        Ae = -(sc.A @ e)
        dual_inf = (
            moved
            & (jnp.max(jnp.abs(sc.P @ e), initial=0.0) <= tol_inf)
            & (sc.q @ e < -tol_inf)
            & (jnp.max(jnp.abs(Ae - cone.project(Ae)), initial=0.0) <= tol_inf)
        )
        return primal_inf, dual_inf

    def polish(x, y, s):
        z = newton_refine(F, (x, y - s), (program,), polish_steps)
        y_p = cone.project_dual(z[1])
        return z[0], y_p, y_p - z[1]

    def advance(st: _State) -> _State:
        """``check_every`` ADMM iterations, then the ρ update."""
        x, s, y, dx, dy, chol, rho = lax.fori_loop(
            0, check_every, admm, (st.x, st.s, st.y, st.dx, st.dy, st.chol, st.rho)
        )
        return _adapt_rho(st._replace(x=x, s=s, y=y, dx=dx, dy=dy, checks=st.checks + 1))

    def body(st: _State) -> _State:
        # Check first, then iterate: a warm start that is already (nearly) optimal is
        # accepted or polished before any ADMM iteration moves it (ADMM's first iterations
        # with the initial ρ can move away from a good point).
        st = check(st)
        go = (st.status == _RUNNING) & (st.checks < max_checks)
        st = lax.cond(go, advance, lambda st: st, st)
        limit = (st.status == _RUNNING) & ~go
        return st._replace(status=jnp.where(limit, Status.MAX_ITERATIONS, st.status))

    def check(st: _State) -> _State:
        x, y, s = st.x, st.y, st.s
        xo, yo, so = unscale(x, y, s)
        worst = kkt_residuals(program, xo, yo, so).worst()
        finite = jnp.isfinite(worst)
        # Newton polish when the residual first drops below polish_at (then 10x lower each
        # time an attempt fails to reach tol).
        try_polish = finite & (worst > tol) & (worst <= st.polish_at)
        xp, yp, sp = lax.cond(try_polish, polish, lambda *a: a, xo, yo, so)
        polished_ok = try_polish & (kkt_residuals(program, xp, yp, sp).worst() <= tol)
        primal_inf, dual_inf = certificates(st)
        status = jnp.where(
            ~finite,
            Status.NUMERICAL_ERROR,
            jnp.where(
                (worst <= tol) | polished_ok,
                Status.SOLVED,
                jnp.where(
                    primal_inf,
                    Status.PRIMAL_INFEASIBLE,
                    jnp.where(dual_inf, Status.DUAL_INFEASIBLE, _RUNNING),
                ),
            ),
        ).astype(jnp.int32)
        answer = jax.tree.map(lambda p, o: jnp.where(polished_ok, p, o), (xp, yp, sp), (xo, yo, so))
        st = st._replace(
            status=status,
            polished=polished_ok,
            answer=answer,
            polish_at=jnp.where(try_polish, st.polish_at * 0.1, st.polish_at),
        )
        return st

    def _adapt_rho(st: _State) -> _State:
        Ax, Px, Aty = sc.A @ st.x, sc.P @ st.x, sc.A.T @ st.y

        def inf(v):
            return jnp.max(jnp.abs(v), initial=0.0)

        tiny = jnp.finfo(dtype).tiny
        prim = inf(Ax + st.s - sc.b) / (
            jnp.maximum(jnp.maximum(inf(Ax), inf(st.s)), inf(sc.b)) + tiny
        )
        dual = inf(Px + sc.q + Aty) / (
            jnp.maximum(jnp.maximum(inf(Px), inf(Aty)), inf(sc.q)) + tiny
        )
        ratio = jnp.sqrt(prim / (dual + tiny))
        new_rho = jnp.clip(st.rho * ratio, _RHO_MIN, _RHO_MAX)
        change = (st.checks % _ADAPT_EVERY == 0) & jnp.isfinite(new_rho)
        change = change & ((new_rho > 5 * st.rho) | (new_rho < 0.2 * st.rho))
        change = change & (st.status == _RUNNING)
        chol, rho = lax.cond(change, lambda: (factor(new_rho), new_rho), lambda: (st.chol, st.rho))
        return st._replace(chol=chol, rho=rho)

    if warm_start is None:
        x0, y0, s0 = jnp.zeros(n, dtype), jnp.zeros(m, dtype), jnp.zeros(m, dtype)
    else:
        xw, yw, sw = (jnp.asarray(v, dtype) for v in warm_start)
        x0, y0, s0 = xw / col, yw * c / row, sw * row
    rho0 = jnp.asarray(_RHO_INIT, dtype)
    zeros = (jnp.zeros(n, dtype), jnp.zeros(m, dtype), jnp.zeros(m, dtype))
    st0 = _State(
        x=x0,
        s=s0,
        y=y0,
        dx=zeros[0],
        dy=zeros[1],
        chol=factor(rho0),
        rho=rho0,
        checks=jnp.int32(0),
        polish_at=jnp.asarray(polish_at, dtype),
        status=jnp.int32(_RUNNING),
        polished=jnp.asarray(False),
        answer=zeros,
    )
    max_checks = max(1, -(-max_iter // check_every))
    st = lax.while_loop(lambda st: st.status == _RUNNING, body, st0)
    status = jnp.where(st.status == _RUNNING, Status.MAX_ITERATIONS, st.status)
    last = unscale(st.x, st.y, st.s)
    x, y, s = jax.tree.map(lambda a, l: jnp.where(status == Status.SOLVED, a, l), st.answer, last)
    return ConicSolution(
        x, y, s, status.astype(jnp.int32), (st.checks * check_every).astype(jnp.int32), st.polished
    )
