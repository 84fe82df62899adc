"""A safeguarded scalar Newton method used by the exponential and power cone projections."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def bracketed_newton(
    fun: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    lo: jax.Array,
    hi: jax.Array,
    x0: jax.Array,
    max_iters: int = 100,
) -> jax.Array:
    """Root of a scalar function with a sign change on ``[lo, hi]``.

    Args:
      fun: ``x -> (f(x), f'(x))``, scalar in, scalar pair out. ``f`` must be negative left
        of the root and positive right of it (only the sign is trusted; ``f'`` only steers).
      lo, hi: finite bracket, ``lo <= hi``.
      x0: starting point in ``[lo, hi]``.
      max_iters: hard cap on the number of evaluations (the loop is a ``lax.while_loop``).

    Returns:
      the root estimate, clipped to the final bracket.

    Each evaluation shrinks the bracket using the sign of ``f``. The next point is the Newton
    point if it lies in the bracket and is at most half as long a step as the previous one
    (an "rtsafe"-style rule, so slow Newton progress far from the root falls back to
    bisection), otherwise the midpoint: convergence is guaranteed, and quadratic near a simple
    root. Stops when the step or the bracket is at the dtype's resolution (relative to
    max(1, |x|)), or after ``max_iters`` evaluations. Not meant to be differentiated through:
    callers wrap it in a custom JVP.
    """
    dtype = jnp.result_type(x0)
    eps = jnp.finfo(dtype).eps

    def cond(state):
        it, lo, hi, x, _, done = state
        return jnp.logical_and(it < max_iters, jnp.logical_not(done))

    def body(state):
        it, lo, hi, x, dx_old, _ = state
        f, df = fun(x)
        lo = jnp.where(f <= 0, x, lo)
        hi = jnp.where(f >= 0, x, hi)
        newton = x - f / df
        use_newton = (
            jnp.isfinite(newton)
            & (df > 0)
            & (newton >= lo)
            & (newton <= hi)
            & (jnp.abs(newton - x) <= 0.5 * jnp.abs(dx_old))
        )
        x_new = jnp.where(use_newton, newton, 0.5 * (lo + hi))
        dx = x_new - x
        tol = 2 * eps * jnp.maximum(1.0, jnp.abs(x_new))
        done = (jnp.abs(dx) <= tol) | (hi - lo <= tol) | (f == 0)
        return it + 1, lo, hi, x_new, dx, done

    init = (jnp.asarray(0), lo, hi, x0, hi - lo, hi <= lo)
    _, lo, hi, x, _, _ = jax.lax.while_loop(cond, body, init)
    return jnp.clip(x, lo, hi)
