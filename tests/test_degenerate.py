"""Derivatives at degenerate solutions (issue 11): exact where they exist, flagged where not.

Every case is built on purpose so that the derivative is known in closed form: duplicated
and redundant constraints, an inactive norm constraint (CVXPY's epigraph variable is then not
unique), non-unique LP duals, a weakly active bound, an LP vertex with one constraint too many
(a kink: no derivative exists, so the layer must say so). Also the two ways a solve that
misses the residual check is recovered: Newton steps on F for a near miss, and the automatic
choice's fallback from the JAX solver to Clarabel.
"""

import contextlib
import warnings

import cvxpy as cp
import jax
import jax.numpy as jnp
import maros_meszaros
import numpy as np
import pytest

import cvxjax
from cvxjax import CvxpyLayer
from cvxjax._program import SparseProgram
from cvxjax._solvers.clarabel import Clarabel
from cvxjax._solvers.fallback import WithFallback
from cvxjax._solvers.pure_jax import Jax

jax.config.update("jax_enable_x64", True)

MM_PROBLEMS = ["QAFIRO", "QADLITTL"]


@contextlib.contextmanager
def _no_degenerate_warning():
    """A context in which a DegenerateDerivativeWarning fails the test."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", cvxjax.DegenerateDerivativeWarning)
        yield
        jax.effects_barrier()  # the flag comes from a host callback, after dispatch
    flagged = [w for w in caught if issubclass(w.category, cvxjax.DegenerateDerivativeWarning)]
    assert not flagged, str(flagged[0].message)


@contextlib.contextmanager
def _degenerate_warning(match):
    """A context that must raise a DegenerateDerivativeWarning whose message contains
    ``match``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", cvxjax.DegenerateDerivativeWarning)
        yield
        jax.effects_barrier()
    messages = [
        str(w.message) for w in caught if issubclass(w.category, cvxjax.DegenerateDerivativeWarning)
    ]
    assert any(match in m for m in messages), messages


def _optimal_set_spread(problem, x, q, P=None, tol=1e-8, seed=0):
    """How far a random linear function of ``x`` varies over the optimal set of the QP
    min ½xᵀPx + qᵀx over ``problem``'s constraints, relative to ‖x*‖: ~0 for a unique
    solution, O(1) for a face of solutions. Every optimal point has the same Px and qᵀx
    (convexity), so the optimal set is the polyhedron {feasible x: Px = Px*, qᵀx ≤ qᵀx*},
    widened by ``tol``; two Clarabel LPs over it measure it, independently of cvxjax."""
    problem.solve(solver=cp.CLARABEL)
    x_star = x.value.copy()
    slack = tol * (1 + np.abs(x_star).max())
    face = [*problem.constraints, q @ x <= q @ x_star + slack * (1 + np.abs(q).max())]
    if P is not None:
        face.append(cp.abs(P @ (x - x_star)) <= slack * (1 + abs(P).max()))
    c = np.random.default_rng(seed).normal(size=x.shape)
    c /= np.linalg.norm(c)
    ends = []
    for sense in (cp.Minimize, cp.Maximize):
        cp.Problem(sense(c @ x), face).solve(solver=cp.CLARABEL)
        ends.append(c @ x.value)
    return (ends[1] - ends[0]) / max(np.linalg.norm(x_star), 1.0)


def edge_lp():
    """min cᵀx s.t. 0 ≤ x ≤ 1, 1ᵀx = 1. With c = (1, 1, 2, 3) every point of the edge
    x = (t, 1 − t, 0, 0), 0 ≤ t ≤ 1, is optimal: x* is not unique, and a derivative of a loss
    of x* depends on which point the solver returns -- even where the adjoint system is
    consistent, as it is for the optimal value."""
    x = cp.Variable(4)
    c = cp.Parameter(4)
    problem = cp.Problem(cp.Minimize(c @ x), [x >= 0, x <= 1, cp.sum(x) == 1])
    return problem, c, x


