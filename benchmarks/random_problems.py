"""Random feasible DPP problems: cvxjax's derivative checked against finite differences.

Six seeded families of small (n = 3–15) parametrized problems, each feasible by construction:

1. ``qp``: ``min ½‖Fx‖² + qᵀx  s.t.  Gx ≤ h, Ax = b`` (parameters ``q``, ``h``; ``h = G x0 +
   slack`` with some slacks zero, and ``q`` chosen so that ``x0`` is optimal with positive
   multipliers on the zero-slack rows, at most n − p − 1 of them; in about 15% of the problems
   one zero-slack row gets a zero multiplier, a planted weakly active constraint, i.e. a kink);
2. ``qp_dup``: the same with a few rows of ``Gx ≤ h`` repeated (``G[dup] x ≤ h[dup]``, the same
   parameter entries, so the problem stays differentiable);
3. ``lp_ridge``: ``min cᵀx + 1e-2‖x‖²  s.t.  Gx ≤ h, l ≤ x ≤ u`` (parameters ``c``, ``h``);
4. ``socp``: ``min ¼‖x‖² + qᵀx  s.t.  ‖A_i x + b_i‖ ≤ c_iᵀx + d_i`` (parameters ``q``, ``d``;
   some cones inactive);
5. ``exp``: one of ``min Σ exp(x) − qᵀx``, a ridge-regularized logistic loss, or
   ``max Σ entr(x) + qᵀx`` on the simplex, each with ``Gx ≤ h`` (parameters ``q``, ``h``);
6. ``psd``: a 3×3 or 4×4 symmetric matrix variable ``X ⪰ 0``: the nearest-PSD problem
   ``min ‖X − sym(C)‖²_F s.t. tr X ≤ t`` or ``min tr(sym(C) X) + 0.1‖X‖²_F s.t. tr X = t``
   (parameters ``C``, ``t``).

For each problem the reference is CVXPY + Clarabel (default settings; problems it does not
solve to ``optimal`` are skipped and counted). The cvxjax layer is built with default settings
(``CvxpyLayer(problem, parameters=..., variables=[x])``) and JAX runs in float64. With a random
unit direction ``d`` in the concatenated parameter space and a random cotangent ``w``:

* ``J d`` by ``jax.jvp`` of the first variable ``x``, ``Jᵀw`` by ``jax.vjp``; the adjoint check
  is ``|⟨w, J d⟩ − ⟨Jᵀw, d⟩| / max(‖w‖‖J d‖, ‖Jᵀw‖, ‖w‖ s) ≤ 1e-6`` (``s`` the scale below);
* ``fd = (x(θ+εd) − x(θ−εd)) / 2ε`` with CVXPY + Clarabel at tight tolerances (the tightest
  of 1e-12, 1e-11, 1e-10, 1e-9 for which Clarabel reports ``optimal``),
  ``ε = 1e-5 max(1, ‖θ‖)``; ``jd_err = ‖J d − fd‖ / max(‖fd‖, 1e-3 (1 + ‖x‖))``. Noise in the
  tight solves (up to about 1e-6 in x on some SOCPs) can spoil that step, so ``ε`` = 1e-4,
  1e-3 and 1e-2 (relative) are tried too and the smallest ``jd_err`` is kept (a wrong
  derivative does not match a central difference by accident);
* the primal check ``‖x − x_ref‖ / max(1, ‖x_ref‖) ≤ 1e-5`` (``x_ref`` the tight solve at θ).

Classes: ``ok`` (all three checks pass, ``jd_err ≤ 1e-4``); ``flagged`` (a check fails but
cvxjax warned ``cvxjax.DegenerateDerivativeWarning``); ``kink`` (the derivative check fails
and the one-sided differences ``(x(θ+εd) − x(θ))/ε`` and ``(x(θ) − x(θ−εd))/ε`` disagree by
more than 1e-3 on the same scale at every step: finite differences are inconclusive; a primal
error may come with it);
``wrong`` (a check fails silently); ``error`` (cvxjax raised; every counted problem was
solved by CVXPY, so each is an error where CVXPY succeeds; type and first line recorded);
``fd_failed`` (the tight finite-difference solves failed). Everything runs in one process; results are written after
each problem (families interleaved, so an interrupted run covers all of them).

Usage::

    python benchmarks/random_problems.py [--per-family 20] [--seed 0]
        [--families qp,qp_dup,lp_ridge,socp,exp,psd] [--out benchmarks/results/random_problems]
    python benchmarks/random_problems.py --markdown-only   # reclassify and rewrite OUT.md
"""

