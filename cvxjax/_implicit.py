"""Implicit differentiation of roots and fixed points.

Let ``z*(θ)`` satisfy ``F(z*(θ), θ) = 0``. Differentiating the identity gives

    ∂₁F · dz* + ∂₂F · dθ = 0      ⇒      dz* = −(∂₁F)⁻¹ ∂₂F · dθ,

so the derivative of the solution needs only F at the solution, not the algorithm that found
it (Blondel et al., "Efficient and Modular Implicit Differentiation", 2022, eq. (2)).

We define the **JVP** (a ``jax.custom_jvp``): the tangent ``dz`` is the solution of the linear
system ``J dz = −∂₂F·dθ`` with ``J = ∂₁F(z*, θ)``, computed by
``jax.lax.custom_linear_solve``. That solve is a linear primitive whose transpose JAX knows
(a solve with ``Jᵀ``), so reverse mode follows by transposition:

    VJP:  θ̄ = −(∂₂F)ᵀ (Jᵀ)⁻¹ z̄,

which is exactly the adjoint method, without us writing it. Because the rule is a JVP, forward
mode (``jvp``, ``jacfwd``), reverse mode (``grad``, ``vjp``, ``jacrev``), ``vmap`` and second
order (``hessian`` = jacfwd of jacrev) all compose. A ``custom_vjp`` design cannot do forward
mode or second order.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ._linear_solve import LinearSolve, resolve_solve, transposable_solve


def _zero_tangent(x):
    """A zero tangent for ``x``: float0 for integer/bool leaves, as JAX requires."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


def _describe(tree) -> str:
    leaves = jax.tree_util.tree_leaves(tree)
    shapes = [tuple(getattr(l, "shape", ())) for l in leaves]
    return f"structure {jax.tree_util.tree_structure(tree)} with leaf shapes {shapes}"


def _check_square(optimality_fun, root, args, kwargs):
    """Raise a clear error unless F(root, ...) has the same pytree structure and shapes as root.

    The implicit function theorem needs ∂₁F to be square and maps tangents of F's output back
    onto tangents of the params, so the two pytrees must match leaf by leaf.
    """
    out = jax.eval_shape(lambda r: optimality_fun(r, *args, **kwargs), root)
    root_struct = jax.tree_util.tree_structure(root)
    out_struct = jax.tree_util.tree_structure(out)
    root_shapes = [tuple(jnp.shape(l)) for l in jax.tree_util.tree_leaves(root)]
    out_shapes = [tuple(l.shape) for l in jax.tree_util.tree_leaves(out)]
    if root_struct != out_struct or root_shapes != out_shapes:
        n_root = sum(int(np.prod(s)) for s in root_shapes)
        n_out = sum(int(np.prod(s)) for s in out_shapes)
        what = (
            f"it is not square: F has {n_out} outputs for {n_root} unknowns"
            if n_root != n_out
            else "their pytree structures differ"
        )
        raise ValueError(
            "The optimality function must return a pytree with the same structure and leaf "
            f"shapes as `params`, but {what}.\n  params: {_describe(root)}\n"
            f"  F(params, ...): {_describe(out)}"
        )


def _flat_operator(optimality_fun, root, args, kwargs):
    """``J = ∂₁F(root, args)`` as a matvec on flat vectors, plus the unravel function."""
    root_flat, unravel = ravel_pytree(root)

    def F_flat(z_flat):
        return ravel_pytree(optimality_fun(unravel(z_flat), *args, **kwargs))[0]

    def matvec(u):
        return jax.jvp(F_flat, (root_flat,), (u.astype(root_flat.dtype),))[1]

    return root_flat, unravel, matvec


def _bound_solve(linear_solve, args, kwargs):
    """``linear_solve.bind(*args, **kwargs)`` for a solver that needs this root's arguments
    (the degenerate-derivative flag of :mod:`cvxjax._degenerate`; a private protocol), else
    ``linear_solve``. Passing them here, instead of closing over them, keeps the JVP rule
    free of tracers from the caller's trace."""
    bind = getattr(linear_solve, "bind", None)
    return linear_solve if bind is None else bind(*args, **kwargs)


