"""Decision-quality metrics."""

import jax.numpy as jnp


def regret(c_true, x_pred, z_true):
    """Per-example regret c_trueᵀx_pred − z*(c_true) (≥ 0 for feasible x_pred, minimization).

    Shapes: ``c_true``, ``x_pred`` ``(..., n)``, ``z_true`` ``(...)``; returns ``(...)``.
    """
    return jnp.sum(jnp.asarray(c_true) * jnp.asarray(x_pred), axis=-1) - jnp.asarray(z_true)


def normalized_regret(c_true, x_pred, z_true):
    r"""Normalized regret over a data set, as in PyEPO:

    $$
    \frac{\sum_i c_i^\top \hat x_i - z^\star(c_i)}{\sum_i \lvert z^\star(c_i)\rvert}.
    $$

    Args:
      c_true: true costs, ``(N, n)``.
      x_pred: decisions taken with the predicted costs, x*(ĉ_i), ``(N, n)``.
      z_true: optimal values z*(c_i) = c_iᵀx*(c_i), ``(N,)``.

    Returns:
      A scalar (0 = every decision optimal).
    """
    return jnp.sum(regret(c_true, x_pred, z_true)) / jnp.sum(jnp.abs(jnp.asarray(z_true)))
