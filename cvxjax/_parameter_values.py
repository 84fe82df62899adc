"""Parameter values and warm starts as the layer receives them: checked, converted and
batched.

Every message names the parameter, the shape it expects and the shape it got (or what is
wrong with the value), eagerly; sign attributes are also checked inside a trace, where a
host callback raises the same message when the compiled program runs.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._solution_map import Solution, WarmStart


def check_values(parameters, values, positive: Sequence[bool]):
    """``(arrays, batch_axes, batch_size)`` for one call's parameter values.

    ``parameters``: the layer's ``cp.Parameter`` list; ``values``: one array-like per
    parameter, of the parameter's shape or with one leading batch axis (all batched ones of
    the same size); ``positive``: per parameter, whether it enters a geometric program as
    its logarithm (its value must then be positive). ``batch_axes[k]`` is 0 or ``None``;
    ``batch_size`` is ``None`` when nothing is batched. Raises ``ValueError``.
    """
    if len(values) != len(parameters):
        names = ", ".join(p.name() for p in parameters)
        raise ValueError(
            f"Expected {len(parameters)} parameter values ({names}), got {len(values)}."
        )
    arrays, batch_axes, batch_size = [], [], None
    for param, value, must_be_positive in zip(parameters, values, positive):
        array = _as_array(param, value)
        shape = tuple(param.shape)
        if tuple(array.shape) == shape:
            batch_axes.append(None)
        elif array.ndim == len(shape) + 1 and tuple(array.shape[1:]) == shape:
            if batch_size is not None and array.shape[0] != batch_size:
                raise ValueError(
                    f"Inconsistent batch sizes: parameter {param.name()!r} has batch size "
                    f"{array.shape[0]}, but an earlier parameter has {batch_size}."
                )
            batch_size = array.shape[0]
            batch_axes.append(0)
        else:
            raise ValueError(
                f"Parameter {param.name()!r} expects shape {shape} (or (batch,) + {shape}), "
                f"got {tuple(array.shape)}."
            )
        _check_attributes(param, array, must_be_positive)
        arrays.append(array)
    return arrays, batch_axes, batch_size


def _as_array(param, value):
    """A parameter value as a floating JAX array, or a ValueError naming the parameter."""
    if value is None:
        raise ValueError(
            f"Parameter {param.name()!r} got None; pass an array of shape {tuple(param.shape)} "
            f"(or (batch,) + {tuple(param.shape)})."
        )
    try:
        array = value if isinstance(value, jax.Array) else jnp.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"Parameter {param.name()!r} got a value of type {type(value).__name__} that is not "
            f"a numeric array: {err}"
        ) from None
    if jnp.issubdtype(array.dtype, jnp.complexfloating):
        raise ValueError(f"Parameter {param.name()!r} got a complex value; it must be real.")
    if not jnp.issubdtype(array.dtype, jnp.inexact):
        if not (jnp.issubdtype(array.dtype, jnp.integer) or array.dtype == jnp.bool_):
            raise ValueError(
                f"Parameter {param.name()!r} got a value of dtype {array.dtype}, not a number."
            )
        array = array.astype(jnp.result_type(float))
    return array


# Sign attributes and the test a value must pass (symmetry is not tested: see _check_attributes).
_SIGN_CHECKS = {
    "nonneg": ("has negative entries", lambda v: v >= 0),
    "nonpos": ("has positive entries", lambda v: v <= 0),
    "pos": ("has entries that are not positive", lambda v: v > 0),
    "neg": ("has entries that are not negative", lambda v: v < 0),
}


def _check_attributes(param, array, positive=False):
    """Check the sign attributes of a value, eagerly or (traced) when the compiled program runs.

    ``nonneg``, ``nonpos``, ``pos``, ``neg`` (and ``positive``: a positive parameter of a
    geometric program, which enters as its logarithm) are checked on concrete values with a
    ``ValueError``, and inside a trace by a host callback that raises the same message, which
    JAX re-raises as ``jax.errors.JaxRuntimeError`` (as :func:`cvxjax._errors.raise_if_failed` does).

    Symmetric / PSD / NSD parameters are not checked: their values are used through their
    symmetric part (Θ + Θᵀ)/2, eagerly and under ``jit`` alike (``CanonicalProblem.data``),
    so the gradient is the symmetric one and any perturbation of Θ is a valid input.
    Positive semidefiniteness is not checked either (an eigenvalue test per call).
    """
    checks = [(a, *_SIGN_CHECKS[a]) for a in _SIGN_CHECKS if param.attributes.get(a)]
    if positive and not param.attributes.get("pos"):
        checks.append(("pos", *_SIGN_CHECKS["pos"]))
    for attr, what, ok in checks:
        message = f"Parameter {param.name()!r} is {attr}, but its value {what}."
        if attr == "pos" and positive:
            message = (
                f"Parameter {param.name()!r} of a geometric program (gp=True) must be "
                f"positive (it enters as its logarithm), but its value {what}."
            )
        if not isinstance(array, jax.core.Tracer):
            if not np.all(ok(np.asarray(array))):
                raise ValueError(message)
            continue

        def throw(bad, message=message):
            if np.any(bad):
                raise ValueError(message)

        bad = jnp.any(~ok(array))
        jax.lax.cond(bad, lambda bad=bad, throw=throw: jax.debug.callback(throw, bad), lambda: None)


def check_warm_start(warm_start, solver_name: str, n: int, m: int, batch_size, dtype):
    """The checked start and its vmap axis (None: shared by the batch), or
    ``(None, "absent")`` (a string: as a cache key 0 and False would be the same).

    ``warm_start``: ``None``, a ``Solution`` or a ``WarmStart``; ``n``, ``m``: the sizes of
    the program the solver ``solver_name`` consumes; ``batch_size``: that of the parameter
    values (``None``: unbatched). Raises ``TypeError`` / ``ValueError`` naming the field.
    """
    if warm_start is None:
        return None, "absent"
    if isinstance(warm_start, Solution):
        warm_start = warm_start.warm_start
    if not isinstance(warm_start, WarmStart):
        raise TypeError(
            "warm_start must be a cvxjax.Solution or cvxjax.WarmStart from an earlier "
            f"call, got {type(warm_start).__name__}."
        )
    arrays = [jnp.asarray(a) for a in warm_start]
    lead = arrays[0].shape[:-1]
    expected = {"x": n, "y": m, "s": m}
    for (name, size), a in zip(expected.items(), arrays):
        if a.shape[-1:] != (size,) or a.shape[:-1] != lead or len(lead) > 1:
            raise ValueError(
                f"warm_start.{name} has shape {a.shape}, but solver {solver_name} on this "
                f"layer needs ({size},) or (batch, {size}) (a start from another layer, "
                "or from a call that ran another solver?)."
            )
    if lead and (batch_size is None or lead[0] != batch_size):
        raise ValueError(
            f"warm_start has batch size {lead[0]}, but the parameter values have "
            f"{'no batch axis' if batch_size is None else f'batch size {batch_size}'}."
        )
    return WarmStart(*(a.astype(dtype) for a in arrays)), (0 if lead else None)
