"""Perturbed optimizers and Fenchel–Young losses (Berthet et al., "Learning with
Differentiable Perturbed Optimizers", NeurIPS 2020), for minimization."""

import jax
import jax.numpy as jnp

from ._common import decide


def _check(sigma, num_samples):
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma!r}.")
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}.")


def _sample_noise(key, c, num_samples):
    """Z ~ N(0, I), shape ``(M,) + c.shape``, in c's dtype."""
    dtype = jnp.result_type(c, float)
    return jax.random.normal(key, (num_samples,) + jnp.shape(c), dtype=dtype)


def _perturbed_solutions(layer, c, noise, sigma, other_params):
    """x*(c + σZ_m) for every sample, shape ``(M,) + c.shape``: one vmapped layer call, so the
    M (× B) solves are one batched program (a single host callback, or one pure-JAX solve)."""
    return jax.vmap(lambda z: decide(layer, c + sigma * z, *other_params))(noise)


def perturbed(layer, sigma, num_samples):
    r"""The perturbed optimizer x_σ(c) = E_Z[x*(c + σZ)], Z ~ N(0, I), with its Jacobian.

    Returns ``f(key, c, *other_params) -> x`` computing the Monte-Carlo mean over
    ``num_samples`` draws (``key`` a ``jax.random`` key, so the result is reproducible).
    Unlike x*(c), x_σ is smooth in c; by Stein's lemma (Gaussian integration by parts)

    $$
    \partial_c\, x_\sigma(c) = \frac{1}{\sigma}\,\mathbb E\big[x^\star(c+\sigma Z)\,Z^\top\big]
        \approx \frac{1}{\sigma M}\sum_{m=1}^M x^\star(c+\sigma Z_m)\, Z_m^\top ,
    $$

    which ``f`` uses as its derivative, with the same draws Z_m as the value. It is a
    ``custom_jvp`` whose tangent is linear in ċ, so JAX transposes it: ``jvp``, ``vjp``,
    ``grad``, ``jacfwd`` and ``jacrev`` all work, under ``jit`` and ``vmap``. The layer's own
    derivative is never used. ``other_params`` are treated as constants (zero derivative).

    Args:
      layer: a [`CvxpyLayer`][cvxjax.CvxpyLayer] with the linear cost as first parameter and the
        decision as first output.
      sigma: noise scale σ > 0 (a Python float; larger = smoother, more biased).
      num_samples: number M of Monte-Carlo draws (the estimate's error is O(1/√M)).

    Shapes: ``c`` is ``(n,)`` or ``(B, n)``; the result has c's shape. The M·B solves go to
    the layer as one batch.
    """
    _check(sigma, num_samples)
    sigma = float(sigma)
    num_samples = int(num_samples)

    @jax.custom_jvp
    def _mean(c, noise, *other_params):
        return jnp.mean(_perturbed_solutions(layer, c, noise, sigma, other_params), axis=0)

    @_mean.defjvp
    def _mean_jvp(primals, tangents):
        c, noise, *other_params = primals
        c_dot = tangents[0]
        solutions = _perturbed_solutions(layer, c, noise, sigma, other_params)
        # (1/σM) Σ_m x_m (Z_mᵀ ċ): per example, Z_mᵀċ contracts the decision axis (last).
        projected = jnp.sum(noise * c_dot, axis=-1, keepdims=True)
        tangent = jnp.mean(solutions * projected, axis=0) / sigma
        return jnp.mean(solutions, axis=0), tangent

    def f(key, c, *other_params):
        c = jnp.asarray(c)
        if not jnp.issubdtype(c.dtype, jnp.inexact):
            c = c.astype(jnp.result_type(float))
        return _mean(c, _sample_noise(key, c, num_samples), *other_params)

    return f


def fenchel_young_loss(layer, sigma, num_samples):
    r"""The perturbed Fenchel–Young loss for ``min_{x ∈ X} cᵀx``, per example.

    Returns ``loss(key, c_pred, x_true, *other_params)``. For minimization (θ = −c in Berthet
    et al.), with Z ~ N(0, I) and F_σ(c) = E[min_x (c + σZ)ᵀx] (concave, smooth),

    $$
    L(\hat c; x) = \hat c^\top x - F_\sigma(\hat c) + \text{const}(x)
       \approx \frac1M \sum_{m=1}^M (\hat c + \sigma Z_m)^\top\big(x - x^\star(\hat c + \sigma Z_m)\big),
    $$

    $$
    \nabla_{\hat c} L = x - \mathbb E\big[x^\star(\hat c + \sigma Z)\big] = x - x_\sigma(\hat c).
    $$

    The Monte-Carlo form on the right is what is computed (E[Z] = 0 makes the σZᵀx term vanish in
    expectation; keeping it makes every sample's term ≥ 0 when x is feasible, and lowers the
    variance). The constant Ω(x) of the exact Fenchel–Young loss does not depend on ĉ and is
    left out, so the value is a shifted loss, ≥ 0 for feasible x. The gradient is exact for
    the sampled draws: the minimizers enter as constants (Danskin's theorem), so no
    derivative of the layer is used. ``other_params`` are treated as constants.

    Args:
      layer: a [`CvxpyLayer`][cvxjax.CvxpyLayer] (linear cost first, decision first).
      sigma: noise scale σ > 0.
      num_samples: Monte-Carlo draws M per example.

    Shapes: ``c_pred`` and ``x_true`` are ``(n,)`` or ``(B, n)``; the loss is ``()`` or ``(B,)``.
    """
    _check(sigma, num_samples)
    sigma = float(sigma)
    num_samples = int(num_samples)

    def loss(key, c_pred, x_true, *other_params):
        c_pred = jnp.asarray(c_pred)
        if not jnp.issubdtype(c_pred.dtype, jnp.inexact):
            c_pred = c_pred.astype(jnp.result_type(float))
        noise = _sample_noise(key, c_pred, num_samples)
        perturbed_costs = c_pred + sigma * jax.lax.stop_gradient(noise)
        solutions = _perturbed_solutions(layer, c_pred, noise, sigma, other_params)
        gaps = jnp.sum(perturbed_costs * (x_true - solutions), axis=-1)
        return jnp.mean(gaps, axis=0)

    return loss