from __future__ import annotations

import argparse
import json
import os
import time
import traceback
import warnings

import cvxpy as cp
import numpy as np
from error_text import first_line as _first_line  # noqa: E402
from error_text import innermost_cause as _cause  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))

JD_TOL = 1e-4
ADJ_TOL = 1e-6
X_TOL = 1e-5
KINK_TOL = 1e-3
FD_REL_EPS = (1e-5, 1e-4, 1e-3, 1e-2)  # relative steps, the first preferred
TIGHT_LADDER = (1e-12, 1e-11, 1e-10, 1e-9)  # Clarabel tol_gap_abs = tol_gap_rel = tol_feas
FAMILIES = ("qp", "qp_dup", "lp_ridge", "socp", "exp", "psd")
CLASSES = ("ok", "flagged", "kink", "wrong", "error", "fd_failed")


# ----------------------------------------------------------------------------- generators
def _slack(rng, m, max_zero=None):
    """Slacks ≥ 0, a random number of them (at most ``max_zero``, default about 40%) zero."""
    s = np.abs(rng.standard_normal(m)) + 0.1
    hi = int(0.4 * m) if max_zero is None else min(m, max_zero)
    k = int(rng.integers(0, hi + 1))
    s[rng.choice(m, size=k, replace=False)] = 0.0
    return s


