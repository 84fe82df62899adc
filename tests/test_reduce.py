"""The presolve that eliminates variables defined by equality rows (cvxjax._reduce), and the
automatic solver choice it enables.

Checked independently of the reduction itself: the expanded solution against Clarabel's
solution of the *original* canonical program, the reduced program's KKT conditions, and the
layer's Jacobians on the reduced (dense) path against the unreduced sparse path and against
central finite differences of CVXPY's own solve.
"""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd_jacobian

import cvxjax
from cvxjax import CvxpyLayer
from cvxjax._canonicalize import canonicalize
from cvxjax._reduce import (
    blocks,
    build_elimination,
    elimination_for,
    expand,
    reduce_program,
    restrict,
)
from cvxjax.solvers import Auto, Clarabel


def least_squares_qp(n=6, k=8, seed=0):
    """min ‖Lx − b‖² + qᵀx s.t. Gx ≤ h, 1ᵀx = 1: CVXPY adds one variable per row of L."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n)
    L = rng.normal(size=(k, n))
    G = rng.normal(size=(n, n))
    b, q_param, h_param = cp.Parameter(k), cp.Parameter(n), cp.Parameter(n)
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(L @ x - b) + q_param @ x), [G @ x <= h_param, cp.sum(x) == 1]
    )
    # h = G x₀ + slack with x₀ feasible for 1ᵀx = 1 and slack 0 on half the rows; q pushes
    # against those rows (q = −5 Gᵀ e), so several inequalities are active with positive duals.
    x0 = np.full(n, 1.0 / n)
    tight = (np.arange(n) % 2 == 0).astype(float)
    h = G @ x0 + 0.5 * (1 - tight)
    q = rng.normal(size=n) - 5 * G.T @ tight
    return problem, [b, q_param, h_param], x, [rng.normal(size=k), q, h]


def host_solution(canonical, data):
    solver = Clarabel()
    workspace = solver.init(canonical.structure)
    arrays = (np.asarray(a, np.float64) for a in data)
    return solver.solve_numpy(workspace, *arrays, dict(Clarabel.default_settings), None)


def test_elimination_finds_the_auxiliary_variables():
    problem, params, x, values = least_squares_qp()
    canonical = canonicalize(problem, params, [x])
    elim = elimination_for(canonical)
    s = canonical.structure
    assert s.n == 6 + 8  # x and one auxiliary per row of L
    assert elim.n == 6 and elim.m == s.m - 8
    assert elim.cones.zero == s.cones.zero - 8 and elim.cones.nonneg == s.cones.nonneg
    assert np.all(np.abs(elim.pivots) > 0)


def test_parametric_pivots_are_not_used():
    """t appears with a parameter coefficient: dividing by it could divide by zero."""
    t, x = cp.Variable(), cp.Variable(2)
    a = cp.Parameter()
    problem = cp.Problem(cp.Minimize(cp.square(t) + cp.sum_squares(x)), [a * t + cp.sum(x) == 1])
    canonical = canonicalize(problem, [a], [t])
    mask, values = canonical.constant_A_entries()
    assert not mask.all()
    elim = build_elimination(canonical.structure, mask, values)
    pivot_cols = set(elim.elim_cols.tolist())
    rows, cols = canonical.structure.A_rows, canonical.structure.A_cols
    for r, c in zip(elim.elim_rows, elim.elim_cols):
        k = np.flatnonzero((rows == r) & (cols == c))
        assert mask[k].all()
    # The parametric row's only constant-coefficient columns are x's; t must stay.
    assert len(pivot_cols) <= canonical.structure.n - 1


def test_expand_reproduces_the_solution_of_the_original_program():
    problem, params, x, values = least_squares_qp()
    canonical = canonicalize(problem, params, [x])
    elim = elimination_for(canonical)
    data = canonical.data(*map(jnp.asarray, values))
    sol = host_solution(canonical, data)
    x_full, y_full, s_full = sol.x, sol.y, sol.s

    blk = blocks(elim, data)
    reduced = reduce_program(blk)
    x_k, v_k = restrict(elim, jnp.asarray(x_full), jnp.asarray(y_full - s_full))
    # Restricted solution satisfies the reduced program's KKT conditions.
    y_k = jnp.asarray(y_full)[elim.kept_rows]
    s_k = jnp.asarray(s_full)[elim.kept_rows]
    assert np.abs(reduced.P @ x_k + reduced.q + reduced.A.T @ y_k).max() < 1e-7
    assert np.abs(reduced.A @ x_k + s_k - reduced.b).max() < 1e-7
    # Expanding it gives back the original (x, y).
    x_e, y_e = expand(elim, blk, x_k, y_k)
    np.testing.assert_allclose(x_e, x_full, atol=1e-7)
    np.testing.assert_allclose(y_e, y_full, atol=1e-7)


@pytest.mark.parametrize("solver", ["CLARABEL", "JAX"])
def test_reduced_path_derivatives_match_sparse_path_and_finite_differences(solver):
    problem, params, x, values = least_squares_qp()
    vals = [jnp.asarray(v) for v in values]
    dense_layer = CvxpyLayer(problem, params, [x], solver=solver)
    assert dense_layer._elimination is not None and dense_layer._elimination.n == 6
    jac_dense = jax.jit(jax.jacrev(lambda *v: dense_layer(*v)[0], argnums=(0, 1, 2)))(*vals)

    # The unreduced path: force the large-problem (sparse, BiCGSTAB) route with Clarabel.
    sparse_layer = CvxpyLayer(problem, params, [x], solver="CLARABEL", dense_limit=0)
    assert sparse_layer._elimination is None
    jac_sparse = jax.jit(jax.jacfwd(lambda *v: sparse_layer(*v)[0], argnums=(0, 1, 2)))(*vals)

    def cvxpy_solution(wrt):
        def f(theta):
            for p, v in zip(params, values):
                p.value = v
            params[wrt].value = theta
            problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
            return x.value

        return f

    for k in range(3):
        fd = central_fd_jacobian(cvxpy_solution(k), values[k], eps=1e-4)
        np.testing.assert_allclose(jac_dense[k], jac_sparse[k], atol=1e-5)
        np.testing.assert_allclose(jac_dense[k], fd, atol=1e-4)


def test_automatic_choice():
    problem, params, x, values = least_squares_qp()
    layer = CvxpyLayer(problem, params, [x])
    assert layer.solver_for(jnp.float64) == "JAX"
    assert layer.solver_for(jnp.float32) == "CLARABEL"
    assert (
        CvxpyLayer(problem, params, [x], solver_args={"tol_feas": 1e-9}).solver_for(jnp.float64)
        == "CLARABEL"
    )
    # Above the size limit: Clarabel.
    big_x = cp.Variable(Auto().max_jax_variables + 1)
    c = cp.Parameter(big_x.size)
    big = cp.Problem(cp.Minimize(c @ big_x + cp.sum_squares(big_x)), [big_x >= 0])
    assert CvxpyLayer(big, [c], [big_x]).solver_for(jnp.float64) == "CLARABEL"
    # Not a QP: Clarabel.
    y = cp.Variable(3)
    d = cp.Parameter(3)
    socp = cp.Problem(cp.Minimize(cp.norm(y - d)), [cp.sum(y) == 1])
    assert CvxpyLayer(socp, [d], [y]).solver_for(jnp.float64) == "CLARABEL"


def test_automatic_choice_solves_float64_and_float32_alike():
    problem, params, x, values = least_squares_qp()
    layer = CvxpyLayer(problem, params, [x])
    (x64,) = layer(*[jnp.asarray(v) for v in values])
    (x32,) = layer(*[jnp.asarray(v, jnp.float32) for v in values])
    for p, v in zip(params, values):
        p.value = v
    problem.solve(solver=cp.CLARABEL)
    assert x32.dtype == jnp.float32
    np.testing.assert_allclose(x64, x.value, atol=1e-6)
    np.testing.assert_allclose(x32, x.value, atol=1e-4)


def test_jax_solver_in_float32_passes_its_default_check():
    """solver="JAX" in float32 stops at its own tolerance (1e-5); the layer's default residual
    check is 1e-4 there (with 1e-6 a third of such a batch came back as failures)."""
    x = cp.Variable(10)
    q = cp.Parameter(10)
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(x) - q @ x), [cp.sum(x) == 1, x >= 0, x <= 0.25]
    )
    layer = CvxpyLayer(problem, [q], [x], solver="JAX", on_failure="nan")
    Q = np.random.default_rng(0).normal(size=(64, 10))
    (xs,), info = layer.solve(jnp.asarray(Q, jnp.float32))
    assert xs.dtype == jnp.float32
    assert int(np.count_nonzero(np.asarray(info.status))) == 0
    # Against CVXPY on a few rows: float32 accuracy.
    for k in range(3):
        q.value = Q[k]
        problem.solve(solver=cp.CLARABEL)
        np.testing.assert_allclose(np.asarray(xs[k]), x.value, atol=2e-4)


def test_sparse_path_is_finite_and_matches_dense_path_at_a_degenerate_lp():
    """An LP with a whole optimal edge: J is singular. The sparse (Krylov) path must return the
    same finite generalized derivative as the dense path (minimum-norm least squares), not NaN."""
    c = cp.Parameter(2)
    y = cp.Variable(2)
    lp = cp.Problem(cp.Minimize(c @ y), [y >= 0, cp.sum(y) <= 1, y[0] <= 1])
    c_val = jnp.array([-1.0, -1.0])
    dense = CvxpyLayer(lp, [c], [y], solver="CLARABEL")
    # The primal solution is not unique: no derivative exists, and both paths say so.
    with pytest.warns(cvxjax.DegenerateDerivativeWarning):
        jac_dense = jax.jacfwd(lambda c: dense(c)[0])(c_val)
        jax.effects_barrier()
    sparse = CvxpyLayer(lp, [c], [y], solver="CLARABEL", dense_limit=0)
    assert sparse._elimination is None
    with pytest.warns(cvxjax.DegenerateDerivativeWarning):
        jac_sparse = jax.jacfwd(lambda c: sparse(c)[0])(c_val)
        jax.effects_barrier()
    assert np.all(np.isfinite(np.asarray(jac_sparse)))
    np.testing.assert_allclose(jac_sparse, jac_dense, atol=1e-6)