def root_jvp(
    optimality_fun: Callable,
    root: Any,
    args: tuple,
    tangents: tuple,
    solve: str | LinearSolve | None = None,
    kwargs: dict | None = None,
    kwargs_tangents: dict | None = None,
):
    """Tangent of the root ``z*(θ)`` of ``F(z, *args, **kwargs) = 0`` along ``tangents``.

    Computes ``dz = −J⁻¹ (∂₂F · dθ)`` with ``J = ∂₁F(root, θ)``.

    Args:
      optimality_fun: ``F(params, *args, **kwargs)``, returning a pytree like ``params``.
      root: the solution (a pytree); F(root, ...) ≈ 0.
      args: tuple of the positional arguments θ of F.
      tangents: tuple, same structure as ``args``: the input tangents dθ.
      solve: linear solver name or callable (see [`cvxjax.linear_solve`][cvxjax.linear_solve]); default ``"lu"``.
      kwargs: keyword arguments of F (a dict), or ``None``.
      kwargs_tangents: tangents of ``kwargs`` (default: zero).

    Returns:
      The tangent dz, a pytree like ``root``. It is linear and transposable in ``tangents``,
      so it can itself be differentiated or transposed by JAX.
    """
    kwargs = {} if kwargs is None else kwargs
    linear_solve = _bound_solve(resolve_solve(solve), args, kwargs)
    if kwargs_tangents is None:
        kwargs_tangents = jax.tree_util.tree_map(_zero_tangent, kwargs)
    root_flat, unravel, matvec = _flat_operator(optimality_fun, root, args, kwargs)

    def F_of_theta(args_, kwargs_):
        return ravel_pytree(optimality_fun(root, *args_, **kwargs_))[0]

    _, rhs = jax.jvp(F_of_theta, (tuple(args), kwargs), (tuple(tangents), kwargs_tangents))
    dz = transposable_solve(matvec, -rhs.astype(root_flat.dtype), linear_solve)
    return unravel(dz)


def root_vjp(
    optimality_fun: Callable,
    root: Any,
    args: tuple,
    cotangent: Any,
    solve: str | LinearSolve | None = None,
    kwargs: dict | None = None,
):
    """Cotangents of ``args`` for the cotangent ``z̄`` of the root (the adjoint method).

    Computes ``u = (Jᵀ)⁻¹ z̄`` and returns ``θ̄ = −(∂₂F)ᵀ u``. Equivalent to reverse mode
    through [`custom_root`][cvxjax.custom_root]; exposed for users assembling their own rules.

    Args:
      optimality_fun: as in [`root_jvp`][cvxjax.root_jvp].
      root: as in [`root_jvp`][cvxjax.root_jvp].
      args: as in [`root_jvp`][cvxjax.root_jvp].
      cotangent: pytree like ``root``.
      solve: as in [`root_jvp`][cvxjax.root_jvp].
      kwargs: as in [`root_jvp`][cvxjax.root_jvp].

    Returns:
      A tuple with one cotangent per element of ``args`` (and, if ``kwargs`` is given, a
      pair ``(args_cotangents, kwargs_cotangents)``).
    """
    kwargs_given = kwargs is not None
    kwargs = {} if kwargs is None else kwargs
    linear_solve = _bound_solve(resolve_solve(solve), args, kwargs)
    root_flat, unravel, matvec = _flat_operator(optimality_fun, root, args, kwargs)
    cot_flat = ravel_pytree(cotangent)[0].astype(root_flat.dtype)
    rmatvec_T = jax.linear_transpose(matvec, root_flat)
    u = linear_solve(lambda w: rmatvec_T(w)[0], cot_flat)

    def F_of_theta(args_, kwargs_):
        return ravel_pytree(optimality_fun(root, *args_, **kwargs_))[0]

    _, vjp_fun = jax.vjp(F_of_theta, tuple(args), kwargs)
    args_bar, kwargs_bar = vjp_fun(-u)
    return (args_bar, kwargs_bar) if kwargs_given else args_bar


