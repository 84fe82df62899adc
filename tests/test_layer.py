"""CvxpyLayer end to end: values against CVXPY's own solve, derivatives against float64
central finite differences of CVXPY's own solve (or closed forms), per cone family and solver,
under jit / vmap / batching, plus the error contract."""

import threading

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd_jacobian

import cvxjax
from cvxjax import CvxpyLayer

# Reference: CVXPY's own solve with Clarabel at tight (but reliably reachable) tolerances.
TIGHT = dict(
    solver=cp.CLARABEL, tol_gap_abs=1e-9, tol_gap_rel=1e-9, tol_feas=1e-9, tol_ktratio=1e-7
)
# With the reference accurate to ~1e-9, a step of 1e-3 keeps the finite-difference error
# (truncation O(eps²) plus solver noise 1e-9/eps) near 1e-6; the active sets of the test
# problems do not change within such a step.
FD_EPS = 1e-3


def reference(problem, params, values, outputs):
    """Solve with CVXPY itself; returns the flattened concatenation of the outputs' values."""
    for p, v in zip(params, values):
        p.value = np.asarray(v, dtype=np.float64)
    if any(isinstance(c, cp.constraints.PSD) for c in problem.constraints):
        # Clarabel's PSD duals are only accurate to ~1e-5 even at tight tolerances; SCS, run
        # long, is accurate to ~1e-11 on these small SDPs.
        problem.solve(solver=cp.SCS, eps_abs=1e-11, eps_rel=1e-11, max_iters=500_000)
    else:
        problem.solve(**TIGHT)
    if problem.status != cp.OPTIMAL:
        # Clarabel sometimes stalls just short of these tolerances (SOCP/SDP); SCS, run long,
        # gets there.
        problem.solve(solver=cp.SCS, eps_abs=1e-11, eps_rel=1e-11, max_iters=500_000)
    assert problem.status == cp.OPTIMAL, problem.status
    return [np.asarray(o.value, dtype=np.float64) for o in outputs]


def fd_jacobian(problem, params, values, output_index, outputs, wrt):
    """d outputs[output_index] / d params[wrt] by central differences of CVXPY's solve."""

    symmetric = params[wrt].is_symmetric() and params[wrt].ndim == 2

    def f(theta):
        vals = list(values)
        # The layer symmetrizes a symmetric parameter's value, (Θ + Θᵀ)/2, so perturbing one
        # entry Θᵢⱼ moves both Xᵢⱼ and Xⱼᵢ by half the step; CVXPY needs a symmetric value.
        vals[wrt] = (theta + theta.T) / 2 if symmetric else theta
        return reference(problem, params, vals, outputs)[output_index]

    return central_fd_jacobian(f, np.asarray(values[wrt], dtype=np.float64), eps=FD_EPS)


# ------------------------------------------------------------------------------------------
# Problems: each returns (problem, parameters, outputs, parameter values)
# ------------------------------------------------------------------------------------------


def qp_problem(seed=0, n=4):
    """min ½‖Lx‖² + qᵀx s.t. Gx ≤ h, Ax = b; parameters in q, G (a matrix), h, b and L."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n)
    L, q, G, h, b = (
        cp.Parameter((n, n)),
        cp.Parameter(n),
        cp.Parameter((3, n)),
        cp.Parameter(3),
        cp.Parameter(1),
    )
    ineq = G @ x <= h
    eq = cp.sum(x) == b
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(L @ x) + q @ x), [ineq, eq])
    Gv = rng.normal(size=(3, n))
    x0 = rng.normal(size=n)
    # Make the first inequality active-ish and the others slack via the q choice below.
    values = [
        np.eye(n) + 0.2 * rng.normal(size=(n, n)),
        rng.normal(size=n),
        Gv,
        Gv @ x0 + np.array([0.0, 0.5, 1.0]),
        np.array([x0.sum()]),
    ]
    return problem, [L, q, G, h, b], [x, ineq.dual_variables[0], eq.dual_variables[0]], values


def socp_problem(seed=1, n=3):
    """min ‖Ax − b‖₂ + 0.1‖x‖² + cᵀx (second-order cone; smooth at a generic solution)."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n)
    A, b, c = cp.Parameter((5, n)), cp.Parameter(5), cp.Parameter(n)
    problem = cp.Problem(cp.Minimize(cp.norm(A @ x - b, 2) + 0.1 * cp.sum_squares(x) + c @ x))
    return (
        problem,
        [A, b, c],
        [x],
        [rng.normal(size=(5, n)), rng.normal(size=5), 0.1 * rng.normal(size=n)],
    )


