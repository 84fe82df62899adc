"""Tests of the dense pure-JAX interior-point QP solver (cvxjax._solvers._qp_ipm).

References are CVXPY + CLARABEL solutions with tight tolerances. Comparisons of x and y with
the reference use ``tol=1e-10``: on random instances some inequality is often nearly
degenerate (``s_i + y_i`` ≈ 1e-4), and there an interior-point iterate at gap ε is off by
≈ ε / (s_i + y_i) in x and y, so the default 1e-8 only guarantees ≈ 1e-5 agreement; the
default tolerance is tested on the KKT residuals it promises instead.

Compilation dominates the run time, so every solve goes through one jitted wrapper with a
*traced* ``tol`` and the instances share a handful of shapes.
"""

from __future__ import annotations

import functools

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cvxjax._solvers._qp_ipm import (
    DUAL_INFEASIBLE,
    PRIMAL_INFEASIBLE,
    SOLVED,
    solve_qp,
)


@functools.partial(jax.jit, static_argnames=("n_zero",))
def _solve(P, q, A, b, n_zero, tol):
    return solve_qp(P, q, A, b, n_zero, tol=tol)


def solve(P, q, A, b, n_zero, tol=None, dtype=jnp.float64):
    args = [jnp.asarray(v, dtype) for v in (P, q, A, b)]
    if tol is None:
        tol = 1e-8 if dtype == jnp.float64 else 1e-5
    return _solve(*args, n_zero, jnp.asarray(tol, dtype))


def clarabel(P, q, A, b, p):
    """Reference (x, y, objective) from CVXPY + CLARABEL at tight tolerances."""
    n = q.shape[0]
    x = cp.Variable(n)
    cons = []
    if p:
        cons.append(A[:p] @ x == b[:p])
    if A.shape[0] > p:
        cons.append(A[p:] @ x <= b[p:])
    prob = cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(P)) + q @ x), cons)
    prob.solve(
        solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12, max_iter=200
    )
    assert prob.status == cp.OPTIMAL
    y = np.concatenate([np.atleast_1d(c.dual_value) for c in cons]) if cons else np.zeros(0)
    return x.value, y, prob.value


def random_qp(rng, n, p, l, *, lp=False):
    """Feasible QP (P ≻ 0) or LP (P = 0, bounded by a box: the last 2n of the l rows)."""
    M = rng.standard_normal((n, n))
    P = np.zeros((n, n)) if lp else M @ M.T / n + 0.1 * np.eye(n)
    q = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    if lp:
        A = np.vstack([rng.standard_normal((p + l - 2 * n, n)), np.eye(n), -np.eye(n)])
    else:
        A = rng.standard_normal((p + l, n))
    b = A @ x0
    b[p:] += rng.uniform(0.1, 1.0, l)
    return P, q, A, b


def kkt_residuals(P, q, A, b, p, sol):
    x, y, s = (np.asarray(v, np.float64) for v in (sol.x, sol.y, sol.s))
    scale = 1.0 + max(np.abs(q).max(initial=0), np.abs(b).max(initial=0))
    return dict(
        dual=np.abs(P @ x + q + A.T @ y).max(initial=0) / scale,
        primal=np.abs(A @ x + s - b).max(initial=0) / scale,
        comp=np.abs(s * y).max(initial=0) / scale,
        s_eq=np.abs(s[:p]).max(initial=0),
        s_neg=-min(s[p:].min(initial=0), 0.0),
        y_neg=-min(y[p:].min(initial=0), 0.0),
    )


def assert_close(a, ref, tol):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    err = np.abs(a - ref).max(initial=0)
    assert err <= tol * max(1.0, np.abs(ref).max(initial=0)), err


# Most tests share one shape (CORE: n = 30, m = 70 rows of which 8 equalities) so that they share
# compiled programs; an LP of that shape is bounded by a box (60 of its inequality rows).
N, M, NZ = 30, 70, 8


def core_qp(rng, lp=False):
    return random_qp(rng, N, NZ, M - NZ, lp=lp)


# ------------------------------------------------------------------ accuracy vs CLARABEL

