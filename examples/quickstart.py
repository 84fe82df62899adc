"""Quickstart: differentiate through a solver with cvxjax's implicit-differentiation core.

Lasso regression solved by proximal gradient (ISTA), a loop JAX never differentiates;
cvxjax.custom_fixed_point gives exact derivatives of the solution with respect to the
regularization strength and the data, which we check against central finite differences.
"""

import jax
import jax.numpy as jnp
import numpy as np

import cvxjax
from cvxjax import optimality

jax.config.update("jax_enable_x64", True)  # the demo compares with finite differences


def main():
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(50, 10)))
    w_true = jnp.zeros(10).at[:3].set(jnp.array([1.5, -2.0, 1.0]))
    y = X @ w_true + 0.1 * jnp.asarray(rng.normal(size=50))

    loss = lambda w, data: 0.5 * jnp.sum((data[0] @ w - data[1]) ** 2)
    step = 1.0 / float(jnp.linalg.norm(X, 2) ** 2)
    T = optimality.proximal_gradient(loss, optimality.soft_threshold, step_size=step)

    @jax.jit
    @cvxjax.custom_fixed_point(T)
    def lasso(init, data, lam):
        return jax.lax.fori_loop(0, 3000, lambda _, w: T(w, data, lam), init)

    lam = 4.0
    w = lasso(jnp.zeros(10), (X, y), lam)
    print("lasso solution:", np.round(np.asarray(w), 4))

    dw_dlam_fwd = jax.jacfwd(lambda l: lasso(jnp.zeros(10), (X, y), l))(lam)
    dw_dlam_rev = jax.jacrev(lambda l: lasso(jnp.zeros(10), (X, y), l))(lam)
    eps = 1e-5
    fd = (lasso(jnp.zeros(10), (X, y), lam + eps) - lasso(jnp.zeros(10), (X, y), lam - eps)) / (2 * eps)
    print("dw/dλ  (jvp):", np.round(np.asarray(dw_dlam_fwd), 5))
    print("max |jvp - finite diff| =", float(jnp.max(jnp.abs(dw_dlam_fwd - fd))))
    print("max |vjp - finite diff| =", float(jnp.max(jnp.abs(dw_dlam_rev - fd))))
    assert jnp.allclose(dw_dlam_fwd, fd, atol=1e-6) and jnp.allclose(dw_dlam_rev, fd, atol=1e-6)

    # Gradient of a validation loss w.r.t. the training targets: a bilevel gradient.
    X_val = jnp.asarray(rng.normal(size=(20, 10)))
    y_val = X_val @ w_true
    val_loss = lambda yy: 0.5 * jnp.sum((X_val @ lasso(jnp.zeros(10), (X, yy), lam) - y_val) ** 2)
    g = jax.grad(val_loss)(y)
    fd_g = np.array([(val_loss(y.at[i].add(eps)) - val_loss(y.at[i].add(-eps))) / (2 * eps) for i in range(5)])
    print("d val_loss / d y[:5] :", np.round(np.asarray(g[:5]), 5), " finite diff:", np.round(fd_g, 5))
    assert np.allclose(g[:5], fd_g, atol=1e-5)
    print("OK: implicit derivatives match finite differences.")


if __name__ == "__main__":
    main()
