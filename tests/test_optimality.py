"""The optimality-condition catalogue, each on a problem with a known answer.

References: closed forms (lasso on its support, equality-constrained QP, ridge) or float64
central finite differences of an accurate solve (simplex-constrained problems).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd_jacobian

import cvxjax
from cvxjax import optimality

RNG = np.random.default_rng(1)


def test_stationarity_logistic_regression_vs_fd():
    X = jnp.asarray(RNG.normal(size=(30, 3)))
    y = jnp.asarray((RNG.uniform(size=30) > 0.5).astype(float))

    def loss(w, lam):
        z = X @ w
        return jnp.sum(jnp.logaddexp(0.0, z) - y * z) + 0.5 * lam * jnp.sum(w**2)

    F = optimality.stationarity(loss)

    @jax.jit
    def newton_solve(init, lam):
        w = jnp.zeros(3)
        for _ in range(30):
            w = w - jnp.linalg.solve(jax.hessian(loss)(w, lam), jax.grad(loss)(w, lam))
        return w

    solver = cvxjax.custom_root(F, solve="cg")(newton_solve)
    lam = 0.8
    fd = central_fd_jacobian(lambda l: newton_solve(None, float(l)), np.array(lam))
    np.testing.assert_allclose(jax.jacfwd(lambda l: solver(None, l))(lam), fd, rtol=1e-6)
    np.testing.assert_allclose(jax.jacrev(lambda l: solver(None, l))(lam), fd, rtol=1e-6)


def _lasso_problem():
    X = jnp.asarray(RNG.normal(size=(40, 8)))
    w_true = jnp.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    y = X @ w_true + 0.1 * jnp.asarray(RNG.normal(size=40))
    return X, y


def test_proximal_gradient_lasso_closed_form_on_support():
    X, y = _lasso_problem()
    f = lambda w, data: 0.5 * jnp.sum((data[0] @ w - data[1]) ** 2)
    step = 1.0 / float(jnp.linalg.norm(X, 2) ** 2)
    T = optimality.proximal_gradient(f, optimality.soft_threshold, step_size=step)

    @cvxjax.custom_fixed_point(T)
    def ista(init, data, lam):
        def body(_, w):
            return T(w, data, lam)

        return jax.lax.fori_loop(0, 5000, body, jnp.zeros(8))

    lam = 5.0
    w = ista(None, (X, y), lam)
    support = np.abs(np.asarray(w)) > 1e-8
    assert 0 < support.sum() < 8
    XS = X[:, support]
    # On the support: XSᵀ(XS wS − y) + λ sign(wS) = 0 ⇒ dwS/dλ = −(XSᵀXS)⁻¹ sign(wS), 0 off it.
    expected = np.zeros(8)
    expected[support] = -np.linalg.solve(XS.T @ XS, np.sign(np.asarray(w)[support]))
    np.testing.assert_allclose(
        jax.jacfwd(lambda l: ista(None, (X, y), l))(lam), expected, atol=1e-7
    )
    np.testing.assert_allclose(
        jax.jacrev(lambda l: ista(None, (X, y), l))(lam), expected, atol=1e-7
    )
    # Derivative w.r.t. y on the support: (XSᵀXS)⁻¹XSᵀ.
    jac_y = jax.jit(jax.jacrev(lambda yy: ista(None, (X, yy), lam)))(y)
    expected_y = np.zeros((8, 40))
    expected_y[support] = np.linalg.solve(XS.T @ XS, XS.T)
    np.testing.assert_allclose(jac_y, expected_y, atol=1e-7)


def _simplex_problem():
    # min ½‖x − c‖²_D + ⟨θ, x⟩ over the simplex; D diagonal so the solution is interior-ish.
    d = jnp.array([1.0, 2.0, 3.0, 1.5, 2.5])
    c = jnp.array([0.3, 0.1, 0.25, 0.2, 0.4])
    f = lambda x, theta: 0.5 * jnp.sum(d * (x - c) ** 2) + jnp.dot(theta, x)
    return f


def test_projected_gradient_simplex_vs_fd():
    f = _simplex_problem()
    T = optimality.projected_gradient(f, optimality.projection_simplex, step_size=0.2)

    @jax.jit
    def pgd(init, theta, scale):
        return jax.lax.fori_loop(0, 2000, lambda _, x: T(x, theta, scale), jnp.full(5, 0.2))

    solver = cvxjax.custom_fixed_point(T)(pgd)
    theta = jnp.array([0.05, -0.02, 0.0, 0.1, 0.03])
    x = solver(None, theta, 1.0)
    assert abs(float(x.sum()) - 1.0) < 1e-10 and float(x.min()) > 1e-3  # interior: smooth
    fd = central_fd_jacobian(lambda t: pgd(None, jnp.asarray(t), 1.0), np.asarray(theta))
    np.testing.assert_allclose(jax.jacfwd(lambda t: solver(None, t, 1.0))(theta), fd, atol=1e-7)
    np.testing.assert_allclose(jax.jacrev(lambda t: solver(None, t, 1.0))(theta), fd, atol=1e-7)
    fd_scale = central_fd_jacobian(lambda s: pgd(None, theta, float(s)), np.array(1.0))
    np.testing.assert_allclose(
        jax.grad(lambda s: solver(None, theta, s)[0])(1.0), fd_scale[0], atol=1e-7
    )


def test_mirror_descent_kl_simplex_vs_fd():
    f = _simplex_problem()
    T = optimality.mirror_descent(
        f, mirror_map=jnp.log, mirror_projection=lambda u, _: jax.nn.softmax(u), step_size=0.3
    )

    @jax.jit
    def exponentiated_gradient(init, theta, _):
        return jax.lax.fori_loop(0, 3000, lambda _, x: T(x, theta, None), jnp.full(5, 0.2))

    solver = cvxjax.custom_fixed_point(T)(exponentiated_gradient)
    theta = jnp.array([0.05, -0.02, 0.0, 0.1, 0.03])
    fd = central_fd_jacobian(
        lambda t: exponentiated_gradient(None, jnp.asarray(t), None), np.asarray(theta)
    )
    np.testing.assert_allclose(jax.jacfwd(lambda t: solver(None, t, None))(theta), fd, atol=1e-6)
    np.testing.assert_allclose(jax.jacrev(lambda t: solver(None, t, None))(theta), fd, atol=1e-6)
    # Both geometries find the same minimizer, hence the same derivative.
    T_pg = optimality.projected_gradient(f, optimality.projection_simplex, step_size=0.2)
    x_pg = jax.lax.fori_loop(0, 2000, lambda _, x: T_pg(x, theta, 1.0), jnp.full(5, 0.2))
    np.testing.assert_allclose(solver(None, theta, None), x_pg, atol=1e-8)


def test_kkt_qp_closed_form():
    """min ½xᵀQx + pᵀx s.t. Ax = b, Gx ≤ h with one active inequality (treated as equality)."""
    Q = jnp.array([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 1.5]])
    A = jnp.array([[1.0, 1.0, 1.0]])
    G = jnp.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    h = jnp.array([0.1, 5.0])
    f = lambda x, p: 0.5 * x @ Q @ x + p @ x
    eq = lambda x, b: A @ x - b
    ineq = lambda x, h: G @ x - h
    F = optimality.kkt(f, eq, ineq)

    def solve_active(p, b, h):
        # Active set {inequality 0}: the KKT system is linear.
        Aact = jnp.concatenate([A, G[:1]])
        bact = jnp.concatenate([b, h[:1]])
        K = jnp.block([[Q, Aact.T], [Aact, jnp.zeros((2, 2))]])
        z = jnp.linalg.solve(K, jnp.concatenate([-p, bact]))
        return z[:3], z[3:4], jnp.array([z[4], 0.0])

    solver = cvxjax.custom_root(F)(lambda init, p, b, h: solve_active(p, b, h))
    p = jnp.array([-1.0, 0.3, 0.2])
    b = jnp.array([1.0])
    x, mu, lam = solver(None, p, b, h)
    assert float(lam[0]) > 1e-3 and float((G @ x - h)[1]) < -1e-3  # strictly complementary
    argnums = (0, 1, 2)
    got_f = jax.jit(jax.jacfwd(lambda *a: solver(None, *a)[0], argnums=argnums))(p, b, h)
    got_r = jax.jit(jax.jacrev(lambda *a: solver(None, *a)[0], argnums=argnums))(p, b, h)
    ref = jax.jacfwd(lambda *a: solve_active(*a)[0], argnums=argnums)(p, b, h)
    for gf, gr, r in zip(got_f, got_r, ref):
        np.testing.assert_allclose(gf, r, atol=1e-10)
        np.testing.assert_allclose(gr, r, atol=1e-10)


def test_newton_fixed_point_matches_stationarity():
    X = jnp.asarray(RNG.normal(size=(20, 3)))
    y = jnp.asarray(RNG.normal(size=20))
    f = lambda w, lam: (
        0.5 * jnp.sum((X @ w - y) ** 2) + 0.25 * lam * jnp.sum(w**4) + 0.5 * jnp.sum(w**2)
    )

    @jax.jit
    def solve(init, lam):
        w = jnp.zeros(3)
        for _ in range(25):
            w = w - jnp.linalg.solve(jax.hessian(f)(w, lam), jax.grad(f)(w, lam))
        return w

    newton_solver = cvxjax.custom_fixed_point(optimality.newton(f))(solve)
    stat_solver = cvxjax.custom_root(optimality.stationarity(f))(solve)
    fd = central_fd_jacobian(lambda l: solve(None, float(l)), np.array(0.7))
    np.testing.assert_allclose(jax.jacrev(lambda l: newton_solver(None, l))(0.7), fd, rtol=1e-6)
    np.testing.assert_allclose(jax.jacfwd(lambda l: stat_solver(None, l))(0.7), fd, rtol=1e-6)


@pytest.mark.parametrize(
    "y", [jnp.array([0.5, 0.2, -0.1]), jnp.array([3.0, -1.0, 0.0]), jnp.array([0.1, 0.1, 0.1])]
)
def test_projection_simplex_matches_cvxpy(y):
    import cvxpy as cp

    x = cp.Variable(3)
    cp.Problem(cp.Minimize(cp.sum_squares(x - np.asarray(y))), [x >= 0, cp.sum(x) == 1]).solve(
        solver=cp.CLARABEL
    )
    np.testing.assert_allclose(optimality.projection_simplex(y), x.value, atol=1e-7)


def test_projection_simplex_projects_each_row_of_a_batch():
    rows = jnp.array([[0.5, 0.2, -0.1], [3.0, -1.0, 0.0], [0.1, 0.1, 0.1], [2.0, 2.0, -5.0]])
    batch = rows.reshape(2, 2, 3)
    expected = jnp.stack([optimality.projection_simplex(r, 2.0) for r in rows]).reshape(2, 2, 3)
    np.testing.assert_allclose(optimality.projection_simplex(batch, 2.0), expected, atol=1e-12)
    np.testing.assert_allclose(optimality.projection_simplex(batch, 2.0).sum(-1), 2.0, atol=1e-12)
