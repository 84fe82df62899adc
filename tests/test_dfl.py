"""cvxjax.dfl: surrogate losses and smoothed layers for problems with a linear cost.

Closed forms on LPs whose solutions are known by hand (simplex: one-hot argmin; box: sign
pattern), finite differences of CVXPY's own solves where the map is smooth, and the methods'
defining formulas. Layers are built once per module (compilation dominates the run time) and
use Clarabel (host), which compiles in a fraction of the pure-JAX solver's time.
"""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd_jacobian
from scipy.stats import norm

import cvxjax
from cvxjax import dfl


# ---------------------------------------------------------------------------------------------
# Problems shared by the tests
# ---------------------------------------------------------------------------------------------
def simplex_problem(n):
    c, x = cp.Parameter(n), cp.Variable(n)
    return cp.Problem(cp.Minimize(c @ x), [cp.sum(x) == 1, x >= 0]), c, x


@pytest.fixture(scope="module")
def simplex3():
    problem, c, x = simplex_problem(3)
    return cvxjax.CvxpyLayer(problem, [c], [x], solver="CLARABEL")


@pytest.fixture(scope="module")
def simplex2():
    problem, c, x = simplex_problem(2)
    return cvxjax.CvxpyLayer(problem, [c], [x], solver="CLARABEL")


@pytest.fixture(scope="module")
def box4():
    c, x = cp.Parameter(4), cp.Variable(4)
    problem = cp.Problem(cp.Minimize(c @ x), [x >= 0, x <= 1])
    return cvxjax.CvxpyLayer(problem, [c], [x], solver="CLARABEL")


PORTFOLIO_RADIUS = 0.6


def portfolio_problem(n=4):
    """min cᵀx s.t. 1ᵀx = 1, x ≥ 0, ‖x‖₂ ≤ r: an SOCP (c = −expected return) whose solution
    is unique and smooth in c wherever the norm constraint is active and x > 0."""
    c, x = cp.Parameter(n), cp.Variable(n)
    constraints = [cp.sum(x) == 1, x >= 0, cp.norm(x, 2) <= PORTFOLIO_RADIUS]
    return cp.Problem(cp.Minimize(c @ x), constraints), c, x


@pytest.fixture(scope="module")
def portfolio():
    problem, c, x = portfolio_problem()
    return cvxjax.CvxpyLayer(problem, [c], [x], solver="CLARABEL")


def cvxpy_solution(problem, param, var, value):
    param.value = np.asarray(value, dtype=np.float64)
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return np.asarray(var.value)


def one_hot_argmin(c):
    c = np.asarray(c)
    return np.eye(c.shape[-1])[np.argmin(c, axis=-1)]


# ---------------------------------------------------------------------------------------------
# SPO+
# ---------------------------------------------------------------------------------------------
def spo_simplex_closed_form(c_pred, c_true):
    """Value and subgradient of SPO+ on the simplex, where x*(c) = e_argmin(c)."""
    shifted = 2 * c_pred - c_true
    x_true, x_shift = one_hot_argmin(c_true), one_hot_argmin(shifted)
    value = -shifted.min(-1) + 2 * (c_pred * x_true).sum(-1) - c_true.min(-1)
    return value, 2 * (x_true - x_shift)