def psd_problem(seed=2, k=3):
    """Nearest unit-diagonal PSD matrix: min ‖X − Y‖²_F s.t. X ⪰ 0, diag(X) = 1 (PSD cone)."""
    rng = np.random.default_rng(seed)
    X = cp.Variable((k, k), symmetric=True)
    Y = cp.Parameter((k, k), symmetric=True)
    psd = X >> 0
    problem = cp.Problem(cp.Minimize(cp.sum_squares(X - Y)), [psd, cp.diag(X) == 1])
    M = rng.normal(size=(k, k))
    Yv = (M + M.T) / 2 + np.eye(k)
    return problem, [Y], [X, psd.dual_variables[0]], [Yv]


def exp_problem(seed=3, n=4):
    """max Σ entr(x) + cᵀx s.t. Σx = 1 (exponential cone). Solution: softmax(c)."""
    rng = np.random.default_rng(seed)
    x = cp.Variable(n)
    c = cp.Parameter(n)
    problem = cp.Problem(cp.Maximize(cp.sum(cp.entr(x)) + c @ x), [cp.sum(x) == 1])
    return problem, [c], [x], [rng.normal(size=n)]


def pow_problem(alpha=0.3):
    """max z s.t. (x, y, z) ∈ K_pow(α), x ≤ a, y ≤ b. Solution z = a^α b^(1−α)."""
    x, y, z = cp.Variable(), cp.Variable(), cp.Variable()
    a, b = cp.Parameter(), cp.Parameter()
    problem = cp.Problem(cp.Maximize(z), [cp.PowCone3D(x, y, z, alpha), x <= a, y <= b])
    return problem, [a, b], [z, x], [np.array(2.0), np.array(0.5)]


def socp_unrolled_newton(A, b, c):
    """The SOCP's objective is smooth at its solution (Ax ≠ b), so 40 plain Newton steps on its
    gradient, differentiated by ordinary autodiff through the unrolled loop, are an independent
    reference for both the value and the Jacobian."""
    f = lambda x: jnp.linalg.norm(A @ x - b) + 0.1 * jnp.sum(x**2) + c @ x
    x = jnp.linalg.lstsq(A, b)[0] * 0.5
    for _ in range(40):
        x = x - jnp.linalg.solve(jax.hessian(f)(x), jax.grad(f)(x))
    return x


def softmax_closed_form(c):
    return jax.nn.softmax(c)


def pow_closed_form(a, b, alpha=0.3):
    return a**alpha * b ** (1 - alpha)


# name: (problem factory, solvers, closed form of the first output or None for CVXPY + FD).
# Second-order, exponential and power-cone references avoid finite differences of CVXPY's
# solve: interior-point solvers reach only ~1e-7 on these cones, too little for that.
PROBLEMS = {
    "qp": (qp_problem, ["CLARABEL", "SCS", "OSQP"], None),
    "socp": (socp_problem, ["CLARABEL", "SCS"], socp_unrolled_newton),
    "psd": (psd_problem, ["CLARABEL", "SCS"], None),
    "exp": (exp_problem, ["CLARABEL", "SCS"], softmax_closed_form),
    "pow": (pow_problem, ["CLARABEL", "SCS"], pow_closed_form),
}
CASES = [(name, solver) for name, (_, solvers, _) in PROBLEMS.items() for solver in solvers]


