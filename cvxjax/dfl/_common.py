"""Shared helpers: the convention that the layer's first parameter is the linear cost c and its
first output the decision x."""

import jax


def decide(layer, c, *other_params):
    """x*(c) = argmin_{x ∈ X(other)} cᵀx from ``layer``'s first output, as a constant.

    Every input is wrapped in ``stop_gradient`` so that no transformation ever reaches the
    layer's own (for an LP: zero) derivative, nor compiles its implicit backward pass. The
    surrogate gradients of this subpackage are written from solutions alone.

    Shapes: ``c`` is ``(n,)`` or ``(B, n)`` (the layer's batching); the result has its shape.
    """
    values = jax.tree.map(jax.lax.stop_gradient, (c, *other_params))
    return jax.lax.stop_gradient(layer(*values)[0])
