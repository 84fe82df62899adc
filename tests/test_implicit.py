"""The implicit-differentiation core: custom_root, custom_fixed_point, root_jvp, root_vjp.

Ground truth is the closed-form ridge solution w(λ, X, y) = (XᵀX + λI)⁻¹Xᵀy, differentiated by
ordinary JAX autodiff of the closed form (which never sees the implicit rule).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cvxjax
from cvxjax.linear_solve import solve_gmres

RNG = np.random.default_rng(0)
X = jnp.asarray(RNG.normal(size=(15, 4)))
Y = jnp.asarray(RNG.normal(size=15))


def ridge_closed(lam, X, y):
    return jnp.linalg.solve(X.T @ X + lam * jnp.eye(X.shape[1]), X.T @ y)


def ridge_F(w, lam, X, y):
    return X.T @ (X @ w - y) + lam * w


def ridge_iterative(init, lam, X, y):
    """Gradient descent in a while_loop: not differentiable by itself (it is never asked to be)."""
    L = jnp.linalg.norm(X, 2) ** 2 + lam
    w0 = jnp.zeros(X.shape[1]) if init is None else init

    def body(w):
        return w - ridge_F(w, lam, X, y) / L

    return jax.lax.fori_loop(0, 3000, lambda i, w: body(w), w0)


SOLVES = [
    "lu",
    "lstsq",
    "cg",
    "gmres",
    "bicgstab",
    "normal_cg",
    functools.partial(solve_gmres, tol=1e-12),
]


@pytest.mark.parametrize("solve", SOLVES, ids=lambda s: s if isinstance(s, str) else "callable")
def test_forward_and_reverse_match_closed_form(solve):
    solver = cvxjax.custom_root(ridge_F, solve=solve)(ridge_iterative)
    lam = 0.7
    f = lambda lam, X, y: solver(None, lam, X, y)
    np.testing.assert_allclose(f(lam, X, Y), ridge_closed(lam, X, Y), rtol=1e-8)
    argnums = (0, 1, 2)
    expected = jax.jacfwd(ridge_closed, argnums=argnums)(lam, X, Y)
    forward = jax.jit(jax.jacfwd(f, argnums=argnums))(lam, X, Y)
    reverse = jax.jit(jax.jacrev(f, argnums=argnums))(lam, X, Y)
    for e, fw, rv in zip(expected, forward, reverse):
        np.testing.assert_allclose(fw, e, atol=1e-7)
        np.testing.assert_allclose(rv, e, atol=1e-7)


def test_jvp_vjp_jit_vmap_and_hessian():
    solver = cvxjax.custom_root(ridge_F)(ridge_iterative)
    f = jax.jit(lambda lam, y: solver(None, lam, X, y))
    g = lambda lam, y: ridge_closed(lam, X, y)
    dy = jnp.asarray(RNG.normal(size=15))
    out, tan = jax.jvp(f, (0.5, Y), (1.0, dy))
    out_ref, tan_ref = jax.jvp(g, (0.5, Y), (1.0, dy))
    np.testing.assert_allclose(out, out_ref, rtol=1e-8)
    np.testing.assert_allclose(tan, tan_ref, rtol=1e-7)
    ct = jnp.arange(4.0)
    _, vjp = jax.vjp(f, 0.5, Y)
    _, vjp_ref = jax.vjp(g, 0.5, Y)
    for a, b in zip(vjp(ct), vjp_ref(ct)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-12)
    lams = jnp.array([0.1, 1.0, 3.0])
    np.testing.assert_allclose(
        jax.vmap(jax.grad(lambda l: f(l, Y).sum()))(lams),
        jax.vmap(jax.grad(lambda l: g(l, Y).sum()))(lams),
        rtol=1e-7,
    )
    Ys = jnp.stack([Y, 2 * Y])
    np.testing.assert_allclose(
        jax.vmap(jax.jacfwd(f, argnums=1), in_axes=(None, 0))(0.5, Ys),
        jax.vmap(jax.jacfwd(g, argnums=1), in_axes=(None, 0))(0.5, Ys),
        atol=1e-9,
    )
    # Second order: forward-over-reverse and reverse-over-forward.
    h = jax.hessian(lambda l: jnp.sum(f(l, Y) ** 2))(0.5)
    h_ref = jax.hessian(lambda l: jnp.sum(g(l, Y) ** 2))(0.5)
    np.testing.assert_allclose(h, h_ref, rtol=1e-6)
    h2 = jax.jacrev(jax.jacfwd(lambda l: jnp.sum(f(l, Y) ** 3)))(0.5)
    h2_ref = jax.jacrev(jax.jacfwd(lambda l: jnp.sum(g(l, Y) ** 3)))(0.5)
    np.testing.assert_allclose(h2, h2_ref, rtol=1e-6)


def test_pytrees_kwargs_aux_and_init_params():
    def F(params, hyper, data):
        w, b = params["w"], params["b"]
        r = data["X"] @ w + b - data["y"]
        return {"w": data["X"].T @ r + hyper[0] * w, "b": jnp.sum(r) + hyper[1] * b}

    def closed(hyper, data):
        X1 = jnp.concatenate([data["X"], jnp.ones((data["X"].shape[0], 1))], axis=1)
        reg = jnp.diag(jnp.concatenate([jnp.full(4, hyper[0]), hyper[1][None]]))
        z = jnp.linalg.solve(X1.T @ X1 + reg, X1.T @ data["y"])
        return {"w": z[:4], "b": z[4]}

    @cvxjax.custom_root(F, has_aux=True)
    def solver(init, hyper, data, scale=1.0):
        sol = closed(hyper, jax.lax.stop_gradient(data))
        return sol, {"iters": jnp.array(7), "scale": scale}

    hyper = (jnp.array(0.3), jnp.array(0.2))
    data = {"X": X, "y": Y}
    init = {"w": jnp.ones(4), "b": jnp.array(1.0)}
    (sol, aux) = solver(init, hyper, data)
    assert int(aux["iters"]) == 7
    jac = jax.jacrev(lambda h, d: solver(init, h, d)[0], argnums=(0, 1))(hyper, data)
    jac_ref = jax.jacrev(closed, argnums=(0, 1))(hyper, data)
    for a, b in zip(jax.tree_util.tree_leaves(jac), jax.tree_util.tree_leaves(jac_ref)):
        np.testing.assert_allclose(a, b, atol=1e-9)
    # init_params gets a zero derivative.
    g_init = jax.grad(lambda i: solver(i, hyper, data)[0]["b"])(init)
    assert all(float(jnp.abs(l).max()) == 0.0 for l in jax.tree_util.tree_leaves(g_init))
    # Keyword arguments are accepted (F does not use `scale`, so it has zero effect).
    F_kw = lambda p, h, d, scale=1.0: F(p, h, d)
    solver_kw = cvxjax.custom_root(F_kw)(lambda i, h, d, scale=1.0: closed(h, d))
    g = jax.grad(lambda s: solver_kw(None, hyper, data, scale=s)["b"])(2.0)
    assert float(g) == 0.0


def test_integer_args_are_allowed():
    def F(w, lam, X, y, n_iter):
        return ridge_F(w, lam, X, y)

    solver = cvxjax.custom_root(F)(lambda init, lam, X, y, n_iter: ridge_closed(lam, X, y))
    grad = jax.grad(lambda lam: solver(None, lam, X, Y, 10).sum())(1.0)
    np.testing.assert_allclose(
        grad, jax.grad(lambda l: ridge_closed(l, X, Y).sum())(1.0), rtol=1e-8
    )


def test_custom_fixed_point_gradient_step():
    step = 1.0 / (jnp.linalg.norm(X, 2) ** 2 + 1.0)
    T = lambda w, lam, X, y: w - step * ridge_F(w, lam, X, y)
    solver = cvxjax.custom_fixed_point(T)(ridge_iterative)
    np.testing.assert_allclose(
        jax.jacrev(lambda l: solver(None, l, X, Y))(0.4),
        jax.jacfwd(ridge_closed)(0.4, X, Y),
        atol=1e-8,
    )
    np.testing.assert_allclose(
        jax.jacfwd(lambda y: solver(None, 0.4, X, y))(Y),
        jax.jacfwd(ridge_closed, argnums=2)(0.4, X, Y),
        atol=1e-8,
    )


def test_root_jvp_and_root_vjp_directly():
    lam = 0.9
    w = ridge_closed(lam, X, Y)
    dX = jnp.asarray(RNG.normal(size=X.shape))
    tangent = cvxjax.root_jvp(ridge_F, w, (lam, X, Y), (0.0, dX, jnp.zeros(15)))
    _, ref = jax.jvp(lambda X_: ridge_closed(lam, X_, Y), (X,), (dX,))
    np.testing.assert_allclose(tangent, ref, atol=1e-10)
    ct = jnp.array([1.0, -2.0, 0.5, 0.0])
    lam_bar, X_bar, y_bar = cvxjax.root_vjp(ridge_F, w, (lam, X, Y), ct)
    ref_bar = jax.vjp(ridge_closed, lam, X, Y)[1](ct)
    for a, b in zip((lam_bar, X_bar, y_bar), ref_bar):
        np.testing.assert_allclose(a, b, atol=1e-10)


def test_theorem_1_jacobian_error_is_linear_in_solution_error():
    """Blondel et al. Thm 1: ‖J(ẑ) − J(z*)‖ ≤ C‖ẑ − z*‖ for an approximate root ẑ."""
    lam = 0.5
    w_star = ridge_closed(lam, X, Y)
    J_star = jax.jacfwd(ridge_closed, argnums=2)(lam, X, Y)
    direction = jnp.asarray(RNG.normal(size=4))
    errors = []
    deltas = [1e-1, 1e-2, 1e-3, 1e-4]
    for delta in deltas:
        w_hat = w_star + delta * direction
        # The Jacobian w.r.t. X depends on the root (∂₂F depends on w), so it is perturbed.
        jac_hat = jax.vmap(
            lambda e: cvxjax.root_jvp(ridge_F, w_hat, (lam, X, Y), (0.0, jnp.zeros_like(X), e))
        )(jnp.eye(15)).T
        jac_X_hat = jax.vmap(
            lambda E: cvxjax.root_jvp(ridge_F, w_hat, (lam, X, Y), (0.0, E, jnp.zeros(15))),
        )(jnp.eye(60).reshape(60, 15, 4))
        jac_X_star = jax.jacfwd(ridge_closed, argnums=1)(lam, X, Y).reshape(4, 60).T
        np.testing.assert_allclose(jac_hat, J_star, atol=1e-10)  # ∂₂F w.r.t. y: no w-dependence
        errors.append(float(jnp.linalg.norm(jac_X_hat - jac_X_star)))
    errors = np.array(errors)
    ratios = errors / np.array(deltas)
    assert np.all(errors[1:] < errors[:-1])
    # Linear, not better and not worse: error/δ is (nearly) constant.
    assert ratios.max() / ratios.min() < 1.5, ratios


def test_bad_input_errors():
    with pytest.raises(ValueError, match="Unknown linear solver 'qr'"):
        cvxjax.custom_root(ridge_F, solve="qr")
    with pytest.raises(ValueError, match="must be a solver name"):
        cvxjax.custom_root(ridge_F, solve=3)

    non_square = lambda w, lam: jnp.concatenate([w, w])
    solver = cvxjax.custom_root(non_square)(lambda init, lam: jnp.zeros(3) + lam)
    with pytest.raises(ValueError, match="not square: F has 6 outputs for 3 unknowns"):
        jax.grad(lambda lam: solver(None, lam).sum())(1.0)

    wrong_tree = lambda p, lam: (p["a"], p["b"])
    solver = cvxjax.custom_root(wrong_tree)(lambda init, lam: {"a": lam, "b": lam})
    with pytest.raises(ValueError, match="pytree structures differ"):
        jax.jacfwd(lambda lam: solver(None, lam)["a"])(1.0)

    aux_solver = cvxjax.custom_root(ridge_F, has_aux=True)(lambda i, l, X, y: ridge_closed(l, X, y))
    with pytest.raises(ValueError, match="has_aux=True"):
        jax.grad(lambda l: aux_solver(None, l, X, Y)[0].sum())(1.0)
