"""Quickstart: a CVXPY problem as a differentiable JAX function.

1. Write a parametrized (DPP) CVXPY problem: a constrained least-squares / QP layer.
2. Compile it once into a `cvxjax.CvxpyLayer`.
3. jit it, batch it, take gradients (reverse mode) and a Jacobian (forward mode), and check
   them against central finite differences.
4. The implicit-differentiation core on its own: differentiate a hand-written lasso solver.
"""

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np

import cvxjax
from cvxjax import CvxpyLayer, optimality

jax.config.update("jax_enable_x64", True)  # the demo compares with finite differences


def layer_demo(rng):
    n, m = 6, 4
    x = cp.Variable(n)
    A = cp.Parameter((10, n))
    b = cp.Parameter(10)
    G = np.vstack([np.eye(n), -np.eye(n)])[:m]
    h = cp.Parameter(m)
    constraints = [G @ x <= h, cp.sum(x) == 1]
    problem = cp.Problem(
        cp.Minimize(cp.sum_squares(A @ x - b) + 0.1 * cp.sum_squares(x)), constraints
    )
    layer = CvxpyLayer(
        problem, parameters=[A, b, h], variables=[x, constraints[0].dual_variables[0]]
    )

    A_val = jnp.asarray(rng.normal(size=(10, n)))
    b_val = jnp.asarray(rng.normal(size=10))
    h_val = jnp.asarray([-0.6, 0.0, 1.0, 1.0])  # the first two bounds are active

    solve = jax.jit(lambda A, b, h: layer(A, b, h))
    x_star, dual = solve(A_val, b_val, h_val)
    A.value, b.value, h.value = map(np.asarray, (A_val, b_val, h_val))
    problem.solve(solver=cp.CLARABEL)
    print("x*            :", np.round(np.asarray(x_star), 5))
    print("|x* - cvxpy|  :", f"{np.abs(np.asarray(x_star) - x.value).max():.2e}")
    print("inequality duals:", np.round(np.asarray(dual), 5))

    # Reverse mode: gradient of a scalar loss w.r.t. all parameters.
    loss = lambda A, b, h: jnp.sum(layer(A, b, h)[0] ** 2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(A_val, b_val, h_val)
    # Forward mode: the full Jacobian dx*/dh.
    jac_h = jax.jit(jax.jacfwd(lambda h: layer(A_val, b_val, h)[0]))(h_val)

    eps = 1e-5
    fd_h = np.stack(
        [
            (
                np.asarray(solve(A_val, b_val, h_val + eps * e)[0])
                - np.asarray(solve(A_val, b_val, h_val - eps * e)[0])
            )
            / (2 * eps)
            for e in np.eye(m)
        ],
        axis=1,
    )
    fd_b = np.array(
        [
            (loss(A_val, b_val.at[i].add(eps), h_val) - loss(A_val, b_val.at[i].add(-eps), h_val))
            / (2 * eps)
            for i in range(10)
        ]
    )
    err_jac = np.abs(np.asarray(jac_h) - fd_h).max()
    err_grad = np.abs(np.asarray(grads[1]) - fd_b).max()
    print(f"dx*/dh (jacfwd) vs finite differences: max error {err_jac:.2e}")
    print(f"dloss/db (grad)  vs finite differences: max error {err_grad:.2e}")
    assert err_jac < 1e-5 and err_grad < 1e-5

    # A batch of 8 problems in one call (leading batch dimension on b; A and h broadcast).
    b_batch = jnp.asarray(rng.normal(size=(8, 10)))
    xs = layer(A_val, b_batch, h_val)[0]
    print("batched solve :", xs.shape, "all feasible:", bool(jnp.all(xs @ G.T <= h_val + 1e-7)))


def core_demo(rng):
    X = jnp.asarray(rng.normal(size=(50, 10)))
    w_true = jnp.zeros(10).at[:3].set(jnp.array([1.5, -2.0, 1.0]))
    y = X @ w_true + 0.1 * jnp.asarray(rng.normal(size=50))
    loss = lambda w, data: 0.5 * jnp.sum((data[0] @ w - data[1]) ** 2)
    step = 1.0 / float(jnp.linalg.norm(X, 2) ** 2)
    T = optimality.proximal_gradient(loss, optimality.soft_threshold, step_size=step)

    @jax.jit
    @cvxjax.custom_fixed_point(T)
    def lasso(init, data, lam):  # ISTA: a loop JAX never differentiates
        return jax.lax.fori_loop(0, 3000, lambda _, w: T(w, data, lam), init)

    lam, eps = 4.0, 1e-5
    dw = jax.jacfwd(lambda l: lasso(jnp.zeros(10), (X, y), l))(lam)
    fd = (lasso(jnp.zeros(10), (X, y), lam + eps) - lasso(jnp.zeros(10), (X, y), lam - eps)) / (
        2 * eps
    )
    err = float(jnp.max(jnp.abs(dw - fd)))
    print(f"lasso dw/dλ via custom_fixed_point vs finite differences: max error {err:.2e}")
    assert err < 1e-6


def main():
    rng = np.random.default_rng(0)
    print("== CvxpyLayer ==")
    layer_demo(rng)
    print("== implicit-differentiation core ==")
    core_demo(rng)
    print("OK: solutions match CVXPY and derivatives match finite differences.")


if __name__ == "__main__":
    main()