CASES = {
    "qp-n5-eq": dict(n=5, p=2, l=8),
    "qp-n30-eq": dict(n=N, p=NZ, l=M - NZ),
    "lp-n30-eq-box": dict(n=N, p=NZ, l=M - NZ, lp=True),
    "qp-n100-noeq": dict(n=100, p=0, l=150),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_clarabel(case):
    cfg = dict(CASES[case])
    n, p, l = cfg.pop("n"), cfg.pop("p"), cfg.pop("l")
    rng = np.random.default_rng(sum(map(ord, case)))
    P, q, A, b = random_qp(rng, n, p, l, **cfg)
    x_ref, y_ref, f_ref = clarabel(P, q, A, b, p)
    sol = solve(P, q, A, b, p, tol=1e-10)
    assert int(sol.status) == SOLVED
    x = np.asarray(sol.x)
    assert_close(x, x_ref, 1e-6)
    assert_close(sol.y, y_ref, 1e-6)
    assert_close(0.5 * x @ P @ x + q @ x, f_ref, 1e-6)
    res = kkt_residuals(P, q, A, b, p, sol)
    assert max(res.values()) <= 1e-8, res


def test_default_tolerance_kkt_residuals():
    rng = np.random.default_rng(1)
    P, q, A, b = core_qp(rng)
    x_ref, _, f_ref = clarabel(P, q, A, b, NZ)
    sol = solve(P, q, A, b, NZ)
    assert int(sol.status) == SOLVED
    assert 0 < int(sol.iterations) < 30
    res = kkt_residuals(P, q, A, b, NZ, sol)
    assert max(res.values()) <= 1e-7, res
    x = np.asarray(sol.x)
    assert_close(x, x_ref, 1e-4)
    assert_close(0.5 * x @ P @ x + q @ x, f_ref, 1e-7)
    assert sol.x.dtype == jnp.float64


@pytest.mark.parametrize("lp", [False, True], ids=["qp", "lp"])
def test_float32(lp):
    rng = np.random.default_rng(2 + lp)
    P, q, A, b = core_qp(rng, lp=lp)
    x_ref, y_ref, f_ref = clarabel(P, q, A, b, NZ)
    sol = solve(P, q, A, b, NZ, dtype=jnp.float32)
    assert sol.x.dtype == jnp.float32 and sol.y.dtype == jnp.float32
    assert int(sol.status) == SOLVED
    x = np.asarray(sol.x, np.float64)
    assert_close(0.5 * x @ P @ x + q @ x, f_ref, 1e-4)
    assert_close(x, x_ref, 1e-3)
    assert_close(sol.y, y_ref, 1e-3)


# ------------------------------------------------------------------ infeasible / unbounded


def _primal_infeasible(rng):
    # Two inequalities aᵀx ≤ −1 and −aᵀx ≤ −1 contradict each other.
    P, q, A, b = core_qp(rng)
    a = rng.standard_normal(N)
    A[-2:], b[-2:] = np.stack([a, -a]), -1.0
    return P, q, A, b


def _equality_infeasible(rng):
    # Redundant but inconsistent equalities (the same row with two right-hand sides).
    P, q, A, b = core_qp(rng)
    A[1], b[1] = A[0], b[0] + 1.0
    return P, q, A, b


def _unbounded(rng):
    # LP along a recession direction d: A_E d = 0, A_I d < 0, qᵀd < 0.
    d = rng.standard_normal(N)
    A = rng.standard_normal((M, N))
    A[:NZ] -= np.outer(A[:NZ] @ d, d) / (d @ d)
    A[NZ:] -= np.outer(np.maximum(A[NZ:] @ d, 0.0) + 0.1, d) / (d @ d)
    b = A @ rng.standard_normal(N)
    b[NZ:] += 1.0
    return np.zeros((N, N)), -d, A, b


def _unbounded_qp(rng):
    # Rank-deficient P whose null space is the recession direction of the constraints.
    _, q, A, b = _unbounded(rng)
    Q = np.linalg.svd(q[None, :])[2][1:]  # orthonormal basis of q⊥ = d⊥
    return Q.T @ np.diag(rng.uniform(0.5, 2.0, N - 1)) @ Q, q, A, b


def _finite(sol):
    return all(np.isfinite(np.asarray(v)).all() for v in (sol.x, sol.y, sol.s))


def _cert_tol(dtype):
    # Certificates are normalized (bᵀy = −1, qᵀx = −1); the solver accepts them at
    # max(tol, √eps) in equilibrated units.
    return 1e-6 if dtype == jnp.float64 else 2e-3


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("make", [_primal_infeasible, _equality_infeasible])
def test_primal_infeasible(make, dtype):
    P, q, A, b = make(np.random.default_rng(6))
    sol = solve(P, q, A, b, NZ, dtype=dtype)
    assert int(sol.status) == PRIMAL_INFEASIBLE
    assert _finite(sol)
    y = np.asarray(sol.y, np.float64)  # Farkas certificate: Aᵀy = 0, y_I ≥ 0, bᵀy = −1
    assert b @ y == pytest.approx(-1.0, rel=1e-3)
    assert np.abs(A.T @ y).max() <= _cert_tol(dtype)
    assert y[NZ:].min() >= 0


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("make", [_unbounded, _unbounded_qp])
def test_dual_infeasible(make, dtype):
    P, q, A, b = make(np.random.default_rng(7))
    sol = solve(P, q, A, b, NZ, dtype=dtype)
    assert int(sol.status) == DUAL_INFEASIBLE
    assert _finite(sol)
    x = np.asarray(sol.x, np.float64)  # direction: Px = 0, A_E x = 0, A_I x ≤ 0, qᵀx = −1
    eps = _cert_tol(dtype)
    assert q @ x == pytest.approx(-1.0, rel=1e-3)
    assert np.abs(P @ x).max() <= eps
    assert np.abs(A[:NZ] @ x).max() <= eps
    assert (A[NZ:] @ x).max() <= eps


# ------------------------------------------------------------------ jit / vmap

_solve_batch = jax.jit(jax.vmap(lambda P, q, A, b: solve_qp(P, q, A, b, NZ)))


def test_vmap_over_q_and_b_matches_single_solves():
    rng = np.random.default_rng(4)
    P, q, A, b = core_qp(rng)
    B = 6  # the batch size of the next test: the two share one compiled program
    qs = q + 0.5 * rng.standard_normal((B, N))
    bs = b + np.concatenate([np.zeros((B, NZ)), rng.uniform(0, 0.5, (B, M - NZ))], axis=1)
    batched = _solve_batch(np.broadcast_to(P, (B, N, N)), qs, np.broadcast_to(A, (B, M, N)), bs)
    assert batched.x.shape == (B, N) and batched.status.shape == (B,)
    for i in range(B):
        single = solve(P, qs[i], A, bs[i], NZ)
        assert int(batched.status[i]) == int(single.status) == SOLVED
        np.testing.assert_allclose(batched.x[i], single.x, atol=1e-8)
        np.testing.assert_allclose(batched.y[i], single.y, atol=1e-8)
        assert int(batched.iterations[i]) == int(single.iterations)


def test_vmap_over_all_data_with_mixed_statuses():
    """One batch with different P, q, A, b: two solvable problems, infeasible and unbounded
    ones. Each lane gets its own status, and lanes that finish early are not disturbed by the
    others' extra iterations."""
    rng = np.random.default_rng(8)
    makers = [core_qp, _primal_infeasible, _unbounded, core_qp, _equality_infeasible, _unbounded_qp]
    data = [m(rng) for m in makers]
    Ps, qs, As, bs = (np.stack(d) for d in zip(*data))
    batched = _solve_batch(Ps, qs, As, bs)
    assert [int(s) for s in batched.status] == [0, 2, 3, 0, 2, 3]
    assert _finite(batched)
    for i in (0, 3):
        single = solve(*data[i], NZ)
        np.testing.assert_allclose(batched.x[i], single.x, atol=1e-10)
        assert int(batched.iterations[i]) == int(single.iterations)
        x_ref, _, _ = clarabel(*data[i], NZ)
        assert_close(batched.x[i], x_ref, 1e-5)


# ------------------------------------------------------------------ structural edge cases


def _check_against_clarabel(P, q, A, b, p, *, unique_x=True):
    x_ref, y_ref, f_ref = clarabel(P, q, A, b, p)
    sol = solve(P, q, A, b, p, tol=1e-10)
    assert int(sol.status) == SOLVED
    assert _finite(sol)
    x = np.asarray(sol.x)
    assert_close(0.5 * x @ P @ x + q @ x, f_ref, 1e-7)
    res = kkt_residuals(P, q, A, b, p, sol)
    assert max(res.values()) <= 1e-8, res
    if unique_x:
        assert_close(x, x_ref, 1e-6)
    return sol


def test_unconstrained():
    rng = np.random.default_rng(9)
    P, q, _, _ = random_qp(rng, 10, 0, 0)
    sol = _check_against_clarabel(P, q, np.zeros((0, 10)), np.zeros(0), 0)
    np.testing.assert_allclose(sol.x, np.linalg.solve(P, -q), atol=1e-8)


def test_equalities_only_with_redundant_rows():
    rng = np.random.default_rng(10)
    P, q, A, b = random_qp(rng, 10, 4, 0)
    A = np.vstack([A, A[0] + 2 * A[1]])
    b = np.concatenate([b, [b[0] + 2 * b[1]]])
    _check_against_clarabel(P, q, A, b, 5)


def test_lp_with_redundant_equalities_and_nonunique_solution():
    # P = 0, an equality duplicated, and x₀ appears nowhere with zero cost: x is not unique.
    rng = np.random.default_rng(11)
    P, q, A, _ = core_qp(rng, lp=True)
    A[1] = 2 * A[0]
    A[:, 0] = 0.0
    q[0] = 0.0
    b = A @ rng.standard_normal(N)
    b[NZ:] += rng.uniform(0.1, 1.0, M - NZ)
    _check_against_clarabel(P, q, A, b, NZ, unique_x=False)


def test_rank_deficient_P():
    rng = np.random.default_rng(12)
    M_ = rng.standard_normal((N, 3))
    _, q, A, b = core_qp(rng, lp=True)  # box-bounded
    _check_against_clarabel(M_ @ M_.T, q, A, b, NZ)


def test_bad_arguments():
    with pytest.raises(ValueError):
        solve_qp(np.eye(3), np.zeros(3), np.zeros((2, 3)), np.zeros(2), 3)
    with pytest.raises(ValueError):
        solve_qp(np.eye(3), np.zeros(3), np.zeros((2, 4)), np.zeros(2), 0)
