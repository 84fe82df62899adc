"""The exponential cone ``K = closure{(x, y, z) : y > 0, y·exp(x/y) ≤ z}``.

Its dual is ``K* = closure{(u, v, w) : u < 0, −u·exp(v/u) ≤ e·w}`` and its polar
``K° = −K*``. Equivalently ``(u, v, w) ∈ K*  ⇔  (−v, −u, e·w) ∈ K``.

Projection
----------
We follow H. A. Friberg, "Projection onto the exponential cone: a univariate root-finding
problem" (Optim. Methods Softw., 2021), in our own formulation. Write v0 = (r0, s0, t0).

* Off the closed-form cases (v0 ∈ K, v0 ∈ K°, or r0 ≤ 0 ∧ s0 ≤ 0 where the answer is
  (r0, 0, max(t0, 0))), Moreau's decomposition ``v0 = vp + vd`` (vp ∈ ∂K, vd ∈ ∂K°,
  vp ⊥ vd) has both parts on the smooth boundaries. Parametrizing the primal boundary by the
  ratio ρ = r/s, ``vp = s·a(ρ)`` with ``a(ρ) = (ρ, 1, e^ρ)``, the outward normal there is
  ``b(ρ) = (e^ρ, (1−ρ)e^ρ, −1)`` (the gradient of ``s e^{r/s} − t``), and ``vd = μ·b(ρ)``.
  Since a ⊥ b, ``v0 ∈ span{a(ρ), b(ρ)}`` iff ``v0 · (a × b) = 0``, which after dividing by
  e^ρ is Friberg's scalar equation

      h(ρ) = ((ρ−1) r0 + s0) e^ρ − (r0 − ρ s0) e^{−ρ} − (ρ² − ρ + 1) t0 = 0,

  strictly increasing on the relevant bracket. We solve it with a safeguarded Newton method
  on Friberg's bracket and set ``vp = max(v0·â, 0) â`` (projection of v0 on the ray through
  the unit vector â ∝ a(ρ)), which lies in K even if ρ is slightly off.
* As in Friberg, two cheap heuristic points of K (the perspective boundary
  ``(min(r0,0), 0, max(t0,0))`` and the vertical move ``(r0, s0, max(t0, s0 e^{r0/s0}))``)
  compete with the root-based point and the candidate nearest to v0 wins. All candidates lie
  in K, so this can only improve the answer; it matters where the root-based point is
  numerically useless (|ρ| beyond the exponent range).

In the root function, the ray and the derivative every exponential appears scaled
(``e^{ρ − max(ρ, 0)}``-style, all exponents ≤ 0), so nothing overflows, in float32 as in
float64; the heuristics may overflow to inf, which merely disqualifies them.

Derivative (custom JVP, never autodiff through the iterations)
--------------------------------------------------------------
* v0 ∈ K: I.  Perspective-boundary answer (K°, r0 ≤ 0 ∧ s0 ≤ 0): diag(1[r0<0], 0, 1[t0>0]).
* Smooth case (root-based or vertical-move answer, the latter with ρ = r0/s0): the projection
  solves min ½‖p − v0‖² s.t. g(p) = s e^{r/s} − t = 0 with
  multiplier λ = μ ≥ 0. Differentiating the KKT system ``p − v0 + λ∇g = 0, g = 0`` gives

      DΠ = W − (W∇g)(W∇g)ᵀ / (∇gᵀ W ∇g),     W = (I + λ∇²g)^{-1}.

  Here ``∇²g = (e^ρ/s) q qᵀ`` with ``q = (1, −ρ, 0)`` (rank one), and
  ``κ = λ e^ρ / s = r_d / s_p`` (r_d = r0 − r_p is the first entry of vd = λ b), so
  ``W = I − (1 − η) q̂q̂ᵀ`` with ``η = 1/(1 + κ‖q‖²)``; see :mod:`._kkt` for the
  cancellation-free evaluation. The result is finite everywhere (η → 0 as s_p → 0).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._base import Cone
from ._kkt import projection_jacobian, unit
from ._rootfind import bracketed_newton

_E = math.e


def _h_scaled(v0, rho):
    """Friberg's h(ρ) and h'(ρ), both multiplied by e^{−|ρ|} (same sign, no overflow).

    Every power of ρ is paired with an exponential factor ≤ 1 *before* it meets anything
    else (e.g. ``(ρ e^{−|ρ|/2})²`` rather than ``ρ²·e^{−|ρ|}``), so that huge |ρ| — which
    the bracket legitimately reaches, e.g. ρ ≥ 1 − s0/r0 with r0 ≈ 0⁺ — gives 0·finite, never
    inf·0 = NaN.
    """
    r0, s0, t0 = v0[0], v0[1], v0[2]
    a = jnp.abs(rho)
    ep = jnp.exp(rho - a)  # e^ρ · e^{−|ρ|}
    em = jnp.exp(-rho - a)  # e^{−ρ} · e^{−|ρ|}
    et = jnp.exp(-a)
    rho_ep, rho_em, rho_et = rho * ep, rho * em, rho * et
    rho2_et = (rho * jnp.exp(-0.5 * a)) ** 2
    # h = ((ρ−1)r0 + s0)e^ρ − (r0 − ρ s0)e^{−ρ} − (ρ² − ρ + 1)t0
    f = r0 * (rho_ep - ep) + s0 * ep - r0 * em + s0 * rho_em - t0 * (rho2_et - rho_et + et)
    # h' = (ρ r0 + s0)e^ρ + (r0 − (ρ−1)s0)e^{−ρ} − (2ρ − 1)t0
    df = r0 * rho_ep + s0 * ep + r0 * em - s0 * (rho_em - em) - t0 * (2 * rho_et - et)
    return f, df


def _ray(rho):
    """Unit vector along a(ρ) = (ρ, 1, e^ρ), a generator of ∂K."""
    m = jnp.maximum(rho, 0.0)
    em = jnp.exp(-m)
    return unit(jnp.stack([rho * em, em, jnp.exp(rho - m)]))


def _bracket(v0, pdist, ddist):
    """Friberg's bracket [lo, hi] for the root of h in the smooth case.

    Bounds come from: ρ ∈ (1 − s0/r0, r0/s0) (positivity of s and μ, when r0 > 0 / s0 > 0);
    t_p ≥ t0 together with s_p ≤ max_ψ ((ψ−1)r0+s0)/(ψ²−ψ+1) when t0 > 0 (and the polar
    analogue when t0 < 0); and upper bounds on |t_p|, |t_d| from the heuristic distances,
    combined with lower bounds on ω(ρ) = e^ρ/(ρ²−ρ+1) (min e²/3 at ρ = 2) and its polar twin.
    Always finite in the smooth case; degenerate inputs collapse it to a point.
    """
    r0, s0, t0 = v0[0], v0[1], v0[2]
    dtype = v0.dtype
    inf = jnp.asarray(jnp.inf, dtype)
    tiny = jnp.asarray(1e-12, dtype)
    rpos, spos = r0 > 0, s0 > 0
    r_s = jnp.where(rpos, r0, 1.0)
    s_s = jnp.where(spos, s0, 1.0)
    disc = jnp.sqrt(r0 * r0 + s0 * s0 - r0 * s0)

    # Primal: ψ maximizing ((ψ−1)r0 + s0)/(ψ²−ψ+1), i.e. the larger root of
    # r0 ψ² − 2(r0 − s0)ψ − s0 = 0; two algebraically equal forms avoid cancellation.
    psi_p = jnp.where(
        r0 > s0,
        (r0 - s0 + disc) / jnp.where(r0 > s0, r0, 1.0),
        -s0 / jnp.where(r0 > s0, -1.0, r0 - s0 - disc),
    )
    pval = ((psi_p - 1) * r0 + s0) / (psi_p * (psi_p - 1) + 1)
    # Polar: ψ for (r0 − ψ s0)/(ψ²−ψ+1), the smaller root of s0 ψ² − 2 r0 ψ + r0 − s0 = 0.
    psi_d = jnp.where(
        s0 > r0,
        (r0 - disc) / jnp.where(s0 > r0, s0, 1.0),
        (r0 - s0) / jnp.where(s0 > r0, 1.0, r0 + disc),
    )
    dval = (r0 - psi_d * s0) / (psi_d * (psi_d - 1) + 1)

    # Arguments are clipped to ±1e3, where both bounds are already 0 or ±inf in every
    # float format (clipping only loosens them), to keep ρ² from overflowing into inf/inf.
    def pomega(rho):
        # lower bound of ω on [ρ, ∞)
        rho = jnp.clip(rho, -1e3, 1e3)
        w = jnp.exp(rho) / (rho * (rho - 1) + 1)
        return jnp.where(rho < 2, jnp.minimum(w, _E**2 / 3), w)

    def domega(rho):
        # upper bound (it is negative) of −e^{−ρ}/(ρ²−ρ+1) on (−∞, ρ]
        rho = jnp.clip(rho, -1e3, 1e3)
        w = -jnp.exp(-rho) / (rho * (rho - 1) + 1)
        return jnp.where(rho > -1, jnp.maximum(w, -_E / 3), w)

    # Dp + t0 and Dd − t0 below cancel badly when |t0| dominates (float32 especially); the
    # bounds they feed are only valid up to that rounding, so widen them by it.
    slack = 4 * jnp.finfo(dtype).eps * (pdist + ddist + jnp.abs(t0))
    Dp = jnp.sqrt(jnp.maximum(pdist**2 - jnp.minimum(s0, 0.0) ** 2, 0.0))
    Dd = jnp.sqrt(jnp.maximum(ddist**2 - jnp.minimum(r0, 0.0) ** 2, 0.0))

    # Each bound below is only used if it evaluated to a finite number: in float32 the data
    # can span a range where a bound under/overflows (and XLA may flush subnormals to zero),
    # and a bound we cannot evaluate is just no bound.
    def finite_or(x, default):
        return jnp.where(jnp.isfinite(x), x, default)

    low = finite_or(jnp.where(t0 > 0, jnp.log(jnp.where(t0 > 0, t0, 1.0) / pval), -inf), -inf)
    upr = finite_or(jnp.where(t0 < 0, -jnp.log(jnp.where(t0 < 0, -t0, 1.0) / dval), inf), inf)

    baselow = jnp.where(rpos, finite_or(1 - s0 / r_s, -inf), -inf)
    low = jnp.maximum(low, baselow)
    tpu = jnp.maximum(tiny, jnp.minimum(Dd, Dp + t0) + slack)
    cand = finite_or(jnp.maximum(low, baselow + tpu / r_s / pomega(low)), inf)
    upr = jnp.where(rpos, jnp.minimum(upr, cand), upr)

    baseupr = jnp.where(spos, finite_or(r0 / s_s, inf), inf)
    upr = jnp.minimum(upr, baseupr)
    tdl = -jnp.maximum(tiny, jnp.minimum(Dp, Dd - t0) + slack)
    cand = finite_or(jnp.minimum(upr, baseupr - tdl / s_s / domega(upr)), -inf)
    low = jnp.where(spos, jnp.maximum(low, cand), low)

    low, upr = jnp.minimum(low, upr), jnp.maximum(low, upr)
    low = jnp.clip(low, baselow, baseupr)
    upr = jnp.clip(upr, baselow, baseupr)
    # If one side is still unbounded (only possible through float range trouble), collapse
    # onto the finite side; the heuristic candidates then decide.
    low = jnp.where(jnp.isfinite(low), low, upr)
    upr = jnp.where(jnp.isfinite(upr), upr, low)
    ok = jnp.isfinite(low) & jnp.isfinite(upr)
    low = jnp.where(ok, low, 0.0)
    upr = jnp.where(ok, upr, 0.0)
    # No explicit check for a sign change of h on [low, upr]: if rounding left none, h is
    # monotone so the bracketed search walks to the endpoint nearer the root, which is
    # Friberg's choice (the endpoint with the smaller |h|).
    return low, upr


def _solve(v0):
    """Projection onto K plus what the JVP needs.

    Returns (vp, kind, rho) with kind 0: v0 ∈ K (DΠ = I); 1: perspective-boundary answer
    (DΠ diagonal); 2: smooth boundary point with ratio ρ = r_p/s_p (KKT formula).
    """
    r0, s0, t0 = v0[0], v0[1], v0[2]
    dtype = v0.dtype
    zero = jnp.zeros((), dtype)
    inf = jnp.asarray(jnp.inf, dtype)

    rpos, spos = r0 > 0, s0 > 0
    r_s = jnp.where(rpos, r0, 1.0)
    s_s = jnp.where(spos, s0, 1.0)
    in_K = (spos & (s_s * jnp.exp(r0 / s_s) <= t0)) | ((s0 == 0) & (r0 <= 0) & (t0 >= 0))
    in_polar = (rpos & (r_s * jnp.exp(s0 / r_s - 1) <= -t0)) | ((r0 == 0) & (s0 <= 0) & (t0 <= 0))
    closed_form = in_polar | ((r0 <= 0) & (s0 <= 0))

    # Heuristic points of K and of K° (the latter only feed the bracket).
    vb = jnp.stack([jnp.minimum(r0, 0.0), zero, jnp.maximum(t0, 0.0)])
    db = jnp.sqrt(jnp.maximum(r0, 0.0) ** 2 + s0**2 + jnp.maximum(-t0, 0.0) ** 2)
    tp_i = jnp.maximum(t0, s_s * jnp.exp(r0 / s_s))
    vi = jnp.stack([r0, s0, tp_i])
    di = jnp.where(spos, tp_i - t0, inf)
    pdist = jnp.minimum(db, di)
    ddb = jnp.sqrt(r0**2 + jnp.maximum(s0, 0.0) ** 2 + jnp.maximum(t0, 0.0) ** 2)
    td_i = jnp.minimum(t0, -r_s * jnp.exp(s0 / r_s - 1))
    ddi = jnp.where(rpos, t0 - td_i, inf)
    ddist = jnp.minimum(ddb, ddi)

    # Root search (its result is discarded in the closed-form cases; the bracket is then
    # made a harmless point so the loop exits at once).
    skip = closed_form | in_K
    lo, hi = _bracket(v0, pdist, ddist)
    lo = jnp.where(skip, zero, lo)
    hi = jnp.where(skip, zero, hi)
    rho = bracketed_newton(lambda x: _h_scaled(v0, x), lo, hi, 0.5 * (lo + hi))
    a = _ray(rho)
    vr = jnp.maximum(jnp.dot(v0, a), 0.0) * a
    dr = jnp.linalg.norm(vr - v0)
    dr = jnp.where(skip | ~jnp.isfinite(dr), inf, dr)

    # Prefer the root-based point unless a heuristic is better by more than rounding: when vp
    # is tiny next to v0 all candidate distances agree to ~eps·‖v0‖ and a plain comparison
    # would pick one at random (e.g. 0 instead of the true, small, projection).
    slack = 8 * jnp.finfo(dtype).eps * jnp.linalg.norm(v0)
    use_r = dr <= jnp.minimum(db, di) + slack
    use_i = ~use_r & (di < db)
    vp = jnp.where(use_r, vr, jnp.where(use_i, vi, vb))
    rho_out = jnp.where(use_r, rho, jnp.where(use_i, r0 / s_s, zero))
    kind = jnp.where(use_r | use_i, 2, 1)

    vp = jnp.where(in_K, v0, jnp.where(closed_form, vb, vp))
    kind = jnp.where(in_K, 0, jnp.where(closed_form, 1, kind))
    return vp, kind, rho_out


def _kkt_jacobian(v0, vp, rho):
    """DΠ at a smooth boundary point vp = s_p·a(ρ) (see module docstring). -> (3, 3).

    Basis of the (x, y) plane: p̂ ∝ (ρ, 1) (along a(ρ)) and q̂ ∝ (1, −ρ) (the Hessian's range).
    With b = ∇g = (e^ρ, (1−ρ)e^ρ, −1): b·p̂ = e^ρ/√(1+ρ²), b·q̂ = e^ρ(ρ²−ρ+1)/√(1+ρ²);
    η = 1/(1 + κ‖q‖²) = s_p / (s_p + r_d(1+ρ²)). Everything is scaled by e^{−max(ρ,0)} and
    by M = max(1, |ρ|) so that neither e^ρ nor ρ² can overflow.
    """
    sp = jnp.maximum(vp[1], 0.0)
    rd = jnp.maximum(v0[0] - vp[0], 0.0)
    one = jnp.ones_like(rho)
    p_hat = unit(jnp.stack([rho, one, jnp.zeros_like(rho)]))
    q_hat = unit(jnp.stack([one, -rho, jnp.zeros_like(rho)]))
    big = rho * rho + 1  # may be inf for absurd ρ; then η → 0 as it should
    den = sp + rd * big
    sqrt_eta = jnp.sqrt(jnp.where(den > 0, sp / jnp.where(den > 0, den, 1.0), 1.0))
    M = jnp.maximum(1.0, jnp.abs(rho))
    rm, im = rho / M, 1.0 / M
    root = jnp.sqrt(rm * rm + im * im)  # √(1+ρ²)/M
    m = jnp.maximum(rho, 0.0)
    e = jnp.exp(rho - m)
    t = jnp.stack(
        [
            e * im / root,  # e^ρ/√(1+ρ²), scaled by e^{−m}
            sqrt_eta * e * (rm * rm - rm * im + im * im) / root * M,  # √η e^ρ(ρ²−ρ+1)/√(1+ρ²)
            -jnp.exp(-m),
        ]
    )
    return projection_jacobian(p_hat, q_hat, sqrt_eta, t)


@jax.custom_jvp
def _project_exp(v: jax.Array) -> jax.Array:
    """Projection onto the exponential cone. v = (x, y, z): (3,) -> (3,).

    See the module docstring for the method and the derivative.
    """
    return _solve(v)[0]


@_project_exp.defjvp
def _project_exp_jvp(primals, tangents):
    (v,), (dv,) = primals, tangents
    vp, kind, rho = _solve(v)
    eye = jnp.eye(3, dtype=v.dtype)
    diag = jnp.diag(jnp.stack([v[0] < 0, jnp.zeros((), bool), v[2] > 0]).astype(v.dtype))
    J = jnp.where(kind == 0, eye, jnp.where(kind == 1, diag, _kkt_jacobian(v, vp, rho)))
    return vp, J @ dv


# jit so that eager calls compile the root-finding loop once per shape/dtype instead of
# re-tracing it (its body is a fresh closure each call); a no-op inside an outer jit.
project_exp = jax.jit(_project_exp)


class ExponentialCone(Cone):
    """``K = closure{(x, y, z) : y > 0, y e^{x/y} ≤ z}`` (dim 3).

    ``K* = closure{(u, v, w) : u < 0, −u e^{v/u} ≤ e·w}``; ``project_dual`` uses Moreau.
    """

    dual_is_self = False
    dim = 3

    def project(self, v: jax.Array) -> jax.Array:
        return project_exp(v)
