"""Smoothed decision layers: quadratic regularization (exact implicit derivative) and LPGD."""

import cvxpy as cp
import jax
import jax.numpy as jnp


def quadratic_smoothing(problem, parameters, variables, temperature, **layer_kwargs):
    r"""A [`CvxpyLayer`][cvxjax.CvxpyLayer] for the problem with a quadratic regularizer added.

    For ``problem`` = min_{x ∈ X} f(x) (typically f(x) = cᵀx, an LP) the new layer solves

    $$
    x^\star_\gamma(c) = \arg\min_{x\in X}\ f(x) + \frac{\gamma}{2}\lVert x\rVert_2^2 ,
    \qquad \gamma = \text{temperature} > 0,
    $$

    (Wilder, Dilkina & Tambe, "Melding the Data-Decisions Pipeline", AAAI 2019). The problem
    is now a strongly convex QP: x*_γ is unique and piecewise affine in c with a nonzero
    Jacobian (on the face where the solution lies, ∂x*/∂c = −(1/γ) × the projector onto the
    tangent space of the active constraints), and the layer returns that *exact* implicit
    derivative (forward and reverse mode). As γ → 0 the solution tends to an optimal vertex;
    larger γ gives smoother, more informative but more biased decisions.

    Args:
      problem: a DPP ``cvxpy.Problem`` (``Minimize`` or ``Maximize``; a maximization of g
        becomes the minimization of −g + (γ/2)‖x‖²).
      parameters: its parameters, in call order (the linear cost first, by the convention of
        ``cvxjax.dfl``).
      variables: the layer's outputs; the first one is the decision x that is regularized
        (a ``cp.Variable`` of the problem).
      temperature: γ > 0 (a Python float; fixed at construction).
      **layer_kwargs: passed to [`CvxpyLayer`][cvxjax.CvxpyLayer] (``solver``, ``on_failure``, ...).

    Returns:
      A new ``CvxpyLayer``; the original problem is not modified.
    """
    # Imported here, not at module level: cvxjax/__init__.py imports this subpackage, and the
    # public name is the one that survives internal reorganizations.
    from cvxjax import CvxpyLayer

    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}.")
    decision = variables[0]
    if not isinstance(decision, cp.Variable):
        raise TypeError("The first output must be the decision variable (a cp.Variable).")
    objective = problem.objective
    expr = objective.expr if isinstance(objective, cp.Minimize) else -objective.expr
    regularized = cp.Problem(
        cp.Minimize(expr + (float(temperature) / 2) * cp.sum_squares(decision)),
        problem.constraints,
    )
    return CvxpyLayer(regularized, parameters=parameters, variables=variables, **layer_kwargs)


def lpgd(layer, tau, two_sided=False):
    r"""Lagrangian proximal gradient descent (Paulus et al., 2024) as a derivative mode.

    Returns ``f(c, *other_params) -> x*(c)``: the forward pass is the layer's solution; the
    reverse-mode derivative for an incoming cotangent g = ∂ℓ/∂x is replaced by a finite
    difference of solutions along g,

    $$
    \widehat{\nabla_c \ell} = \frac{x^\star(c + \tau g) - x^\star(c)}{\tau}
    \quad\text{or, two-sided,}\quad
    \frac{x^\star(c + \tau g) - x^\star(c - \tau g)}{2\tau}.
    $$

    For min cᵀx the solution map is the gradient of the concave value function
    z*(c) = min_x cᵀx, so where it is differentiable its Jacobian J is symmetric and
    Jᵀg = Jg: the finite difference along g *is* the vector–Jacobian product as τ → 0. For an
    LP (J = 0 almost everywhere) a finite τ instead measures how the decision moves when the
    cost is pushed by τg — informative where the exact derivative is zero: its negative is the
    direction x*(c + τg) − x*(c) in which ℓ decreases (to first order gᵀ(x*(c+τg) − x*(c)) ≤ 0).

    Reverse mode only (``jax.custom_vjp``): ``grad``, ``vjp``, ``jacrev`` work, under ``jit``
    and ``vmap``; forward mode (``jvp``) is not defined. ``other_params`` get a zero cotangent.

    Args:
      layer: a [`CvxpyLayer`][cvxjax.CvxpyLayer] (linear cost first, decision first); an LP
        layer or a smoothed one from [`quadratic_smoothing`][cvxjax.dfl.quadratic_smoothing].
      tau: step τ > 0 (a Python float). The cotangent g's scale matters: τg is a cost change.
      two_sided: use the central difference (one more solve per backward pass).

    Shapes: ``c`` is ``(n,)`` or ``(B, n)``; the output has c's shape.
    """
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}.")
    tau = float(tau)

    def solve(c, other_params):
        return layer(c, *other_params)[0]

    @jax.custom_vjp
    def f(c, *other_params):
        return solve(c, other_params)

    def f_fwd(c, *other_params):
        x = solve(c, other_params)
        return x, (c, x, other_params)

    def f_bwd(residuals, g):
        c, x, other_params = residuals
        g = g.astype(c.dtype)
        upper = solve(c + tau * g, other_params)
        if two_sided:
            grad_c = (upper - solve(c - tau * g, other_params)) / (2 * tau)
        else:
            grad_c = (upper - x) / tau
        return (grad_c, *jax.tree.map(jnp.zeros_like, other_params))

    f.defvjp(f_fwd, f_bwd)
    return f