def test_non_unique_primal_solution_is_flagged_in_both_modes():
    problem, c, x = edge_lp()
    c0 = jnp.array([1.0, 1.0, 2.0, 3.0])
    layer = CvxpyLayer(problem, [c], [x])
    value = lambda cv: cv @ layer(cv)[0]
    with _degenerate_warning("not unique"):
        jax.grad(value)(c0)  # the adjoint system Jᵀu = z̄ has a solution: ρ alone misses it
    with _degenerate_warning("not unique"):
        jax.jvp(lambda cv: layer(cv)[0], (c0,), (jnp.ones(4),))
    c.value = np.asarray(c0)
    assert _optimal_set_spread(problem, x, np.asarray(c0)) > 0.1
    # A unique vertex (c = (1, 2, 3, 4): x* = e₀) is not flagged, and its gradient of the
    # optimal value is x* (envelope theorem).
    with _no_degenerate_warning():
        grad = jax.grad(value)(jnp.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_allclose(grad, [1.0, 0.0, 0.0, 0.0], atol=1e-7)
    strict = CvxpyLayer(problem, [c], [x], on_degenerate="raise")
    # The error crosses the host callback, so JAX re-raises it wrapped; match its text.
    with pytest.raises(Exception, match="DegenerateDerivativeError.*not unique"):
        jax.block_until_ready(jax.grad(lambda cv: cv @ strict(cv)[0])(c0))
        jax.effects_barrier()
    # Per problem of a batch: only the tied one gets NaN.
    batch = jnp.stack([c0, jnp.array([1.0, 2.0, 3.0, 4.0])])
    nan_layer = CvxpyLayer(problem, [c], [x], on_degenerate="nan")
    grads = jax.vmap(jax.grad(lambda cv: cv @ nan_layer(cv)[0]))(batch)
    assert np.all(np.isnan(grads[0])) and np.allclose(grads[1], [1.0, 0.0, 0.0, 0.0], atol=1e-7)


def vertex_lp():
    """min cᵀx s.t. x₀ ≤ h₀, x₁ ≤ h₁, x₀ + x₁ ≤ h₂. At c = (−1, −1), h = (1, 1, 2) all three
    constraints meet at the vertex (1, 1) (one too many in 2D: duals not unique, and x is
    not differentiable in h₂); at h = (1, 1, 3) the third is inactive and x = (h₀, h₁)."""
    x = cp.Variable(2)
    c, h = cp.Parameter(2), cp.Parameter(3)
    problem = cp.Problem(cp.Minimize(c @ x), [x[0] <= h[0], x[1] <= h[1], x[0] + x[1] <= h[2]])
    return problem, [c, h], [x]


C0 = np.array([-1.0, -1.0])
H_KINK = np.array([1.0, 1.0, 2.0])
H_SMOOTH = np.array([1.0, 1.0, 3.0])


def test_lp_vertex_with_a_redundant_constraint_is_flagged():
    problem, params, outputs = vertex_lp()
    layer = CvxpyLayer(problem, params, outputs)
    np.testing.assert_allclose(layer(C0, H_KINK)[0], [1.0, 1.0], atol=1e-7)
    # Along c the vertex does not move, and that derivative exists: no flag.
    with _no_degenerate_warning():
        jac_c = jax.jacrev(lambda c: layer(c, H_KINK)[0])(C0)
    np.testing.assert_allclose(jac_c, 0.0, atol=1e-7)
    # Along h the linearized conditions x₀' = h₀', x₁' = h₁', x₀' + x₁' = h₂' have no
    # solution: forward mode measures exactly that system and flags it.
    with pytest.warns(cvxjax.DegenerateDerivativeWarning, match="no solution"):
        jac_h = jax.jacfwd(lambda h: layer(C0, h)[0])(H_KINK)
        jax.effects_barrier()
    # Reverse mode solves Jᵀu = x̄, which is consistent here (x̄ has no component along the
    # non-unique duals), so it returns the same least-squares compromise without a flag;
    # the kink shows in diagnose=True (test below) -- a documented limit of the flag.
    np.testing.assert_allclose(jax.jacrev(lambda h: layer(C0, h)[0])(H_KINK), jac_h, atol=1e-7)
    assert np.all(np.isfinite(jac_h))


def test_lp_vertex_policies_raise_nan_ignore():
    problem, params, outputs = vertex_lp()
    raising = CvxpyLayer(problem, params, outputs, on_degenerate="raise")
    with pytest.raises(Exception, match="DegenerateDerivativeError"):
        jax.block_until_ready(jax.jacfwd(lambda h: raising(C0, h)[0])(H_KINK))
    # Batched, "nan" poisons only the degenerate problem's derivative.
    nan_layer = CvxpyLayer(problem, params, outputs, on_degenerate="nan")
    H = np.stack([H_KINK, H_SMOOTH])
    jac = jax.vmap(jax.jacfwd(lambda h: nan_layer(C0, h)[0]))(H)
    assert np.all(np.isnan(jac[0]))
    np.testing.assert_allclose(jac[1], [[1, 0, 0], [0, 1, 0]], atol=1e-7)
    quiet = CvxpyLayer(problem, params, outputs, on_degenerate="ignore")
    with _no_degenerate_warning():
        assert np.all(np.isfinite(jax.jacrev(lambda h: quiet(C0, h)[0])(H_KINK)))
    with pytest.raises(ValueError, match="on_degenerate"):
        CvxpyLayer(problem, params, outputs, on_degenerate="loud")


def test_diagnose_reports_the_residual_per_parameter():
    problem, params, outputs = vertex_lp()
    layer = CvxpyLayer(problem, params, outputs)
    (_,), info = layer.solve(C0, np.stack([H_KINK, H_SMOOTH]), diagnose=True)
    res_c, res_h = (np.asarray(r) for r in info.derivative_residual)
    assert np.all(res_c < 1e-10)
    assert res_h[0] > 0.1 and res_h[1] < 1e-10
    (_,), plain = layer.solve(C0, H_SMOOTH)
    assert plain.derivative_residual is None


def test_duplicated_rows_qp_matches_projection_closed_form():
    """min ½‖x‖² + qᵀx s.t. Gx ≤ 1 with G's first row repeated twice more: where the
    repeated row is active, x = −q − Gₐᵀλ and dx/dq = −(I − Gₐ⁺Gₐ), the projection onto
    null(Gₐ), whatever the split of λ among the copies."""
    rng = np.random.default_rng(3)
    n = 5
    G = rng.normal(size=(3, n))
    G = np.vstack([G, G[:1], G[:1]])
    x, q = cp.Variable(n), cp.Parameter(n)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), [G @ x <= 1])
    q0 = -3.0 * G[0] + 0.1 * rng.normal(size=n)
    q.value = q0
    problem.solve(solver=cp.CLARABEL)
    active = G @ x.value > 1 - 1e-7
    assert active[0] and active[-1]  # the repeated row is active: duals not unique
    Ga = G[active]
    expected = -(np.eye(n) - np.linalg.pinv(Ga) @ Ga)

    layer = CvxpyLayer(problem, [q], [x])
    f = lambda q: layer(q)[0]
    with _no_degenerate_warning():
        np.testing.assert_allclose(f(q0), x.value, atol=1e-7)
        np.testing.assert_allclose(jax.jacfwd(f)(q0), expected, atol=1e-7)
        np.testing.assert_allclose(jax.jit(jax.jacrev(f))(q0), expected, atol=1e-7)
        # Envelope identity ∇V(q) = x* for V(q) = ½‖x*‖² + qᵀx*.
        V = lambda q: 0.5 * f(q) @ f(q) + q @ f(q)
        np.testing.assert_allclose(jax.grad(V)(q0), x.value, atol=1e-7)