def _qp_data(rng, dup: bool):
    n = int(rng.integers(3, 16))
    m = int(rng.integers(2, 2 * n + 1))
    p = int(rng.integers(0, n // 3 + 1))
    F = rng.standard_normal((n + 2, n))
    P = F.T @ F
    G = rng.standard_normal((m, n))
    A = rng.standard_normal((p, n))
    x0 = rng.standard_normal(n)
    s = _slack(rng, m, max_zero=n - p - 1)  # at most n - p - 1 active rows: LICQ generically
    h = G @ x0 + s
    b = A @ x0
    # multipliers: positive on (most of) the zero-slack rows, so x0 is optimal
    lam = np.where(s == 0, np.abs(rng.standard_normal(m)) + 0.1, 0.0)
    active = np.flatnonzero(s == 0)
    planted = bool(active.size and rng.random() < 0.15)
    if planted:
        lam[rng.choice(active)] = 0.0
    nu = rng.standard_normal(p)
    q = -P @ x0 - G.T @ lam - A.T @ nu
    x = cp.Variable(n, name="x")
    qp_, hp = cp.Parameter(n, name="q"), cp.Parameter(m, name="h")
    cons = [G @ x <= hp]
    info = dict(n=n, m=m, p=p, active=int(active.size), planted_weakly_active=planted)
    if dup:
        k = int(rng.integers(1, min(m, 4) + 1))
        # prefer active rows among the duplicated ones
        pool = list(active) + [i for i in range(m) if i not in set(active)]
        rows = np.array(sorted(pool[:k]))
        cons.append(G[rows] @ x <= hp[rows])
        info["duplicated_rows"] = rows.tolist()
    if p:
        cons.append(A @ x == b)
    obj = 0.5 * cp.sum_squares(F @ x) + qp_ @ x
    return cp.Problem(cp.Minimize(obj), cons), [qp_, hp], x, [q, h], info


def gen_qp(rng):
    return _qp_data(rng, dup=False)


def gen_qp_dup(rng):
    return _qp_data(rng, dup=True)


def gen_lp_ridge(rng):
    n = int(rng.integers(3, 16))
    m = int(rng.integers(1, n + 1))
    lo = -np.abs(rng.standard_normal(n)) - 0.5
    up = np.abs(rng.standard_normal(n)) + 0.5
    x0 = lo + (up - lo) * rng.random(n)
    G = rng.standard_normal((m, n))
    h = G @ x0 + _slack(rng, m)
    c = rng.standard_normal(n)
    x = cp.Variable(n, name="x")
    cpar, hp = cp.Parameter(n, name="c"), cp.Parameter(m, name="h")
    obj = cpar @ x + 1e-2 * cp.sum_squares(x)
    cons = [G @ x <= hp, x >= lo, x <= up]
    return cp.Problem(cp.Minimize(obj), cons), [cpar, hp], x, [c, h], dict(n=n, m=m)


def gen_socp(rng):
    n = int(rng.integers(3, 13))
    k = int(rng.integers(1, 5))
    x0 = rng.standard_normal(n)
    x = cp.Variable(n, name="x")
    qp_, dp = cp.Parameter(n, name="q"), cp.Parameter(k, name="d")
    cons, d = [], np.zeros(k)
    inactive = rng.random(k) < 0.3
    for i in range(k):
        r = int(rng.integers(2, n + 1))
        A = rng.standard_normal((r, n))
        b = rng.standard_normal(r)
        c = rng.standard_normal(n)
        d[i] = np.linalg.norm(A @ x0 + b) - c @ x0 + (5.0 if inactive[i] else 0.1)
        cons.append(cp.norm(A @ x + b) <= c @ x + dp[i])
    q = -(x0 + 2.0 * rng.standard_normal(n))
    obj = 0.25 * cp.sum_squares(x) + qp_ @ x
    info = dict(n=n, cones=k, planted_inactive=int(inactive.sum()))
    return cp.Problem(cp.Minimize(obj), cons), [qp_, dp], x, [q, d], info


def gen_exp(rng):
    kind = ("exp", "logistic", "entropy")[int(rng.integers(0, 3))]
    n = int(rng.integers(3, 13))
    m = int(rng.integers(1, n + 1))
    G = rng.standard_normal((m, n))
    x = cp.Variable(n, name="x")
    qp_, hp = cp.Parameter(n, name="q"), cp.Parameter(m, name="h")
    q = rng.standard_normal(n)
    if kind == "exp":
        q = np.abs(q) + 0.1  # q > 0: bounded below (min at x = log q without constraints)
    if kind == "entropy":
        x0 = rng.dirichlet(np.ones(n))
        h = G @ x0 + _slack(rng, m) + 1e-2  # keep the interior nonempty
        obj = cp.Maximize(cp.sum(cp.entr(x)) + qp_ @ x)
        cons = [cp.sum(x) == 1, G @ x <= hp]
    else:
        x0 = rng.standard_normal(n)
        h = G @ x0 + _slack(rng, m)
        if kind == "exp":
            obj = cp.Minimize(cp.sum(cp.exp(x)) - qp_ @ x)
        else:
            Z = rng.standard_normal((2 * n, n))
            obj = cp.Minimize(cp.sum(cp.logistic(Z @ x)) + 0.05 * cp.sum_squares(x) - qp_ @ x)
        cons = [G @ x <= hp]
    return cp.Problem(obj, cons), [qp_, hp], x, [q, h], dict(kind=kind, n=n, m=m)


def gen_psd(rng):
    kind = ("nearest", "linear")[int(rng.integers(0, 2))]
    k = int(rng.integers(3, 5))
    X = cp.Variable((k, k), symmetric=True, name="X")
    Cp, tp = cp.Parameter((k, k), name="C"), cp.Parameter(name="t")
    C = rng.standard_normal((k, k))
    Cs = (Cp + Cp.T) / 2
    if kind == "nearest":
        t = float(rng.uniform(0.5, 3.0))
        obj = cp.Minimize(cp.sum_squares(X - Cs))
        cons = [X >> 0, cp.trace(X) <= tp]
    else:
        t = float(rng.uniform(0.5, 2.0))
        obj = cp.Minimize(cp.trace(Cs @ X) + 0.1 * cp.sum_squares(X))
        cons = [X >> 0, cp.trace(X) == tp]
    return cp.Problem(obj, cons), [Cp, tp], X, [C, np.array(t)], dict(kind=kind, k=k)


GENERATORS = dict(
    qp=gen_qp, qp_dup=gen_qp_dup, lp_ridge=gen_lp_ridge, socp=gen_socp, exp=gen_exp, psd=gen_psd
)


# ----------------------------------------------------------------------------- checks
def _cvxpy_x(problem, params, x, values, tol=None):
    for p, v in zip(params, values):
        p.value = v
    opts = {} if tol is None else dict(tol_gap_abs=tol, tol_gap_rel=tol, tol_feas=tol, max_iter=500)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Solution may be inaccurate": status recorded
            problem.solve(solver=cp.CLARABEL, **opts)
    except cp.error.SolverError:
        return "solver_error", None
    if x.value is None:
        return problem.status, None
    return problem.status, np.asarray(x.value, dtype=float).ravel()


def _tight_x(problem, params, x, values):
    """The tightest Clarabel solve of the ladder ``TIGHT_LADDER`` that reports ``optimal``."""
    status = None
    for tol in TIGHT_LADDER:
        status, xv = _cvxpy_x(problem, params, x, values, tol)
        if status == cp.OPTIMAL:
            return f"optimal (tol {tol:g})", xv
    return status, None


def check(family: str, index: int, seed: int) -> dict:
    import jax
    import jax.numpy as jnp

    import cvxjax

    rng = np.random.default_rng([seed, FAMILIES.index(family), index])
    problem, params, x, values, info = GENERATORS[family](rng)
    res: dict = dict(family=family, index=index, **info)
    res["n_params"] = int(sum(np.size(v) for v in values))

    t0 = time.perf_counter()
    status, _ = _cvxpy_x(problem, params, x, values)
    res["cvxpy_status"] = status
    res["cvxpy_s"] = time.perf_counter() - t0
    if status != cp.OPTIMAL:
        res["class"] = "skipped"
        return res

    # direction d (unit in the concatenated parameter space) and cotangent w
    dirs = [rng.standard_normal(np.shape(v)) for v in values]
    norm = np.sqrt(sum(float(np.sum(di**2)) for di in dirs))
    dirs = [di / norm for di in dirs]
    theta_norm = np.sqrt(sum(float(np.sum(np.asarray(v) ** 2)) for v in values))
    eps_list = [e * max(1.0, theta_norm) for e in FD_REL_EPS]

    # finite differences with tight Clarabel, at each step of eps_list
    t0 = time.perf_counter()
    s0, x0 = _tight_x(problem, params, x, values)
    statuses, fds = [s0], []
    for eps in eps_list:
        sp, xp = _tight_x(problem, params, x, [v + eps * di for v, di in zip(values, dirs)])
        sm, xm = _tight_x(problem, params, x, [v - eps * di for v, di in zip(values, dirs)])
        statuses += [sp, sm]
        if x0 is not None and xp is not None and xm is not None:
            fds.append((eps, xp, xm))
    res["fd_statuses"] = statuses
    res["fd_s"] = time.perf_counter() - t0
    fd_ok = bool(fds) and fds[0][0] == eps_list[0]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t0 = time.perf_counter()
            layer = cvxjax.CvxpyLayer(problem, parameters=params, variables=[x])
            res["build_s"] = time.perf_counter() - t0
            vals = tuple(jnp.asarray(v, dtype=jnp.float64) for v in values)
            tans = tuple(jnp.asarray(di, dtype=jnp.float64) for di in dirs)

            def f(*v):
                return jnp.ravel(layer(*v)[0])

            t0 = time.perf_counter()
            xs, jd = jax.jvp(f, vals, tans)
            xs, jd = np.asarray(xs), np.asarray(jd)
            res["jvp_s"] = time.perf_counter() - t0
            w = rng.standard_normal(xs.shape)
            t0 = time.perf_counter()
            _, pullback = jax.vjp(f, *vals)
            jtw = pullback(jnp.asarray(w))
            jtw = [np.asarray(g) for g in jtw]
            res["vjp_s"] = time.perf_counter() - t0
            jax.effects_barrier()
        except Exception as e:  # noqa: BLE001  (recorded, classified as "error")
            try:
                jax.effects_barrier()
            except Exception:  # noqa: BLE001
                pass
            res["exception"] = type(e).__name__
            res["message"] = _first_line(e)
            res["cause"] = _cause(str(e).splitlines())
            res["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
    degenerate = cvxjax.DegenerateDerivativeWarning
    res["warnings"] = [
        dict(category=w_.category.__name__, message=_first_line(w_.message)) for w_ in caught
    ][:5]
    res["degenerate_warning"] = any(issubclass(w_.category, degenerate) for w_ in caught)

    if "exception" in res:
        res["class"] = "error"
        return res
    if not fd_ok:
        res["class"] = "fd_failed"
        return res

    # the derivative passes if the central difference at some step matches it (noise in the
    # tight solves can spoil the smallest step); reported: the best step
    best = None
    for eps, xp, xm in fds:
        fd = (xp - xm) / (2 * eps)
        scale_e = max(float(np.linalg.norm(fd)), 1e-3 * (1 + float(np.linalg.norm(x0))))
        err = float(np.linalg.norm(jd - fd) / scale_e)
        gap = float(np.linalg.norm((xp - x0) / eps - (x0 - xm) / eps) / scale_e)
        res.setdefault("jd_err_by_eps", []).append([eps, err, gap])
        if best is None or err < best[1]:
            best = (eps, err, gap, fd, scale_e)
    eps, res["jd_err"], _, fd, scale = best
    res["eps"] = eps
    res["fd_one_sided_gap"] = min(g for _, _, g in res["jd_err_by_eps"])
    res["fd_norm"] = float(np.linalg.norm(fd))
    res["jd_norm"] = float(np.linalg.norm(jd))
    a = float(w @ jd)
    b = float(sum(np.sum(g * di) for g, di in zip(jtw, dirs)))
    jtw_norm = np.sqrt(sum(float(np.sum(g**2)) for g in jtw))
    wn = float(np.linalg.norm(w))
    denom = max(wn * float(np.linalg.norm(jd)), jtw_norm, wn * scale)
    res["adjoint_err"] = abs(a - b) / denom
    res["x_err"] = float(np.linalg.norm(xs - x0) / max(1.0, float(np.linalg.norm(x0))))
    finite = bool(np.all(np.isfinite(xs)) and np.all(np.isfinite(jd)))
    finite = finite and all(np.all(np.isfinite(g)) for g in jtw)

    failed = []
    if not finite:
        failed.append("nonfinite")
    if not res["x_err"] <= X_TOL:
        failed.append("primal")
    if not res["jd_err"] <= JD_TOL:
        failed.append("jvp_vs_fd")
    if not res["adjoint_err"] <= ADJ_TOL:
        failed.append("adjoint")
    res["failed_checks"] = failed
    return classify(res)


def classify(res: dict) -> dict:
    """Set ``class`` from the checks that ``check`` recorded (``failed_checks`` etc.)."""
    if res.get("class") in ("skipped", "error", "fd_failed") or "failed_checks" not in res:
        return res
    failed = res["failed_checks"]
    if not failed:
        res["class"] = "ok"
    elif res["degenerate_warning"]:
        res["class"] = "flagged"
    elif (
        "jvp_vs_fd" in failed
        and set(failed) <= {"jvp_vs_fd", "primal"}
        and (res["fd_one_sided_gap"] > KINK_TOL)
    ):
        # finite differences inconclusive (a primal error this close to a kink is reported in
        # failed_checks but not counted as wrong: interior-point accuracy degrades there)
        res["class"] = "kink"
    else:
        res["class"] = "wrong"
    return res


# ----------------------------------------------------------------------------- output
def _fmt(v, spec=".1e"):
    return "–" if v is None else format(v, spec)


def _counts(results, families):
    table = {f: dict.fromkeys(CLASSES + ("skipped",), 0) for f in families}
    for r in results:
        table[r["family"]][r["class"]] += 1
    return table


def write_markdown(path: str, results: list, meta: dict) -> None:
    families = meta["families"]
    table = _counts(results, families)
    cols = CLASSES + ("skipped",)
    lines = [
        "# Random DPP problems: cvxjax derivatives against finite differences",
        "",
        f"Seed {meta['seed']}, {meta['per_family']} problems per family, generated by "
        f"`benchmarks/random_problems.py` on {meta['date']} (wall {meta.get('wall_s', 0):.0f} s). "
        "Default cvxjax settings, float64. `jd` = ‖J d − fd‖ / max(‖fd‖, 1e-3 (1 + ‖x‖)) with "
        "central differences of tight CVXPY + Clarabel solves; `adj` = the jvp/vjp adjoint "
        "mismatch; `x` = the primal error. ok: jd ≤ "
        f"{JD_TOL:g}, adj ≤ {ADJ_TOL:g}, x ≤ {X_TOL:g}. skipped: CVXPY + Clarabel not optimal.",
        "",
        "| family | " + " | ".join(cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    for f in families:
        lines.append(f"| {f} | " + " | ".join(str(table[f][c]) for c in cols) + " |")
    tot = {c: sum(table[f][c] for f in families) for c in cols}
    lines.append("| **total** | " + " | ".join(f"**{tot[c]}**" for c in cols) + " |")
    lines += [
        "",
        "flagged: a check failed and cvxjax warned `DegenerateDerivativeWarning`; kink: the "
        "derivative check failed but the one-sided differences disagree (finite differences "
        "inconclusive); wrong: a check failed silently; error: cvxjax raised where CVXPY "
        "solved it; fd_failed: the tight finite-difference solves failed.",
        "",
    ]
    skipped = [r for r in results if r["class"] == "skipped"]
    if skipped:
        lines += [
            "Skipped (CVXPY + Clarabel status): "
            + ", ".join(
                f"{r['family']} #{r['index']}"
                + (f" ({r['kind']})" if "kind" in r else "")
                + f" {r.get('cvxpy_status')}"
                for r in skipped
            ),
            "",
        ]
    bad = [r for r in results if r["class"] not in ("ok", "skipped")]
    if bad:
        lines += [
            "Non-ok problems:",
            "",
            "| family | # | size | class | failed | jd | adj | x | fd gap | details |",
            "|---|---:|---|---|---|---:|---:|---:|---:|---|",
        ]
        for r in bad:
            size = ", ".join(
                f"{k}={r[k]}" for k in ("kind", "n", "m", "p", "k", "cones", "active") if k in r
            )
            if r.get("planted_weakly_active"):
                size += ", planted weakly active"
            detail = ""
            if r["class"] == "error":
                detail = f"{r.get('exception')}: {r.get('message')}"
                if r.get("cause"):
                    detail += f" — cause: {r['cause']}"
            elif r["class"] == "fd_failed":
                detail = "FD statuses " + ", ".join(map(str, r.get("fd_statuses", [])))
            elif r.get("warnings"):
                detail = "; ".join(f"{w['category']}: {w['message']}" for w in r["warnings"][:2])
            detail = detail.replace("|", "\\|")
            lines.append(
                f"| {r['family']} | {r['index']} | {size} | {r['class']} | "
                f"{','.join(r.get('failed_checks', []))} | {_fmt(r.get('jd_err'))} | "
                f"{_fmt(r.get('adjoint_err'))} | {_fmt(r.get('x_err'))} | "
                f"{_fmt(r.get('fd_one_sided_gap'))} | {detail} |"
            )
        lines.append("")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "random_problems"))
    ap.add_argument(
        "--markdown-only",
        action="store_true",
        help="reclassify OUT.json and rewrite OUT.json / OUT.md, run nothing",
    )
    args = ap.parse_args(argv)
    if args.markdown_only:
        with open(args.out + ".json") as fh:
            saved = json.load(fh)
        for r in saved["results"]:
            classify(r)
        with open(args.out + ".json", "w") as fh:
            json.dump(saved, fh, indent=1, default=str)
        write_markdown(args.out + ".md", saved["results"], saved["meta"])
        return

    import jax

    jax.config.update("jax_enable_x64", True)

    families = [f for f in args.families.split(",") if f]
    meta = dict(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        seed=args.seed,
        per_family=args.per_family,
        families=families,
        jd_tol=JD_TOL,
        adjoint_tol=ADJ_TOL,
        x_tol=X_TOL,
        kink_tol=KINK_TOL,
        fd_rel_eps=FD_REL_EPS,
        tight_clarabel_ladder=TIGHT_LADDER,
    )
    results: list = []
    t_start = time.perf_counter()
    for i in range(args.per_family):
        for fam in families:  # interleaved: a partial run covers every family
            t0 = time.perf_counter()
            try:
                r = check(fam, i, args.seed)
            except Exception as e:  # noqa: BLE001  (a generator or reference failure)
                r = dict(family=fam, index=i, cvxpy_status="error", message=_first_line(e))
                r["class"] = "skipped"
            r["wall_s"] = time.perf_counter() - t0
            results.append(r)
            print(
                f"{fam:9s} {i:3d} {r['class']:9s} jd={_fmt(r.get('jd_err'))} "
                f"adj={_fmt(r.get('adjoint_err'))} x={_fmt(r.get('x_err'))} "
                f"wall={r['wall_s']:.1f}s {r.get('exception', '')} {r.get('message', '')[:80]}",
                flush=True,
            )
            meta["wall_s"] = time.perf_counter() - t_start
            meta["completed"] = len(results)
            with open(args.out + ".json", "w") as fh:
                json.dump(dict(meta=meta, results=results), fh, indent=1, default=str)
            write_markdown(args.out + ".md", results, meta)
    table = _counts(results, families)
    print(f"\nwall {time.perf_counter() - t_start:.0f} s")
    for f in families:
        print(f"{f:9s} " + " ".join(f"{c}={table[f][c]}" for c in CLASSES + ("skipped",)))


if __name__ == "__main__":
    main()