@pytest.mark.parametrize("name,solver", CASES)
def test_values_and_derivatives_match_cvxpy(name, solver):
    make, _, closed_form = PROBLEMS[name]
    problem, params, outputs, values = make()
    layer = CvxpyLayer(problem, parameters=params, variables=outputs, solver=solver)
    got = jax.jit(layer)(*values)
    if closed_form is None:
        expected = reference(problem, params, values, outputs)
    else:
        expected = [closed_form(*values)]
    for g, e in zip(got, expected):
        scale = max(1.0, np.abs(e).max())
        np.testing.assert_allclose(g, e, atol=1e-5 * scale)

    # Derivatives of the first output w.r.t. every parameter, forward and reverse mode.
    f = lambda *v: layer(*v)[0]
    argnums = tuple(range(len(values)))
    jac_fwd = jax.jit(jax.jacfwd(f, argnums=argnums))(*values)
    jac_rev = jax.jit(jax.jacrev(f, argnums=argnums))(*values)
    for i in argnums:
        if closed_form is None:
            ref = fd_jacobian(problem, params, values, 0, outputs, i)
        else:
            ref = jax.jacfwd(closed_form, argnums=i)(*values)
        scale = max(1.0, np.abs(ref).max())
        np.testing.assert_allclose(jac_fwd[i], ref, atol=1e-4 * scale)
        np.testing.assert_allclose(jac_rev[i], ref, atol=1e-4 * scale)


def test_closed_forms_exp_and_pow():
    problem, params, outputs, values = exp_problem()
    layer = CvxpyLayer(problem, params, outputs)
    c = jnp.asarray(values[0])
    np.testing.assert_allclose(layer(c)[0], jax.nn.softmax(c), atol=1e-7)
    np.testing.assert_allclose(
        jax.jacrev(lambda c: layer(c)[0])(c), jax.jacfwd(jax.nn.softmax)(c), atol=1e-6
    )
    problem, params, outputs, values = pow_problem(alpha=0.3)
    layer = CvxpyLayer(problem, params, outputs)
    a, b = 2.0, 0.5
    z = lambda a, b: layer(a, b)[0]
    np.testing.assert_allclose(z(a, b), a**0.3 * b**0.7, rtol=1e-7)
    ga, gb = jax.grad(z, argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, 0.3 * a**-0.7 * b**0.7, rtol=1e-6)
    np.testing.assert_allclose(gb, 0.7 * a**0.3 * b**-0.3, rtol=1e-6)


def test_duals_and_jvp_of_qp_against_fd():
    problem, params, outputs, values = qp_problem()
    layer = CvxpyLayer(problem, params, outputs)
    tangents = [0.1 * np.ones_like(v) for v in values]
    primal_out, tangent_out = jax.jvp(
        lambda *v: layer(*v), tuple(map(jnp.asarray, values)), tuple(map(jnp.asarray, tangents))
    )
    eps = FD_EPS
    plus = reference(problem, params, [v + eps * t for v, t in zip(values, tangents)], outputs)
    minus = reference(problem, params, [v - eps * t for v, t in zip(values, tangents)], outputs)
    for k in range(3):  # x, inequality duals, equality duals
        np.testing.assert_allclose(tangent_out[k], (plus[k] - minus[k]) / (2 * eps), atol=1e-5)


def test_vmap_and_leading_batch_match_single_solves():
    problem, params, outputs, values = qp_problem()
    layer = CvxpyLayer(problem, params, outputs)
    rng = np.random.default_rng(5)
    qs = np.stack([values[1] + 0.3 * rng.normal(size=values[1].shape) for _ in range(4)])
    singles = [layer(values[0], q, *values[2:])[0] for q in qs]
    batched = layer(values[0], qs, *values[2:])[0]  # leading batch on q, others broadcast
    vmapped = jax.jit(jax.vmap(lambda q: layer(values[0], q, *values[2:])[0]))(qs)
    np.testing.assert_allclose(batched, np.stack(singles), atol=1e-8)
    np.testing.assert_allclose(vmapped, np.stack(singles), atol=1e-8)
    # Gradient through a batch equals the sum of per-problem gradients.
    g_batch = jax.grad(lambda q: layer(values[0], q, *values[2:])[0].sum())(qs)
    g_single = np.stack(
        [jax.grad(lambda q: layer(values[0], q, *values[2:])[0].sum())(q) for q in qs]
    )
    np.testing.assert_allclose(g_batch, g_single, atol=1e-8)
    # vmap over an already-batched call (two batch levels reach one host callback).
    nested = jax.vmap(lambda q2: layer(values[0], q2, *values[2:])[0])(np.stack([qs, qs[::-1]]))
    np.testing.assert_allclose(nested[1], np.stack(singles)[::-1], atol=1e-8)


