"""Residuals of the homogeneous embedding and the termination tests of the interior-point loop.

The residuals are those of the embedding of :mod:`._ipm` at the iterate ``(x, z, s, τ, κ)``,
in equilibrated units (:mod:`._equilibrate`).

**Termination** (``tol`` relative; ``ξ = x/τ``, ``ζ = z/τ``, ``σ = s/τ`` in original units):

* solved:  ``‖Aξ + σ − b‖∞ ≤ tol·(1 + max(‖b‖∞, ‖Aξ‖∞, ‖σ‖∞))``,
  ``‖Pξ + q + Aᵀζ‖∞ ≤ tol·(1 + max(‖q‖∞, ‖Pξ‖∞, ‖Aᵀζ‖∞))`` and
  ``|f_p − f_d| ≤ tol·max(1, min(|f_p|, |f_d|))`` with ``f_p = ½ξᵀPξ + qᵀξ`` and
  ``f_d = −½ξᵀPξ − bᵀζ``;
* primal infeasible:  ``bᵀz < 0`` and ``‖Aᵀz‖∞ ≤ tol_inf·|bᵀz|``;
* dual infeasible (unbounded):  ``qᵀx < 0`` and ``max(‖Px‖∞, ‖Ax + s‖∞) ≤ tol_inf·|qᵀx|``
  (``s ≥ 0`` on inequality rows and ``s = 0`` on equality rows, so this bounds ``A_E x`` and
  the positive part of ``A_I x``);
* numerical error: the new iterate is not finite (the last finite iterate is returned);
* max iterations: none of the above after ``max_iter`` iterations (the last iterate is
  returned).

The certificate tests are applied to the (unit-norm) iterate itself in equilibrated units, with
``tol_inf = max(tol, δ)`` (δ ≈ √eps, the static regularization of :mod:`._kkt`): they involve
cancellations (``Aᵀz ≈ 0`` from ``z`` that the regularized solves can make ≈ 1/δ larger than
the data) that cannot be resolved more finely. In the HSDE the iterates of an infeasible problem converge to such a certificate
with τ → 0 instead of diverging, which is what makes this test reliable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp

if TYPE_CHECKING:
    from ._ipm import _State
    from ._kkt import _Data

SOLVED = 0
MAX_ITER = 1
PRIMAL_INFEASIBLE = 2
DUAL_INFEASIBLE = 3
NUMERICAL_ERROR = 4
_RUNNING = -1


class _Residuals(NamedTuple):
    rx: jax.Array  # P x + Aᵀ z + q τ
    rz: jax.Array  # A x + s − b τ
    rtau: jax.Array  # qᵀx + bᵀz + κ + xᵀPx/τ
    Px: jax.Array
    Ax: jax.Array
    Atz: jax.Array
    xPx: jax.Array
    qx: jax.Array
    bz: jax.Array


def _residuals(data: _Data, st: _State) -> _Residuals:
    Px = data.P @ st.x
    Ax = data.A @ st.x
    Atz = data.A.T @ st.z
    # P is PSD, but a computed xᵀPx along a (near-)null direction of P can be a negative
    # rounding error; in the τ-row it is divided by τ → 0 (infeasible problems), where a negative
    # value would let qᵀx > 0 balance it and steer x to a certificate of the wrong sign.
    xPx = jnp.maximum(st.x @ Px, 0.0)
    qx = data.q @ st.x
    bz = data.b @ st.z
    return _Residuals(
        rx=Px + Atz + data.q * st.tau,
        rz=Ax + st.s - data.b * st.tau,
        rtau=qx + bz + st.kappa + xPx / st.tau,
        Px=Px,
        Ax=Ax,
        Atz=Atz,
        xPx=xPx,
        qx=qx,
        bz=bz,
    )


def _status(data: _Data, st: _State, r: _Residuals, scal, norms, tol, tol_inf):
    """Termination test of the current iterate (see the module docstring).

    Returns (status int32, finite bool): ``finite`` is False if the iterate or its residuals
    contain inf/NaN (every entry enters one of the norms below, which propagate them)."""
    col, row, c = scal
    q_norm, b_norm = norms
    tau = st.tau
    # All ∞-norms in two reductions (one over m-vectors, one over n-vectors): every reduction
    # is a separate kernel (two on CPU), which costs both run time and compile time.
    # Original units: x = col·x̂, s = ŝ/row, y = row·ẑ/c; residual rows scale likewise.
    nm = jnp.max(
        jnp.abs(jnp.stack([r.rz / row, r.Ax / row, st.s / row, r.Ax + st.s, st.z])),
        axis=1,
        initial=0.0,
    )
    nn = jnp.max(
        jnp.abs(jnp.stack([r.rx / col, r.Px / col, r.Atz / col, r.Atz, r.Px, st.x])),
        axis=1,
        initial=0.0,
    )
    pres = nm[0] / tau
    dres = nn[0] / (c * tau)
    pnorm = jnp.maximum(b_norm, jnp.maximum(nm[1], nm[2]) / tau)
    dnorm = jnp.maximum(q_norm, jnp.maximum(nn[1], nn[2]) / (c * tau))
    f_p = (0.5 * r.xPx / tau**2 + r.qx / tau) / c
    f_d = (-0.5 * r.xPx / tau**2 - r.bz / tau) / c
    solved = (
        (pres <= tol * (1.0 + pnorm))
        & (dres <= tol * (1.0 + dnorm))
        & (jnp.abs(f_p - f_d) <= tol * jnp.maximum(1.0, jnp.minimum(jnp.abs(f_p), jnp.abs(f_d))))
    )
    # Certificates are checked on the (unit max-norm) homogeneous iterate itself, not on x/τ,
    # in equilibrated units (where the data are O(1), so that an absolute threshold makes sense).
    tiny = jnp.finfo(tau.dtype).tiny
    primal_inf = (r.bz < -tiny) & (nn[3] <= tol_inf * (-r.bz))
    dual_inf = (r.qx < -tiny) & (jnp.maximum(nn[4], nm[3]) <= tol_inf * (-r.qx))
    status = jnp.where(
        solved,
        SOLVED,
        jnp.where(primal_inf, PRIMAL_INFEASIBLE, jnp.where(dual_inf, DUAL_INFEASIBLE, _RUNNING)),
    )
    finite = jnp.isfinite(jnp.sum(nm) + jnp.sum(nn) + r.rtau + tau + st.kappa)
    return status.astype(jnp.int32), finite