def test_inactive_norm_constraint_socp_jvp_vjp_vmap():
    """min ½‖x − a‖² s.t. 1ᵀx = 1, ‖x‖ ≤ 10 with ‖a‖ small: the cone constraint is inactive,
    CVXPY's epigraph variable t ∈ [‖x‖, 10] is not unique, and x = a − (1ᵀa − 1)/n·1 with
    dx/da = I − 11ᵀ/n."""
    n = 4
    x, a = cp.Variable(n), cp.Parameter(n)
    problem = cp.Problem(
        cp.Minimize(0.5 * cp.sum_squares(x - a)), [cp.sum(x) == 1, cp.norm(x) <= 10]
    )
    layer = CvxpyLayer(problem, [a], [x])
    rng = np.random.default_rng(0)
    A = 0.3 * rng.normal(size=(3, n))
    proj = np.eye(n) - np.ones((n, n)) / n
    f = lambda a: layer(a)[0]
    with _no_degenerate_warning():
        xs = jax.vmap(f)(A)
        np.testing.assert_allclose(xs, A - (A.sum(1, keepdims=True) - 1) / n, atol=1e-7)
        t = rng.normal(size=n)
        _, tangent = jax.jit(lambda a, t: jax.jvp(f, (a,), (t,)))(A[0], t)
        np.testing.assert_allclose(tangent, proj @ t, atol=1e-7)
        _, pullback = jax.vjp(f, A[1])
        np.testing.assert_allclose(pullback(t)[0], proj @ t, atol=1e-7)
        jac = jax.vmap(jax.jacfwd(f))(A)
        np.testing.assert_allclose(jac, np.broadcast_to(proj, (3, n, n)), atol=1e-7)