def test_hessian_of_smooth_problem_matches_closed_form():
    """Equality-constrained QP with the parameter inside P: x(d) = argmin ½Σ dᵢxᵢ² − 1ᵀx s.t. Σx = 1."""
    n = 3
    x = cp.Variable(n)
    d = cp.Parameter(n, nonneg=True)
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum(cp.multiply(d, cp.square(x))) - cp.sum(x)), [cp.sum(x) == 1]
    )
    layer = CvxpyLayer(problem, [d], [x])

    def closed(d):
        # Stationarity dᵢxᵢ − 1 + μ = 0 and Σx = 1 ⇒ xᵢ = (1 − μ)/dᵢ with 1 − μ = 1/Σ(1/dⱼ).
        return (1.0 / d) / jnp.sum(1.0 / d)

    dv = jnp.array([1.0, 2.0, 4.0])
    loss = lambda f: lambda d: jnp.sum(f(d) ** 3)
    np.testing.assert_allclose(layer(dv)[0], closed(dv), atol=1e-8)
    np.testing.assert_allclose(
        jax.hessian(loss(lambda d: layer(d)[0]))(dv), jax.hessian(loss(closed))(dv), atol=1e-6
    )


def test_float32_in_float32_out():
    problem, params, outputs, values = qp_problem()
    layer = CvxpyLayer(problem, params, outputs)
    v32 = [jnp.asarray(v, jnp.float32) for v in values]
    out32 = layer(*v32)
    out64 = layer(*values)
    for a, b in zip(out32, out64):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(a, b, atol=1e-4)
    g = jax.grad(lambda q: layer(v32[0], q, *v32[2:])[0].sum())(v32[1])
    assert g.dtype == jnp.float32
    g64 = jax.grad(lambda q: layer(values[0], q, *values[2:])[0].sum())(values[1])
    np.testing.assert_allclose(g, g64, atol=1e-3)


def test_threads_give_the_same_answers():
    problem, params, outputs, values = qp_problem()
    layer = CvxpyLayer(problem, params, outputs)
    rng = np.random.default_rng(7)
    qs = [values[1] + rng.normal(size=values[1].shape) for _ in range(8)]
    expected = [np.asarray(layer(values[0], q, *values[2:])[0]) for q in qs]
    results = [None] * len(qs)

    def work(i):
        results[i] = np.asarray(layer(values[0], qs[i], *values[2:])[0])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(qs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r, e in zip(results, expected):
        np.testing.assert_allclose(r, e, atol=1e-9)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


def test_construction_errors():
    problem, params, outputs, _ = qp_problem()
    with pytest.raises(ValueError, match="not DPP"):
        a, b = cp.Parameter(), cp.Parameter()
        y = cp.Variable()
        CvxpyLayer(cp.Problem(cp.Minimize(a * b * y), [y >= 0]), [a, b], [y])
    with pytest.raises(ValueError, match="parameter"):
        CvxpyLayer(problem, params[:-1], outputs)
    with pytest.raises(ValueError):
        CvxpyLayer(problem, params, [cp.Variable(2)])
    socp, sparams, soutputs, _ = socp_problem()
    with pytest.raises(ValueError, match="OSQP cannot handle the second-order cone.*CLARABEL, SCS"):
        CvxpyLayer(socp, sparams, soutputs, solver="OSQP")
    with pytest.raises(ValueError, match="Unknown solver"):
        CvxpyLayer(problem, params, outputs, solver="GUROBI")


def test_call_errors():
    problem, params, outputs, values = qp_problem()
    layer = CvxpyLayer(problem, params, outputs)
    with pytest.raises(ValueError, match="Expected 5 parameter values"):
        layer(*values[:4])
    bad = list(values)
    bad[2] = np.zeros((2, 4))
    with pytest.raises(ValueError, match=r"expects shape \(3, 4\).*got \(2, 4\)"):
        layer(*bad)
    bad = list(values)
    bad[1] = np.zeros((3, 4))
    bad[3] = np.zeros((2, 3))
    with pytest.raises(ValueError, match="Inconsistent batch sizes"):
        layer(*bad)
    # Asymmetric values of symmetric parameters are used through their symmetric part, eagerly
    # and under jit alike: tests/test_compat.py::test_symmetric_parameter_eager_and_jit_agree.


def _infeasible_layer(on_failure="raise"):
    x = cp.Variable(2)
    h = cp.Parameter(2)
    # x ≥ h and x ≤ h − 1 is infeasible for every h.
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x)), [x >= h, x <= h - 1])
    return CvxpyLayer(problem, [h], [x], on_failure=on_failure)