def _implicit_solver(solver, optimality_fun, linear_solve, has_aux, name):
    @jax.custom_jvp
    def run(init_params, args, kwargs):
        return solver(init_params, *args, **kwargs)

    @run.defjvp
    def run_jvp(primals, tangents):
        init_params, args, kwargs = primals
        _, args_dot, kwargs_dot = tangents
        # Calling `run` (not `solver`) keeps higher-order derivatives implicit too.
        out = run(init_params, args, kwargs)
        if has_aux and not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ValueError(f"{name}: with has_aux=True the solver must return (params, aux).")
        root, aux = (out[0], out[1]) if has_aux else (out, None)
        _check_square(optimality_fun, root, args, kwargs)
        root_dot = root_jvp(optimality_fun, root, args, args_dot, linear_solve, kwargs, kwargs_dot)
        if has_aux:
            # aux is returned as is and treated as a constant (zero derivative).
            return out, (root_dot, jax.tree_util.tree_map(_zero_tangent, aux))
        return out, root_dot

    return run


def custom_root(
    optimality_fun: Callable,
    solve: str | LinearSolve | None = None,
    has_aux: bool = False,
):
    """Decorator: differentiate a root-finding solver with the implicit function theorem.

    The decorated ``solver(init_params, *args, **kwargs)`` must return ``params`` (or
    ``(params, aux)`` with ``has_aux=True``) such that
    ``optimality_fun(params, *args, **kwargs) = 0``. The result is differentiable with respect
    to ``args`` and ``kwargs`` (arbitrary pytrees) in forward and reverse mode, under ``jit``
    and ``vmap``, and to second order if ``optimality_fun`` is twice differentiable. The solver
    itself is never differentiated (it may use loops, callbacks, ``stop_gradient``, …);
    ``init_params`` and ``aux`` get zero derivatives.

    Args:
      optimality_fun: ``F(params, *args, **kwargs)`` returning a pytree with the structure of
        ``params``.
      solve: how to solve the linear system with ``J = ∂F/∂params``: ``"lu"`` (default; dense,
        exact), ``"lstsq"`` (dense, finite at singular J), ``"cg"`` (J symmetric positive
        definite), ``"gmres"``, ``"bicgstab"``, ``"normal_cg"``, or a callable
        ``solve(matvec, b) -> x`` acting on flat 1-D arrays.
      has_aux: whether the solver returns ``(params, aux)``.

    Example::

        def F(w, lam, X, y):               # ridge regression: ∇ of ½‖Xw − y‖² + ½λ‖w‖²
            return X.T @ (X @ w - y) + lam * w

        @cvxjax.custom_root(F)
        def ridge(init, lam, X, y):
            return jnp.linalg.solve(X.T @ X + lam * jnp.eye(X.shape[1]), X.T @ y)

        jax.grad(lambda lam: ridge(None, lam, X, y).sum())(1.0)
    """
    linear_solve = resolve_solve(solve)

    def decorator(solver):
        name = getattr(solver, "__name__", "solver")
        run = _implicit_solver(solver, optimality_fun, linear_solve, has_aux, name)

        @functools.wraps(solver)
        def wrapped(init_params, *args, **kwargs):
            return run(init_params, args, kwargs)

        return wrapped

    return decorator


def custom_fixed_point(
    fixed_point_fun: Callable,
    solve: str | LinearSolve | None = None,
    has_aux: bool = False,
):
    """Decorator like [`custom_root`][cvxjax.custom_root] for a solver returning a fixed point
    ``params = T(params, *args, **kwargs)``; uses ``F(z, θ) = T(z, θ) − z``."""

    def optimality_fun(params, *args, **kwargs):
        return jax.tree_util.tree_map(
            lambda t, p: t - p, fixed_point_fun(params, *args, **kwargs), params
        )

    return custom_root(optimality_fun, solve=solve, has_aux=has_aux)
