"""A catalogue of optimality conditions to use with [`cvxjax.custom_root`][cvxjax.custom_root] and
[`cvxjax.custom_fixed_point`][cvxjax.custom_fixed_point].

Each factory returns a function of ``(params, *args)`` that is zero (for ``*_fun`` roots) or
equal to ``params`` (for fixed-point maps ``T``) exactly at the solution. Conventions: the
objective is ``fun(x, fun_params)``; a proximal operator is ``prox(y, prox_params, step)``;
a projection is ``projection(y, proj_params)``; gradients are taken with respect to ``x``.

==========================  ======================================================
factory                     condition
==========================  ======================================================
``stationarity``            ``F(x, θ) = ∇ₓ f(x, θ) = 0``
``kkt``                     ``∇ₓL = 0``, ``h(x) = 0``, ``λ ∘ g(x) = 0`` (λ ≥ 0, g ≤ 0)
``proximal_gradient``       ``x = prox_{ηg}(x − η∇f(x))``
``projected_gradient``      ``x = Π_C(x − η∇f(x))``
``mirror_descent``          ``x = Π^φ_C(∇φ(x) − η∇f(x))``
``newton``                  ``x = x − (∇²f(x))⁻¹ ∇f(x)``
==========================  ======================================================
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

__all__ = [
    "stationarity",
    "kkt",
    "proximal_gradient",
    "projected_gradient",
    "mirror_descent",
    "newton",
    "soft_threshold",
    "projection_simplex",
]


def _axpy(a, x, y):
    return jax.tree_util.tree_map(lambda xi, yi: a * xi + yi, x, y)


def stationarity(fun: Callable) -> Callable:
    """``F(x, *args) = ∇ₓ fun(x, *args)``: unconstrained minimizers of a smooth ``fun``.

    Its Jacobian ``∂₁F`` is the Hessian, symmetric (positive definite for strictly convex
    ``fun``), so ``solve="cg"`` applies.
    """
    return jax.grad(fun, argnums=0)


def kkt(
    fun: Callable,
    eq_fun: Optional[Callable] = None,
    ineq_fun: Optional[Callable] = None,
) -> Callable:
    """KKT conditions of ``min_x f(x, θ_f) s.t. h(x, θ_h) = 0, g(x, θ_g) ≤ 0``.

    ``params = (x, μ, λ)`` (use ``None`` for absent constraint kinds), with Lagrangian
    ``L = f + μᵀh + λᵀg``. Returns ``F(params, θ_f, θ_h, θ_g)`` with components

    * stationarity ``∇ₓL = ∇f + ∂hᵀμ + ∂gᵀλ``,
    * primal feasibility ``h(x)``,
    * complementary slackness ``λ ∘ g(x)``

    (primal/dual inequality feasibility is the solver's job; at a strictly complementary
    solution these equations determine the derivative). Pass ``None`` as θ for absent parts.
    """

    def optimality_fun(params, fun_params, eq_params=None, ineq_params=None):
        x, mu, lam = params

        def lagrangian(x_):
            value = fun(x_, fun_params)
            if eq_fun is not None:
                value = value + jnp.vdot(mu, eq_fun(x_, eq_params))
            if ineq_fun is not None:
                value = value + jnp.vdot(lam, ineq_fun(x_, ineq_params))
            return value

        grad_x = jax.grad(lagrangian)(x)
        eq_res = None if eq_fun is None else eq_fun(x, eq_params)
        ineq_res = None if ineq_fun is None else lam * ineq_fun(x, ineq_params)
        return grad_x, eq_res, ineq_res

    return optimality_fun


def proximal_gradient(fun: Callable, prox: Callable, step_size: float = 1.0) -> Callable:
    """Fixed-point map ``T(x, θ_f, θ_g) = prox(x − η∇f(x, θ_f), θ_g, η)`` of
    ``min f(x, θ_f) + g(x, θ_g)``, for ``custom_fixed_point``.

    Any ``η > 0`` gives the same fixed points; the derivative is exact for any η but the
    conditioning of ``I − ∂T`` is best for η ≈ 1/L.
    """
    grad = jax.grad(fun, argnums=0)

    def fixed_point_fun(x, fun_params, prox_params):
        y = _axpy(-step_size, grad(x, fun_params), x)
        return prox(y, prox_params, step_size)

    return fixed_point_fun


def projected_gradient(fun: Callable, projection: Callable, step_size: float = 1.0) -> Callable:
    """Fixed-point map ``T(x, θ_f, θ_C) = Π_C(x − η∇f(x, θ_f), θ_C)`` of
    ``min_{x ∈ C(θ_C)} f(x, θ_f)``."""

    def prox(y, proj_params, _step):
        return projection(y, proj_params)

    return proximal_gradient(fun, prox, step_size)


def mirror_descent(
    fun: Callable,
    mirror_map: Callable,
    mirror_projection: Callable,
    step_size: float = 1.0,
) -> Callable:
    """Fixed-point map of mirror descent ``T(x, θ_f, θ_C) = P(∇φ(x) − η∇f(x, θ_f), θ_C)``.

    ``mirror_map`` is ``∇φ`` and ``mirror_projection`` the Bregman projection applied in the
    dual space, ``P(u) = argmin_{z ∈ C} φ(z) − ⟨u, z⟩``. For the negative entropy on the simplex
    (KL geometry): ``∇φ = log`` and ``P = softmax``, i.e. the exponentiated-gradient step
    ``x ← x ∘ exp(−η∇f) / Σ``.
    """
    grad = jax.grad(fun, argnums=0)

    def fixed_point_fun(x, fun_params, proj_params):
        u = _axpy(-step_size, grad(x, fun_params), mirror_map(x))
        return mirror_projection(u, proj_params)

    return fixed_point_fun


def newton(fun: Callable) -> Callable:
    """Fixed-point map of Newton's method ``T(x, θ) = x − (∇²f)⁻¹∇f``, for ``custom_fixed_point``.

    Same fixed points as [`stationarity`][cvxjax.optimality.stationarity]; its residual ``T(x) − x`` has Jacobian ``−I``
    at the solution, so the linear system of the implicit derivative is trivial and the work
    moves into ∂₂T (which contains the Hessian solve).
    """

    def fixed_point_fun(x, *args):
        x_flat, unravel = ravel_pytree(x)
        f_flat = lambda z: fun(unravel(z), *args)
        g = jax.grad(f_flat)(x_flat)
        H = jax.hessian(f_flat)(x_flat)
        return unravel(x_flat - jnp.linalg.solve(H, g))

    return fixed_point_fun


def soft_threshold(y, l1_strength, step_size=1.0):
    """Proximal operator of ``λ‖x‖₁`` (for [`proximal_gradient`][cvxjax.optimality.proximal_gradient]): ``sign(y)·max(|y| − ηλ, 0)``."""
    return jnp.sign(y) * jnp.maximum(jnp.abs(y) - step_size * l1_strength, 0.0)


def projection_simplex(y, scale=1.0):
    """Euclidean projection onto ``{x ≥ 0 : Σx = scale}`` (for [`projected_gradient`][cvxjax.optimality.projected_gradient]).

    Sort-based (Held et al. / Duchi et al. 2008): ``x = max(y − τ, 0)`` with τ the threshold
    that makes the sum equal to ``scale``. Differentiable almost everywhere.

    Args:
      y: (..., k) array; every row along the last axis is projected independently.
      scale: the simplex's total (a scalar).
    """
    if y.ndim > 1:
        # Rows are independent: project each (a leading batch of any rank) by vmap.
        flat = y.reshape(-1, y.shape[-1])
        return jax.vmap(lambda row: projection_simplex(row, scale))(flat).reshape(y.shape)
    n = y.shape[-1]
    u = jnp.sort(y)[::-1]
    css = jnp.cumsum(u) - scale
    ks = jnp.arange(1, n + 1, dtype=y.dtype)
    support = u - css / ks > 0
    rho = jnp.max(jnp.where(support, jnp.arange(n), 0))
    tau = css[rho] / (rho + 1).astype(y.dtype)
    return jnp.maximum(y - tau, 0.0)
