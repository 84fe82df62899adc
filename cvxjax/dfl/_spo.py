"""SPO+ (Elmachtoub & Grigas, "Smart 'Predict, then Optimize'", Management Science 2022)."""

import jax.numpy as jnp

from ._common import decide


def spo_plus(layer, c_pred, c_true, x_true, *other_params):
    r"""Per-example SPO+ loss of a predicted cost, for ``min_{x ∈ X} cᵀx``.

    With x*(c) the layer's solution and z*(c) = cᵀx*(c) (use ``x_true = x*(c_true)``),

    $$
    \ell_{\mathrm{SPO+}}(\hat c, c) = -\min_{x \in X}\,(2\hat c - c)^\top x
        + 2\hat c^\top x^\star(c) - z^\star(c)
        = \max_{x\in X} (c - 2\hat c)^\top x + 2\hat c^\top x^\star(c) - z^\star(c),
    $$

    a convex upper bound of the regret cᵀx*(ĉ) − z*(c) (Elmachtoub & Grigas, written for
    minimization). It is ≥ 0 and zero at ĉ = c when x*(c) is unique.

    Gradient: by Danskin's theorem a subgradient in ĉ is 2(x*(c) − x*(2ĉ − c)); this is what
    ``jax.grad`` / ``jax.vjp`` / ``jax.jvp`` return, from one extra solve at 2ĉ − c and no
    derivative of the layer (an LP's exact derivative is zero almost everywhere). The loss is
    written so that autodiff of ordinary JAX produces that subgradient: the inner minimizer
    enters as a constant (``stop_gradient``), which is exactly Danskin's rule. In c_true the
    gradient is x*(2ĉ − c) − x*(c) and in x_true it is 2ĉ − c; ``other_params`` (the
    feasible set X) are treated as constants (zero gradient).

    Args:
      layer: a [`CvxpyLayer`][cvxjax.CvxpyLayer] whose first parameter is the linear cost c
        and whose first output is the decision x (or any callable with that convention).
      c_pred: predicted cost ĉ, shape ``(n,)`` or ``(B, n)``.
      c_true: true cost c, same shape.
      x_true: x*(c_true), same shape (precomputed once per data set).
      *other_params: the layer's remaining parameter values (unbatched or batched ``(B, ...)``).

    Returns:
      The loss per example: shape ``()`` or ``(B,)``. Works under ``jit`` and ``vmap``.
    """
    c_pred, c_true, x_true = (jnp.asarray(a) for a in (c_pred, c_true, x_true))
    shifted = 2 * c_pred - c_true
    x_shifted = decide(layer, shifted, *other_params)
    # −min_x (2ĉ−c)ᵀx with the minimizer frozen: its ĉ-gradient is −2 x*(2ĉ−c) (Danskin).
    return (
        -jnp.sum(shifted * x_shifted, axis=-1)
        + 2 * jnp.sum(c_pred * x_true, axis=-1)
        - jnp.sum(c_true * x_true, axis=-1)
    )