def test_non_unique_lp_duals_from_duplicated_bounds():
    """min cᵀx s.t. x ≤ h (twice), x ≥ −10, c < 0: x = h, dx/dh = I, dx/dc = 0, while the
    duals of the two copies may split in any proportion."""
    n = 3
    x, c, h = cp.Variable(n), cp.Parameter(n), cp.Parameter(n)
    problem = cp.Problem(cp.Minimize(c @ x), [x <= h, x <= h, x >= -10])
    layer = CvxpyLayer(problem, [c, h], [x])
    c0, h0 = -np.array([1.0, 2.0, 0.5]), np.array([0.3, -1.0, 2.0])
    with _no_degenerate_warning():
        np.testing.assert_allclose(layer(c0, h0)[0], h0, atol=1e-7)
        np.testing.assert_allclose(jax.jacfwd(lambda h: layer(c0, h)[0])(h0), np.eye(n), atol=1e-7)
        np.testing.assert_allclose(jax.jacrev(lambda c: layer(c, h0)[0])(c0), 0.0, atol=1e-7)


def test_weakly_active_bound_gives_a_one_sided_derivative():
    """min ½(x − a)² s.t. x ≥ 0 at a = 0: the bound is weakly active (x = 0, dual 0), the
    one-sided derivatives are 0 and 1. The layer returns one of them, not a compromise
    between them (a biased solve gave values in between)."""
    x, a = cp.Variable(2), cp.Parameter(2)
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x - a)), [x >= 0])
    layer = CvxpyLayer(problem, [a], [x], on_degenerate="ignore")
    a0 = np.array([0.0, 1.0])
    jac = np.asarray(jax.jacfwd(lambda a: layer(a)[0])(a0))
    assert min(abs(jac[0, 0]), abs(jac[0, 0] - 1.0)) < 1e-6, jac
    np.testing.assert_allclose(jac[1], [0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(jac[0, 1], 0.0, atol=1e-7)


def small_socp():
    rng = np.random.default_rng(1)
    n = 8
    x, q = cp.Variable(n), cp.Parameter(n)
    G = rng.normal(size=(5, n))
    constraints = [G @ x <= 1, cp.norm(x) <= 2]
    problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(x) + q @ x), constraints)
    return problem, q, x, rng.normal(size=n)


def test_near_miss_is_refined_not_failed():
    """Clarabel stopped after 5 iterations leaves a point slightly above the residual check;
    two Newton steps on F make it a solution. After 2 iterations it is far away: still a
    failure, never a silently loose answer."""
    problem, q, x, q0 = small_socp()
    reference = CvxpyLayer(problem, [q], [x], solver="CLARABEL")
    short = CvxpyLayer(problem, [q], [x], solver="CLARABEL", solver_args={"max_iter": 5})
    (xs,), info = short.solve(q0)
    assert int(info.status) == 0 and int(info.iterations) == 5
    np.testing.assert_allclose(xs, reference(q0)[0], atol=1e-8)
    w = np.arange(q0.size, dtype=float)
    np.testing.assert_allclose(
        jax.grad(lambda q: short(q)[0] @ w)(q0),
        jax.grad(lambda q: reference(q)[0] @ w)(q0),
        atol=1e-7,
    )
    far = CvxpyLayer(problem, [q], [x], solver="CLARABEL", solver_args={"max_iter": 2})
    with pytest.raises(cvxjax.SolverError, match="iteration limit"):
        far(q0)


class _CountingClarabel(Clarabel):
    """Clarabel that records each problem it is asked to solve."""

    def solve_numpy(self, workspace, P, q, A, b, settings, warm_start):
        _CountingClarabel.seen.append(float(q[0]))
        return super().solve_numpy(workspace, P, q, A, b, settings, warm_start)


_CountingClarabel.seen = []


def test_fallback_from_jax_to_clarabel_only_for_failed_problems():
    problem, q, x, q0 = small_socp()
    reference = CvxpyLayer(problem, [q], [x], solver="CLARABEL")
    # An ADMM limited to a few iterations stands in for QBORE3D's iteration limit.
    failing = WithFallback(primary=Jax.with_settings(max_iter=3), fallback=_CountingClarabel())
    layer = CvxpyLayer(problem, [q], [x], solver=failing)
    Q = q0 + 0.1 * np.random.default_rng(5).normal(size=(3, q0.size))
    _CountingClarabel.seen.clear()
    (xs,), info = layer.solve(Q)
    assert info.solver == "JAX" and np.all(info.used_fallback) and np.all(info.status == 0)
    assert len(_CountingClarabel.seen) == 3
    np.testing.assert_allclose(xs, reference(Q)[0], atol=1e-8)
    f, g = (lambda q: layer(q)[0]), (lambda q: reference(q)[0])
    np.testing.assert_allclose(jax.jacfwd(f)(q0), jax.jacfwd(g)(q0), atol=1e-7)
    w = np.arange(q0.size, dtype=float)
    np.testing.assert_allclose(
        jax.jit(jax.grad(lambda q: f(q) @ w))(q0), jax.grad(lambda q: g(q) @ w)(q0), atol=1e-7
    )

    # The automatic choice: the JAX solver succeeds, so no host solve runs at all.
    auto = CvxpyLayer(problem, [q], [x])
    (_,), auto_info = auto.solve(Q)
    if auto.solver_for(jnp.float64) == "JAX":
        assert not np.any(auto_info.used_fallback)
    (_,), host_info = reference.solve(Q)
    assert host_info.used_fallback is None