@pytest.mark.parametrize("solver", ["CLARABEL", "SCS", "OSQP"])
def test_infeasible_and_unbounded_raise(solver):
    x = cp.Variable(2)
    h = cp.Parameter(2)
    infeasible = CvxpyLayer(
        cp.Problem(cp.Minimize(cp.sum(x)), [x >= h, x <= h - 1]), [h], [x], solver=solver
    )
    with pytest.raises(cvxjax.SolverError, match="PRIMAL_INFEASIBLE") as info:
        infeasible(np.zeros(2))
    assert info.value.status == cvxjax.Status.PRIMAL_INFEASIBLE
    unbounded = CvxpyLayer(cp.Problem(cp.Minimize(h @ x), [x <= 1]), [h], [x], solver=solver)
    with pytest.raises(cvxjax.SolverError, match="DUAL_INFEASIBLE"):
        unbounded(np.ones(2))
    # Inside jit the host callback raises; JAX re-raises it with our message.
    with pytest.raises(Exception, match="SolverError.*PRIMAL_INFEASIBLE"):
        jax.jit(infeasible)(np.zeros(2))[0].block_until_ready()


def test_batch_failure_names_the_index_and_nan_mode_skips_it():
    x = cp.Variable(2)
    lo = cp.Parameter(2)
    up = cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x)), [x >= lo, x <= up])
    lows = np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]])
    ups = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])  # element 1 infeasible
    layer = CvxpyLayer(problem, [lo, up], [x])
    with pytest.raises(cvxjax.SolverError, match="batch element 1") as info:
        layer(lows, ups)
    assert info.value.index == 1
    nan_layer = CvxpyLayer(problem, [lo, up], [x], on_failure="nan")
    (sol,), info = jax.jit(nan_layer.solve)(lows, ups)
    assert list(np.asarray(info.status)) == [0, int(cvxjax.Status.PRIMAL_INFEASIBLE), 0]
    sol = np.asarray(sol)
    assert np.all(np.isnan(sol[1])) and np.all(np.isfinite(sol[[0, 2]]))
    # x = 0 with both bounds x ≥ 0 weakly active (degenerate): an interior-point method only
    # reaches ~sqrt(tol) accuracy there (the default solver here is the pure-JAX one, tol 1e-8).
    np.testing.assert_allclose(sol[0], [0.0, 0.0], atol=1e-4)
    grad = jax.grad(lambda l: jnp.nansum(nan_layer(l, ups)[0]))(lows)
    assert np.all(np.isfinite(np.asarray(grad)[[0, 2]]))