def test_spo_plus_simplex_value_and_subgradient(simplex3):
    rng = np.random.default_rng(0)
    c_true = rng.normal(size=(5, 3))
    c_pred = rng.normal(size=(5, 3))
    c_pred[0] = c_true[0] + 0.1  # near the truth: same argmin, loss ~ 0.2 · ... > 0
    x_true = one_hot_argmin(c_true)
    value, subgradient = spo_simplex_closed_form(c_pred, c_true)

    loss = lambda ch: dfl.spo_plus(simplex3, ch, c_true, x_true)
    np.testing.assert_allclose(loss(c_pred), value, atol=1e-7)
    grad = jax.jit(jax.grad(lambda ch: loss(ch).sum()))(c_pred)
    np.testing.assert_allclose(grad, subgradient, atol=1e-6)
    # Per example under vmap (each element unbatched), and jvp gives ⟨subgradient, direction⟩.
    per_example = jax.vmap(lambda ch, c, x: dfl.spo_plus(simplex3, ch, c, x))(
        c_pred, c_true, x_true
    )
    np.testing.assert_allclose(per_example, value, atol=1e-7)
    direction = rng.normal(size=(5, 3))
    _, tangent = jax.jvp(loss, (c_pred,), (direction,))
    np.testing.assert_allclose(tangent, (subgradient * direction).sum(-1), atol=1e-6)
    # SPO+ upper-bounds the regret cᵀx*(ĉ) − z*(c), and is 0 at ĉ = c.
    regret = (c_true * one_hot_argmin(c_pred)).sum(-1) - c_true.min(-1)
    assert np.all(np.asarray(loss(c_pred)) >= regret - 1e-7)
    np.testing.assert_allclose(loss(c_true), 0.0, atol=1e-7)


def test_spo_plus_box_lp(box4):
    # X = [0, 1]^n: x*(c)_i = 1[c_i < 0] and min_x dᵀx = Σ min(d_i, 0).
    c_true = np.array([0.5, -1.0, 2.0, -0.3])
    c_pred = np.array([-0.4, 0.2, 1.3, -1.0])
    x_true = (c_true < 0).astype(float)
    shifted = 2 * c_pred - c_true
    value = -np.minimum(shifted, 0).sum() + 2 * c_pred @ x_true - c_true @ x_true
    subgradient = 2 * (x_true - (shifted < 0))
    loss = lambda ch: dfl.spo_plus(box4, ch, c_true, x_true)
    np.testing.assert_allclose(loss(c_pred), value, atol=1e-7)
    np.testing.assert_allclose(jax.grad(loss)(c_pred), subgradient, atol=1e-6)


def test_spo_plus_socp_matches_finite_differences(portfolio):
    """On the norm-constrained portfolio x*(·) is smooth, so SPO+ is differentiable and its
    gradient 2(x*(c) − x*(2ĉ − c)) must match central differences of the loss evaluated
    with CVXPY's own solves."""
    problem, c_param, x_var = portfolio_problem()
    c_true = np.array([-0.3, -0.1, 0.2, -0.25])
    c_pred = np.array([-0.1, -0.35, 0.05, -0.2])
    x_true = cvxpy_solution(problem, c_param, x_var, c_true)
    assert abs(np.linalg.norm(x_true) - PORTFOLIO_RADIUS) < 1e-6  # the cone is active

    def reference_loss(ch):
        shifted = 2 * ch - c_true
        x_shift = cvxpy_solution(problem, c_param, x_var, shifted)
        return np.array(-shifted @ x_shift + 2 * ch @ x_true - c_true @ x_true)

    loss = lambda ch: dfl.spo_plus(portfolio, ch, c_true, x_true)
    np.testing.assert_allclose(loss(c_pred), reference_loss(c_pred), atol=1e-6)
    fd = central_fd_jacobian(reference_loss, c_pred, eps=1e-4)
    np.testing.assert_allclose(jax.grad(loss)(c_pred), fd, atol=2e-4)


# ---------------------------------------------------------------------------------------------
# Perturbed optimizer and Fenchel–Young loss
# ---------------------------------------------------------------------------------------------
SIGMA = 0.5
NUM_SAMPLES = 2000  # Monte-Carlo standard error of a probability ≤ 0.5/√M ≈ 0.011


def two_simplex_mean(c, sigma=SIGMA):
    """E[x*(c + σZ)] on the 2-simplex: P(c1 + σZ1 < c2 + σZ2) = Φ((c2 − c1)/(σ√2))."""
    p = norm.cdf((c[..., 1] - c[..., 0]) / (sigma * np.sqrt(2)))
    return np.stack([p, 1 - p], axis=-1)


@pytest.fixture(scope="module")
def perturbed2(simplex2):
    return dfl.perturbed(simplex2, SIGMA, NUM_SAMPLES)