def test_host_solver_skips_inactive_problems_of_a_batch():
    problem, q, x, q0 = small_socp()
    layer = CvxpyLayer(problem, [q], [x], solver="CLARABEL")
    canonical = layer.canonical
    solver = _CountingClarabel()
    workspace = solver.init(canonical.structure)
    settings = solver.check_settings(None, canonical.structure.cones)
    Q = q0 + 0.1 * np.random.default_rng(6).normal(size=(4, q0.size))
    active = np.array([False, True, False, True])

    def solve(q_value, act):
        program = SparseProgram(canonical.structure, canonical.data(q_value))
        return solver.solve(workspace, program, settings, None, active=act)

    _CountingClarabel.seen.clear()
    raw = jax.vmap(solve)(jnp.asarray(Q), jnp.asarray(active))
    assert len(_CountingClarabel.seen) == 2
    assert np.all(np.isnan(raw.x[~active])) and np.all(raw.status[~active] == 5)
    assert np.all(raw.status[active] == 0) and np.all(np.isfinite(raw.x[active]))


# Maros–Meszaros problems whose gradient the damped fallback solve got wrong without an
# error (envelope error 0.06–6 before the minimum-norm solve; benchmarks/README.md).
@pytest.mark.parametrize("name", MM_PROBLEMS)
def test_maros_meszaros_envelope_identity_and_finite_differences(name):
    """V(q) = min_x ½xᵀPx + qᵀx (+ r) over the problem's constraints has ∇V(q) = x*(q) (the
    envelope theorem; it holds whichever duals are chosen), in reverse mode (grad), and the
    gradient is a supergradient of CVXPY's optimal value. Their x* is not unique (checked
    with CVXPY), so the gradient is one of many and must be flagged as such."""
    problem, q, x = maros_meszaros.cvxpy_problem(name)
    P = jnp.asarray(maros_meszaros.load(name)["P"].toarray())  # V without the constant r
    q0 = np.array(q.value)
    layer = CvxpyLayer(problem, [q], [x])

    def V(qv):
        xs = layer(qv)[0]
        return 0.5 * xs @ P @ xs + qv @ xs, xs

    # Both have a face of optimal points (OSQP's and SCS's x differ from Clarabel's
    # by 4-84 % at the same value): the derivative is one of many, and is flagged as such.
    with _degenerate_warning("not unique"):
        (value, xs), grad = jax.value_and_grad(V, has_aux=True)(q0)
    scale = max(np.linalg.norm(xs), 1.0)
    assert np.linalg.norm(grad - xs) <= 1e-6 * scale
    direction = np.random.default_rng(0).normal(size=q0.size)

    def cvxpy_value(qv):
        q.value = qv
        problem.solve(solver=cp.CLARABEL)
        return problem.value

    reference = cvxpy_value(q0) - maros_meszaros.load(name)["r"]
    assert abs(float(value) - reference) <= 1e-6 * (1 + abs(reference))
    q.value = q0
    P_sparse = maros_meszaros.load(name)["P"]
    assert _optimal_set_spread(problem, x, q0, P_sparse) > 1e-2  # the flag is right
    q.value = q0
    # V is concave in q (a minimum of functions affine in q), so the gradient must be a
    # supergradient: V(q ± εd) ≤ V(q) ± ε gᵀd, checked on CVXPY's values. (Central
    # differences would not do: on these LP-like problems V has a kink along d.)
    eps = 1e-3 * max(1.0, np.abs(q0).max()) / np.linalg.norm(direction)
    slack = 1e-6 * (1 + abs(reference))
    for sign in (1.0, -1.0):
        step = sign * eps * direction
        moved = cvxpy_value(q0 + step) - maros_meszaros.load(name)["r"]
        assert moved <= reference + float(grad @ step) + slack
