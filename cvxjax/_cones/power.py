"""The 3-dimensional power cone ``K_α = {(x, y, z) : x ≥ 0, y ≥ 0, x^α y^(1−α) ≥ |z|}``.

For 0 < α < 1. Its dual is ``K_α* = {(u, v, w) : u, v ≥ 0, (u/α)^α (v/(1−α))^(1−α) ≥ |w|}``,
i.e. ``(u, v, w) ∈ K_α* ⇔ (u/α, v/(1−α), w) ∈ K_α``; the polar is ``K° = −K*``.

Projection (L. T. K. Hien, "Differential properties of Euclidean projection onto power
cone", Math. Meth. Oper. Res. 2015)
-----------------------------------------------------------------------------------------
Write v0 = (x0, y0, z0), ζ = |z0|. Closed-form cases: v0 ∈ K (answer v0), v0 ∈ K° (answer 0),
and z0 = 0 otherwise (answer (x0⁺, y0⁺, 0)). Otherwise the projection p = (x, y, σr),
σ = sign(z0), 0 < r < ζ, is on the smooth part of ∂K where g(p) = σz − x^α y^(1−α) = 0. The
stationarity condition ``p − v0 + λ∇g(p) = 0`` reads, with ``x^α y^(1−α) = r``:

    z:  σr − z0 + λσ = 0          ⇒  λ = ζ − r  (≥ 0)
    x:  x − x0 − λ α r / x = 0     ⇒  x(r) = ½ (x0 + √(x0² + 4 α r (ζ − r)))
    y:  likewise with 1 − α        ⇒  y(r) = ½ (y0 + √(y0² + 4 (1−α) r (ζ − r)))

(the positive roots of the quadratics), leaving the scalar equation
``Φ(r) = x(r)^α y(r)^(1−α) − r = 0``, which has a unique root in (0, ζ), with Φ > 0 to its
left and Φ < 0 to its right. We solve the equivalent ``ψ(r) = α log x + (1−α) log y − log r
= 0`` (better scaled) with a safeguarded Newton method. x and y depend on r only through
``rλ = r(ζ − r)``, and the root can be extremely close to either end of (0, ζ) (near K° and
near K respectively), so the unknown is the *smaller* of r and λ, searched on a log scale
(see ``_solve``). When x0 < 0, x(r) is evaluated as ``2αrλ/(√(…) − x0)`` to avoid
cancellation.

Derivative (custom JVP)
-----------------------
v0 ∈ K: I; v0 ∈ K°: 0; z0 = 0 case: diag(1[x0>0], 1[y0>0], 0). In the smooth case the
KKT system ``p − v0 + λ∇g = 0, g(p) = 0`` differentiates to

    DΠ = W − (W∇g)(W∇g)ᵀ / (∇gᵀ W ∇g),      W = (I + λ∇²g)^{-1},

with ``∇g = (−αr/x, −(1−α)r/y, σ)`` and ``∇²g = α(1−α) r q qᵀ``, ``q = (1/x, −1/y, 0)``
(rank one, PSD since g is convex), evaluated without cancellation as described in
:mod:`._kkt` (finite everywhere; where x and y both underflow to 0 the computed projection is
the apex and DΠ = 0 is used). The exponent α is treated as a constant (no derivative in α).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import Cone
from ._kkt import projection_jacobian
from ._rootfind import bracketed_newton


def _branch(r, lam, c0, beta):
    """x = ½(c0 + √(c0² + 4β r λ)) and dx/d(rλ); the positive root of x² − c0 x − βrλ = 0.

    Evaluated without cancellation for c0 < 0 (as 2βrλ/(√(…) − c0)) and without forming the
    product rλ, which can underflow (float32) although x itself is representable.
    """
    sq = jnp.hypot(c0, 2 * jnp.sqrt(beta * r) * jnp.sqrt(lam))
    neg = c0 < 0
    x = jnp.where(neg, (2 * beta * r / jnp.where(neg, sq - c0, 1.0)) * lam, 0.5 * (c0 + sq))
    dx = beta / jnp.where(sq > 0, sq, 1.0)
    return x, dx


def _classify(v0, alpha):
    x0, y0, z0 = v0[0], v0[1], v0[2]
    zeta = jnp.abs(z0)
    in_K = (
        (x0 >= 0)
        & (y0 >= 0)
        & (
            jnp.power(jnp.maximum(x0, 0.0), alpha) * jnp.power(jnp.maximum(y0, 0.0), 1 - alpha)
            >= zeta
        )
    )
    u, v = jnp.maximum(-x0, 0.0), jnp.maximum(-y0, 0.0)
    in_polar = (
        (x0 <= 0)
        & (y0 <= 0)
        & (jnp.power(u / alpha, alpha) * jnp.power(v / (1 - alpha), 1 - alpha) >= zeta)
    )
    return in_K, in_polar


def _solve(v0, alpha):
    """Projection onto K_α plus what the JVP needs.

    Returns (vp, kind, lam) with kind 0: v0 ∈ K; 1: v0 ∈ K°; 2: z0 = 0 case; 3: smooth
    boundary point with multiplier lam = ζ − r.
    """
    x0, y0, z0 = v0[0], v0[1], v0[2]
    zeta = jnp.abs(z0)
    in_K, in_polar = _classify(v0, alpha)
    flat = z0 == 0
    smooth = ~(in_K | in_polar | flat)

    zeta_s = jnp.where(smooth, zeta, 1.0)
    half = 0.5 * zeta_s

    # x and y are computed together, as one (2,) array (halves the compiled code).
    c0 = jnp.stack([x0, y0])
    beta = jnp.stack([jnp.asarray(alpha, v0.dtype), jnp.asarray(1 - alpha, v0.dtype)])

    def log_ratio(r, lam):
        # ψ = α log x + (1−α) log y − log r: positive for r below the root, negative above.
        xy, dxy = _branch(r, lam, c0, beta)
        psi = jnp.dot(beta, jnp.log(xy)) - jnp.log(r)
        # d/dr along λ = ζ − r, using d(rλ)/dr = λ − r
        dpsi = jnp.dot(beta, dxy / xy) * (lam - r) - 1 / r
        return psi, dpsi

    # The root r* may sit extremely close to ζ (λ* = ζ − r* ≪ ζ, near K) or to 0 (near K°),
    # and x, y depend on the product rλ. Whichever of r and λ is the smaller is what must be
    # represented accurately, so we search over w ∈ (0, ζ/2] for the smaller one: w = r if the
    # root lies in the lower half (ψ(ζ/2) ≤ 0) and w = λ otherwise; the other is ζ − w,
    # which is ≥ ζ/2 and has only a harmless relative rounding error.
    psi_half, _ = log_ratio(half, half)
    w_is_r = psi_half <= 0

    # Search in u = log(w / (ζ/2)) ∈ [log(tiny), 0]: w* can be many orders of magnitude
    # below ζ (e.g. α = 0.1 turns a modest relative change in r into 10× that in x), which
    # plain bisection/Newton in w resolves only to an absolute, not relative, accuracy; in u
    # the accuracy is relative and ψ is close to linear in u (it is a sum of logarithms).
    def fun(u):
        w = half * jnp.exp(u)
        r = jnp.where(w_is_r, w, zeta_s - w)
        lam = jnp.where(w_is_r, zeta_s - w, w)
        psi, dpsi = log_ratio(r, lam)
        # orient so that f < 0 left of the root: −ψ in r, +ψ in λ (dr/dλ = −1); d/du = w d/dw
        sgn = jnp.where(w_is_r, -1.0, 1.0)
        return sgn * psi, sgn * dpsi * w

    u_min = jnp.log(jnp.asarray(jnp.finfo(v0.dtype).tiny, v0.dtype)) + 1
    lo = jnp.where(smooth, u_min, 0.0)
    hi = jnp.zeros_like(lo)
    u = bracketed_newton(fun, lo, hi, jnp.where(smooth, -1.0, 0.0).astype(lo.dtype))
    w = half * jnp.exp(u)
    r = jnp.where(w_is_r, w, zeta_s - w)
    lam = jnp.where(w_is_r, zeta_s - w, w)
    xy, _ = _branch(r, lam, c0, beta)
    vs = jnp.concatenate([xy, (jnp.sign(z0) * r)[None]])

    vflat = jnp.stack([jnp.maximum(x0, 0.0), jnp.maximum(y0, 0.0), jnp.zeros_like(z0)])
    vp = jnp.where(in_K, v0, jnp.where(in_polar, jnp.zeros_like(v0), jnp.where(flat, vflat, vs)))
    kind = jnp.where(in_K, 0, jnp.where(in_polar, 1, jnp.where(flat, 2, 3)))
    return vp, kind, lam


def _kkt_jacobian(v0, vp, lam, alpha):
    """DΠ at a smooth boundary point (see module docstring). -> (3, 3).

    Basis of the (x, y) plane: p̂ = (x, y)/n, q̂ = (y, −x)/n, n = ‖(x, y)‖. By homogeneity
    (x ∂ₓ + y ∂ᵧ)(x^α y^(1−α)) = r, so ∇g·p̂ = −r/n exactly, and
    ∇g·q̂ = r((1−α)x² − αy²)/(x y n). With c = λα(1−α)r, 1 + κ‖q‖² = (x²y² + c n²)/(x²y²), so

        √η = x y / √(x²y² + c n²),     √η ∇g·q̂ = r((1−α)x² − αy²) / (n √(x²y² + c n²)),

    neither of which divides by x or y. All lengths are first divided by max(x, y).
    """
    dtype = v0.dtype
    tiny = jnp.finfo(dtype).tiny
    sigma = jnp.where(v0[2] >= 0, 1.0, -1.0).astype(dtype)
    x, y = jnp.maximum(vp[0], 0.0), jnp.maximum(vp[1], 0.0)
    # If both x and y underflowed to 0 the computed projection is the apex (v0 lies within
    # rounding of K°), where DΠ = 0 is the limit from the polar side.
    apex = jnp.maximum(x, y) <= 0
    s = jnp.maximum(jnp.maximum(x, y), tiny)
    x, y, r, lam = x / s, y / s, jnp.abs(vp[2]) / s, jnp.maximum(lam, 0.0) / s
    n = jnp.where(apex, 1.0, jnp.hypot(x, y))
    c = lam * alpha * (1 - alpha) * r
    h = jnp.hypot(x * y, jnp.sqrt(c) * n)
    h_s = jnp.where(h > 0, h, 1.0)
    t_q = jnp.where(h > 0, r * ((1 - alpha) * x * x - alpha * y * y) / (n * h_s), 0.0)
    sqrt_eta = jnp.where(h > 0, x * y / h_s, 1.0)
    zero = jnp.zeros_like(x)
    p_hat = jnp.stack([x, y, zero]) / n
    q_hat = jnp.stack([y, -x, zero]) / n
    t = jnp.stack([-r / n, t_q, sigma])
    J = projection_jacobian(p_hat, q_hat, sqrt_eta, t)
    return jnp.where(apex, jnp.zeros_like(J), J)


@jax.custom_jvp
def _project_pow(v: jax.Array, alpha) -> jax.Array:
    """Projection onto the power cone K_α. v = (x, y, z): (3,) -> (3,); alpha scalar in (0, 1).

    ``alpha`` may be a traced scalar (so a product of power cones can be vmapped over their
    exponents) but is not differentiated: its tangent is ignored.
    """
    return _solve(v, alpha)[0]


@_project_pow.defjvp
def _project_pow_jvp(primals, tangents):
    (v, alpha), (dv, _) = primals, tangents
    vp, kind, lam = _solve(v, alpha)
    eye = jnp.eye(3, dtype=v.dtype)
    zero = jnp.zeros((3, 3), v.dtype)
    diag = jnp.diag(jnp.stack([v[0] > 0, v[1] > 0, jnp.zeros((), bool)]).astype(v.dtype))
    J = jnp.where(
        kind == 0,
        eye,
        jnp.where(kind == 1, zero, jnp.where(kind == 2, diag, _kkt_jacobian(v, vp, lam, alpha))),
    )
    return vp, J @ dv


# jit so that eager calls compile the root-finding loop once per shape/dtype instead of
# re-tracing it (its body is a fresh closure each call); a no-op inside an outer jit.
project_pow = jax.jit(_project_pow)


class PowerCone(Cone):
    """``K_α = {(x, y, z) : x, y ≥ 0, x^α y^(1−α) ≥ |z|}`` (dim 3), 0 < α < 1.

    ``K_α* = {(u, v, w) : u, v ≥ 0, (u/α)^α (v/(1−α))^(1−α) ≥ |w|}``; ``project_dual`` uses
    Moreau.
    """

    dual_is_self = False
    dim = 3

    def __init__(self, alpha: float):
        alpha = float(alpha)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"power cone exponent must be in (0, 1), got {alpha}")
        self.alpha = alpha

    def project(self, v: jax.Array) -> jax.Array:
        return project_pow(v, self.alpha)

    def __repr__(self) -> str:
        return f"PowerCone(alpha={self.alpha})"