def test_perturbed_mean_matches_closed_form(perturbed2):
    c = np.array([[0.2, 0.5], [0.3, -0.1], [0.0, 0.0]])
    mean = jax.jit(perturbed2)(jax.random.key(0), c)
    np.testing.assert_allclose(mean, two_simplex_mean(c), atol=0.03)
    np.testing.assert_allclose(np.asarray(mean).sum(-1), 1.0, atol=1e-7)


def test_perturbed_jacobian_estimate(perturbed2):
    c = np.array([0.2, 0.5])
    key = jax.random.key(1)
    jac_fwd = jax.jacfwd(perturbed2, argnums=1)(key, c)
    jac_rev = jax.jit(jax.jacrev(perturbed2, argnums=1))(key, c)
    # Same draws, one linear map: forward and reverse mode agree to rounding.
    np.testing.assert_allclose(jac_fwd, jac_rev, atol=1e-10)
    # The Stein estimate vs finite differences of the closed form (loose: Monte Carlo,
    # standard error ~ 1/(σ√M) · O(1) ≈ 0.03 here).
    exact = central_fd_jacobian(two_simplex_mean, c, eps=1e-5)
    np.testing.assert_allclose(jac_fwd, exact, atol=0.08)
    assert np.abs(exact).max() > 0.3  # the test is not trivially passing on zeros


def test_perturbed_requires_positive_sigma(simplex2):
    with pytest.raises(ValueError):
        dfl.perturbed(simplex2, 0.0, 10)
    with pytest.raises(ValueError):
        dfl.fenchel_young_loss(simplex2, 1.0, 0)


def test_fenchel_young_gradient(simplex2):
    # Fewer draws than the other tests (each is a host solve; 2000 made this the slowest test
    # of the suite): the exact identity below does not depend on M, and the perturbed mean's
    # accuracy at M = 2000 is test_perturbed_mean_matches_closed_form's job.
    num_samples = 200
    loss = dfl.fenchel_young_loss(simplex2, SIGMA, num_samples)
    perturbed = dfl.perturbed(simplex2, SIGMA, num_samples)
    c_pred = np.array([[0.2, 0.5], [0.4, 0.1]])
    x_true = np.array([[0.0, 1.0], [0.0, 1.0]])
    key = jax.random.key(2)
    values, grad = jax.jit(jax.vmap(jax.value_and_grad(loss, argnums=1), in_axes=(None, 0, 0)))(
        key, c_pred, x_true
    )
    assert values.shape == (2,) and np.all(np.asarray(values) >= -1e-9)
    # vmap: every row uses the same key, so row i matches the unbatched call on row i alone.
    for i in range(2):
        expected = x_true[i] - perturbed(key, c_pred[i])
        np.testing.assert_allclose(grad[i], expected, atol=1e-9)
    batched = jax.grad(lambda ch: loss(key, ch, x_true).sum())(c_pred)
    # Exactly x_true − (the perturbed mean with the same draws) ...
    np.testing.assert_allclose(batched, x_true - perturbed(key, c_pred), atol=1e-9)
    # ... which is x_true − the closed-form mean up to Monte Carlo (standard error of a
    # probability ≤ 0.5/√200 ≈ 0.035; the draws are fixed by the key, so this is not flaky).
    np.testing.assert_allclose(batched, x_true - two_simplex_mean(c_pred), atol=0.1)


# ---------------------------------------------------------------------------------------------
# Quadratic smoothing: exact implicit derivative vs CVXPY
# ---------------------------------------------------------------------------------------------
TEMPERATURE = 0.5


def capped_simplex_problem(n=4, cap=0.4):
    c, x = cp.Parameter(n), cp.Variable(n)
    return cp.Problem(cp.Minimize(c @ x), [cp.sum(x) == 1, x >= 0, x <= cap]), c, x


@pytest.fixture(scope="module")
def smoothed():
    problem, c, x = capped_simplex_problem()
    return dfl.quadratic_smoothing(problem, [c], [x], TEMPERATURE, solver="CLARABEL")