def test_pure_jax_solver_agrees_with_host_solvers():
    """solver="JAX" (dense interior point in JAX, no host callback) against Clarabel."""
    problem, params, outputs, values = qp_problem(seed=3)
    jax_layer = CvxpyLayer(problem, params, outputs, solver="JAX")
    host_layer = CvxpyLayer(problem, params, outputs, solver="CLARABEL")
    for a, b in zip(jax.jit(jax_layer)(*values), host_layer(*values)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    argnums = tuple(range(len(values)))
    f_jax = lambda *v: jax_layer(*v)[0]
    f_host = lambda *v: host_layer(*v)[0]
    for got, ref in zip(
        jax.jit(jax.jacrev(f_jax, argnums=argnums))(*values),
        jax.jacfwd(f_host, argnums=argnums)(*values),
    ):
        np.testing.assert_allclose(got, ref, atol=1e-5)
    qs = np.stack([values[1], -values[1], 2 * values[1]])
    np.testing.assert_allclose(
        jax.vmap(lambda q: jax_layer(values[0], q, *values[2:])[0])(qs),
        host_layer(values[0], qs, *values[2:])[0],
        atol=1e-6,
    )
    # Since the pure-JAX conic solver, "JAX" takes every cone (tests/test_jax_conic.py).
    socp, sparams, soutputs, svalues = socp_problem()
    for a, b in zip(
        CvxpyLayer(socp, sparams, soutputs, solver="JAX")(*svalues),
        CvxpyLayer(socp, sparams, soutputs, solver="CLARABEL")(*svalues),
    ):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_pure_jax_solver_reports_infeasibility():
    x = cp.Variable(2)
    h = cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x)), [x >= h, x <= h - 1])
    with pytest.raises(cvxjax.SolverError, match="PRIMAL_INFEASIBLE"):
        CvxpyLayer(problem, [h], [x], solver="JAX")(np.zeros(2))
    (sol,), info = CvxpyLayer(problem, [h], [x], solver="JAX", on_failure="nan").solve(np.zeros(2))
    assert int(info.status) == int(cvxjax.Status.PRIMAL_INFEASIBLE) and np.all(np.isnan(sol))


@pytest.mark.parametrize("solver", [None, "CLARABEL"])
def test_nan_mode_failed_elements_do_not_poison_shared_gradients(solver):
    """A parameter shared by the batch gets the gradient of the solved elements only, when the
    loss masks the failed ones out (closed form: x = max(w, lo) here, so dx/dw = [1, 0])."""
    x = cp.Variable(2)
    lo, w = cp.Parameter(2), cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(cp.sum_squares(x - w)), [x >= lo, cp.sum(x) <= 1])
    layer = CvxpyLayer(problem, [lo, w], [x], solver=solver, on_failure="nan")
    lows = jnp.array([[0.0, 0.0], [1.0, 1.0], [0.2, 0.3]])  # element 1 is infeasible

    def loss(w_val):
        (xs,), info = layer.solve(lows, w_val)
        return jnp.sum(jnp.where((info.status == 0)[:, None], xs, 0.0))

    (xs,), info = layer.solve(lows, jnp.array([0.5, -0.2]))
    assert np.isnan(np.asarray(xs[1])).all() and int(info.status[1]) != 0
    np.testing.assert_allclose(jax.grad(loss)(jnp.array([0.5, -0.2])), [2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(
        jax.jit(jax.grad(loss))(jnp.array([0.5, -0.2])), [2.0, 0.0], atol=1e-6
    )


def test_repeated_batched_gradients_do_not_deadlock():
    """Regression: batched gradients of a small SOCP layer hung on the second call on a 2-core
    machine (two batched LAPACK kernels of jaxlib waiting on each other in XLA's thread pool).
    Run in a subprocess with a timeout so that a hang fails the test instead of the suite."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import jax, jax.numpy as jnp, numpy as np, cvxpy as cp
        jax.config.update("jax_enable_x64", True)
        from cvxjax import CvxpyLayer
        n, batch = 20, 32
        rng = np.random.default_rng(0)
        x = cp.Variable(n)
        A, b = cp.Parameter((n, n)), cp.Parameter(n)
        objective = cp.norm(A @ x - b, 2) + 0.1 * cp.norm(x, 1) + 0.01 * cp.sum_squares(x)
        layer = CvxpyLayer(cp.Problem(cp.Minimize(objective)), [A, b], [x])
        A_val = jnp.asarray(rng.normal(size=(batch, n, n)) / np.sqrt(n))
        b_val = jnp.asarray(rng.normal(size=(batch, n)))
        grad = jax.jit(jax.grad(lambda A, b: layer(A, b)[0].sum(), argnums=(0, 1)))
        for _ in range(4):
            jax.block_until_ready(grad(A_val, b_val))
        print("ok")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
