"""The contract every registered solver meets, as one parametrized suite.

A solver registered in ``cvxjax._solvers._registry.SOLVERS`` gets all of it: values against
CVXPY's own solve, forward (jvp) and reverse (vjp) derivatives against central finite
differences of CVXPY's solve, vmap against a loop, float32 in → float32 out, the diagnostics
of ``layer.solve``, infeasible / unbounded statuses (raised eagerly and under ``jit``), and
NaN mode. Each solver runs the problems whose cones it supports.
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
from cvxjax._solvers._registry import SOLVERS

SOLVER_NAMES = sorted(SOLVERS)
TIGHT = dict(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)


def qp():
    """A small QP with equalities and active inequalities (unique, strictly complementary)."""
    rng = np.random.default_rng(1)
    n = 4
    x = cp.Variable(n)
    q, h = cp.Parameter(n), cp.Parameter(n)
    G = rng.normal(size=(n, n))
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= h, cp.sum(x) == 1])
    x0 = np.full(n, 0.25)
    h_val = G @ x0 + np.array([0.0, 0.3, 0.0, 0.4])
    q_val = rng.normal(size=n) - 2 * G.T @ np.array([1.0, 0.0, 1.0, 0.0])
    return problem, [q, h], x, [q_val, h_val]


def socp():
    """A small SOCP (an active norm constraint)."""
    rng = np.random.default_rng(2)
    n = 3
    x = cp.Variable(n)
    c = cp.Parameter(n)
    problem = cp.Problem(cp.Minimize(c @ x + 0.1 * cp.sum_squares(x)), [cp.norm(x) <= 1])
    return problem, [c], x, [rng.normal(size=n)]


PROBLEMS = {"qp": qp, "socp": socp}


def cases():
    for kind, make in PROBLEMS.items():
        problem, params, x, _ = make()
        cones = set(canonicalize(problem, params, [x]).structure.cones.present())
        for name in SOLVER_NAMES:
            if cones <= SOLVERS[name].supported_cones:
                yield pytest.param(name, kind, id=f"{name}-{kind}")


CASES = list(cases())
_LAYERS = {}


def layer_for(solver, kind):
    """One layer per (solver, problem), shared by the tests (compiling dominates)."""
    if (solver, kind) not in _LAYERS:
        problem, params, x, values = PROBLEMS[kind]()
        layer = CvxpyLayer(problem, params, [x], solver=solver)
        _LAYERS[solver, kind] = (layer, problem, params, x, [jnp.asarray(v) for v in values])
    return _LAYERS[solver, kind]


def cvxpy_solution(problem, params, x, values):
    for p, v in zip(params, values):
        p.value = np.asarray(v, np.float64)
    problem.solve(**TIGHT)
    assert problem.status == cp.OPTIMAL
    return x.value


@pytest.mark.parametrize("solver,kind", CASES)
def test_values_and_diagnostics(solver, kind):
    layer, problem, params, x, values = layer_for(solver, kind)
    (sol,), info = layer.solve(*values)
    np.testing.assert_allclose(sol, cvxpy_solution(problem, params, x, values), atol=1e-6)
    assert info.solver == solver
    assert int(info.status) == 0 and int(info.iterations) > 0
    worst = max(float(info.primal_residual), float(info.dual_residual), float(info.gap))
    assert worst <= 1e-6


@pytest.mark.parametrize("solver,kind", CASES)
def test_jvp_and_vjp_match_finite_differences(solver, kind):
    layer, problem, params, x, values = layer_for(solver, kind)
    wrt = 0
    fd = central_fd_jacobian(
        lambda t: cvxpy_solution(problem, params, x, [t, *values[1:]]), values[wrt], eps=1e-4
    )
    f = lambda t: layer(t, *values[1:])[0]
    direction = jnp.asarray(np.random.default_rng(0).normal(size=values[wrt].shape))
    _, tangent = jax.jit(lambda t, d: jax.jvp(f, (t,), (d,)))(values[wrt], direction)
    np.testing.assert_allclose(tangent, fd @ np.asarray(direction), atol=1e-5)
    cotangent = jnp.arange(1.0, 1.0 + fd.shape[0])
    _, vjp = jax.vjp(f, values[wrt])
    np.testing.assert_allclose(vjp(cotangent)[0], np.asarray(cotangent) @ fd, atol=1e-5)


@pytest.mark.parametrize("solver,kind", CASES)
def test_vmap_matches_a_loop_and_float32(solver, kind):
    layer, problem, params, x, values = layer_for(solver, kind)
    batch = jnp.stack([values[0], 0.5 * values[0], -values[0]])
    batched = jax.vmap(lambda t: layer(t, *values[1:])[0])(batch)
    for k in range(batch.shape[0]):
        np.testing.assert_allclose(
            batched[k], cvxpy_solution(problem, params, x, [batch[k], *values[1:]]), atol=1e-6
        )
    (sol32,), info = layer.solve(*[v.astype(jnp.float32) for v in values])
    assert sol32.dtype == jnp.float32 and int(info.status) == 0
    np.testing.assert_allclose(sol32, cvxpy_solution(problem, params, x, values), atol=2e-3)


@pytest.mark.parametrize("solver", SOLVER_NAMES)
def test_infeasible_unbounded_and_nan_mode(solver):
    x = cp.Variable(2)
    h = cp.Parameter(2)
    # x ≥ h and x ≤ h − 1 is infeasible for every h; min hᵀx over x ≤ 1 is unbounded for h > 0.
    infeasible = cp.Problem(cp.Minimize(cp.sum_squares(x)), [x >= h, x <= h - 1])
    unbounded = cp.Problem(cp.Minimize(h @ x), [x <= 1])
    layer = CvxpyLayer(infeasible, [h], [x], solver=solver)
    with pytest.raises(cvxjax.SolverError, match="PRIMAL_INFEASIBLE") as err:
        layer(np.zeros(2))
    assert err.value.status == cvxjax.Status.PRIMAL_INFEASIBLE and err.value.solver == solver
    with pytest.raises(Exception, match="SolverError.*PRIMAL_INFEASIBLE"):
        jax.block_until_ready(jax.jit(layer)(np.zeros(2)))
    with pytest.raises(cvxjax.SolverError, match="DUAL_INFEASIBLE"):
        CvxpyLayer(unbounded, [h], [x], solver=solver)(np.ones(2))
    nan_layer = CvxpyLayer(infeasible, [h], [x], solver=solver, on_failure="nan")
    (sol,), info = jax.jit(nan_layer.solve)(jnp.zeros((2, 2)))
    assert np.all(np.isnan(np.asarray(sol)))
    assert list(np.asarray(info.status)) == [int(cvxjax.Status.PRIMAL_INFEASIBLE)] * 2