def test_quadratic_smoothing_derivative_vs_cvxpy(smoothed):
    problem, c_param, x_var = capped_simplex_problem()
    reference = cp.Problem(
        cp.Minimize(c_param @ x_var + TEMPERATURE / 2 * cp.sum_squares(x_var)), problem.constraints
    )
    # A point with one coordinate at the cap, one at 0 and two strictly inside (x = (0.4,
    # 0.25, 0.35, 0): no kink), where the solution map is differentiable.
    c = np.array([-0.5, 0.1, 0.05, 0.6])
    solve = lambda value: cvxpy_solution(reference, c_param, x_var, value)
    x_ref = solve(c)
    np.testing.assert_allclose(x_ref, [0.4, 0.25, 0.35, 0.0], atol=1e-7)
    jac_fd = central_fd_jacobian(solve, c, eps=1e-5)
    assert np.abs(jac_fd).max() > 0.5  # informative, unlike the LP's zero derivative

    f = lambda value: smoothed(value)[0]
    np.testing.assert_allclose(f(c), x_ref, atol=1e-7)
    direction = np.array([0.3, -1.0, 0.5, 0.2])
    _, tangent = jax.jit(lambda v: jax.jvp(f, (c,), (v,)))(direction)
    np.testing.assert_allclose(tangent, jac_fd @ direction, atol=1e-5)
    _, vjp = jax.vjp(f, c)
    np.testing.assert_allclose(jax.jit(vjp)(direction)[0], jac_fd.T @ direction, atol=1e-5)
    # vmap over a batch of costs (the second one a shifted copy: same solution, same Jacobian).
    batch = np.stack([c, c + 1.0])
    jac_batch = jax.vmap(jax.jacrev(f))(batch)
    np.testing.assert_allclose(jac_batch, np.stack([jac_fd, jac_fd]), atol=1e-5)


def test_quadratic_smoothing_maximize_and_validation():
    c, x = cp.Parameter(2), cp.Variable(2)
    problem = cp.Problem(cp.Maximize(c @ x), [cp.sum(x) == 1, x >= 0])
    layer = dfl.quadratic_smoothing(problem, [c], [x], 1.0, solver="CLARABEL")
    # max cᵀx − ½‖x‖² on the 2-simplex: x1 − x2 = c1 − c2 while interior.
    x1, x2 = np.asarray(layer(np.array([0.3, 0.1]))[0])
    np.testing.assert_allclose([x1 - x2, x1 + x2], [0.2, 1.0], atol=1e-7)
    with pytest.raises(ValueError):
        dfl.quadratic_smoothing(problem, [c], [x], 0.0)


# ---------------------------------------------------------------------------------------------
# LPGD
# ---------------------------------------------------------------------------------------------
def test_lpgd_gradient_is_its_defining_formula(simplex3):
    tau = 0.7
    c = np.array([[0.2, 0.1, 0.5], [1.0, -0.3, 0.4]])
    target = np.array([1.0, 0.0, 0.0])

    def loss_of(x):  # ℓ(x) = ½‖x − target‖² per row, so g = x − target
        return 0.5 * jnp.sum((x - target) ** 2)

    x = np.asarray(simplex3(c)[0])
    g = x - target
    solve = lambda v: np.asarray(simplex3(v)[0])
    for two_sided in (False, True):
        f = dfl.lpgd(simplex3, tau, two_sided=two_sided)
        np.testing.assert_allclose(f(c), x, atol=1e-12)
        grad = jax.jit(jax.grad(lambda v: loss_of(f(v))))(c)
        if two_sided:
            expected = (solve(c + tau * g) - solve(c - tau * g)) / (2 * tau)
        else:
            expected = (solve(c + tau * g) - x) / tau
        np.testing.assert_allclose(grad, expected, atol=1e-6)
        assert np.abs(expected).max() > 0.5  # the exact LP derivative would be 0
        per_row = jax.vmap(jax.grad(lambda v: loss_of(f(v))))(c)
        np.testing.assert_allclose(per_row, expected, atol=1e-6)


def test_lpgd_on_smooth_layers_tends_to_exact_vjp(smoothed, portfolio):
    """Where the solution map is differentiable its Jacobian is symmetric, so LPGD with a
    small step is the exact VJP: checked on the smoothed layer (QP) and the SOCP."""
    rng = np.random.default_rng(3)
    for layer, c in (
        (smoothed, np.array([-0.5, 0.1, 0.05, 0.6])),
        (portfolio, np.array([-0.3, -0.1, 0.2, -0.25])),
    ):
        g = rng.normal(size=4)
        _, exact_vjp = jax.vjp(lambda v: layer(v)[0], c)
        approx = jax.grad(lambda v: jnp.vdot(g, dfl.lpgd(layer, 1e-4, two_sided=True)(v)))(c)
        np.testing.assert_allclose(approx, exact_vjp(g)[0], atol=1e-4)


def test_losses_on_socp(portfolio):
    """Fenchel–Young and the perturbed mean run on a conic (SOCP) decision problem too."""
    c = np.array([[-0.3, -0.1, 0.2, -0.25], [0.1, -0.2, -0.1, 0.0]])
    x_true = np.asarray(portfolio(c)[0])
    key = jax.random.key(4)
    loss = dfl.fenchel_young_loss(portfolio, 0.1, 8)
    grad = jax.grad(lambda ch: loss(key, ch, x_true).sum())(c + 0.1)
    mean = dfl.perturbed(portfolio, 0.1, 8)(key, c + 0.1)
    np.testing.assert_allclose(grad, x_true - mean, atol=1e-9)
    np.testing.assert_allclose(np.asarray(mean).sum(-1), 1.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Metrics and data
# ---------------------------------------------------------------------------------------------
def test_normalized_regret():
    c = np.array([[1.0, 2.0], [3.0, 1.0]])
    x_pred = np.array([[0.0, 1.0], [0.0, 1.0]])
    z = np.array([1.0, 1.0])
    # (2 − 1 + 1 − 1) / (1 + 1)
    np.testing.assert_allclose(dfl.normalized_regret(c, x_pred, z), 0.5)
    np.testing.assert_allclose(dfl.regret(c, x_pred, z), [1.0, 0.0])


def test_shortest_path_data_and_problem():
    features, costs = dfl.shortest_path_data(6, 5, degree=4, noise_width=0.5, seed=7)
    assert features.shape == (6, 5) and costs.shape == (6, 40) and np.all(costs > 0)
    again = dfl.shortest_path_data(6, 5, degree=4, noise_width=0.5, seed=7)
    np.testing.assert_array_equal(costs, again[1])
    problem, c, x = dfl.shortest_path_problem()
    bounded, c_b, x_b = dfl.shortest_path_problem(upper_bounds=True)
    edges = dfl.grid_edges()
    # Negative costs too (as in SPO+'s 2ĉ − c): x ≤ 1 is implied, both forms agree.
    for cost in (*costs[:2], costs[2] - 1.5):
        path = cvxpy_solution(problem, c, x, cost)
        np.testing.assert_allclose(path, cvxpy_solution(bounded, c_b, x_b, cost), atol=1e-6)
        assert np.allclose(path, np.round(path), atol=1e-6)  # a vertex: 0/1 flows
        chosen = edges[np.round(path).astype(bool)]
        assert len(chosen) == 8  # 4 steps right and 4 down on a 5×5 grid
        assert chosen[:, 0].tolist().count(0) == 1 and chosen[:, 1].tolist().count(24) == 1


def test_knapsack_data_and_problem():
    weights, capacities, features, values = dfl.knapsack_data(4, 3, 6, dim=2, degree=2, seed=1)
    assert weights.shape == (2, 6) and capacities.shape == (2,) and values.shape == (4, 6)
    problem, c, x = dfl.knapsack_problem(weights, capacities)
    solution = cvxpy_solution(problem, c, x, -values[0])
    assert np.all(weights @ solution <= capacities + 1e-6)
    assert np.all(solution >= -1e-8) and np.all(solution <= 1 + 1e-8)
