"""Maros–Meszaros derivative check: value and envelope identity through each layer.

For each problem of ``tests/data/maros_meszaros/`` (the 48 with n + m ≤ 1000, loaded by
``tests/maros_meszaros.py``), written as the DPP problem

    V(q) = min_x ½ xᵀPx + qᵀx + r   subject to   l ≤ Ax ≤ u,  lb ≤ x ≤ ub,

with the linear cost ``q`` a parameter, each tool's layer is built with default settings (as a
new user would: ``CvxpyLayer(problem, parameters=[q], variables=[x])``, called eagerly) and

* ``x* = layer(q)[0]`` and the value ``V = ½ x*ᵀPx* + qᵀx* + r`` are computed,
* ``g = jax.grad(V)(q)`` through the layer. The envelope identity says ``∇V(q) = x*``.

The reference value ``V_ref`` is CVXPY's with Clarabel. Classes:

* ``ok``: ``|V - V_ref| ≤ 1e-4 (1 + |V_ref|)`` and ``‖g - x*‖ / max(‖x*‖, 1) ≤ 1e-3``
  (shown as ``ok, flagged`` where cvxjax also warned, e.g. because x* is not unique);
* ``flagged``: the envelope check fails but cvxjax warned with
  ``cvxjax.DegenerateDerivativeWarning`` (when that class exists): not silently wrong;
* ``wrong``: no exception, no such warning, and the value or the envelope check fails;
* ``error``: it raised (the exception type and first line are recorded);
* ``timeout``: the worker did not finish within ``--timeout`` seconds.

Each (problem, tool) runs in its own subprocess. Times: ``build_s`` (constructing the layer)
and ``first_s`` (the first forward + backward, ``jax.value_and_grad``). JAX runs in float64.

Usage::

    python benchmarks/maros_meszaros.py [--timeout 300] [--only HS21,QAFIRO]
        [--tools cvxjax,cvxpylayers] [--out benchmarks/results/maros_meszaros]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
import warnings

from error_text import first_line as _first_line  # noqa: E402
from error_text import innermost_cause as _cause  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import maros_meszaros as mm  # noqa: E402  (tests/maros_meszaros.py)

VALUE_TOL = 1e-4
ENVELOPE_TOL = 1e-3
TOOLS = ("cvxjax", "cvxpylayers")


def reference(name: str) -> dict:
    """CVXPY + Clarabel's optimal value of problem ``name``."""
    import cvxpy as cp

    problem, _, _ = mm.cvxpy_problem(name)
    t0 = time.perf_counter()
    problem.solve(solver=cp.CLARABEL)
    return dict(status=problem.status, value=problem.value, solve_s=time.perf_counter() - t0)


def worker(name: str, tool: str) -> dict:
    """Build ``tool``'s layer for ``name`` and return x*, V and g's checks (no classification)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

    out: dict = dict(problem=name, tool=tool)
    problem, q, x = mm.cvxpy_problem(name)
    d = mm.load(name)
    P = jnp.asarray(d["P"].toarray())
    r = d["r"]
    q0 = jnp.asarray(d["q"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            t0 = time.perf_counter()
            if tool == "cvxjax":
                import cvxjax

                layer = cvxjax.CvxpyLayer(problem, parameters=[q], variables=[x])
            elif tool == "cvxpylayers":
                from cvxpylayers.jax import CvxpyLayer

                layer = CvxpyLayer(problem, parameters=[q], variables=[x])
            else:
                raise ValueError(f"unknown tool {tool}")
            out["build_s"] = time.perf_counter() - t0

            def value(qv):
                xs = layer(qv)[0]
                return 0.5 * xs @ (P @ xs) + qv @ xs + r, xs

            t0 = time.perf_counter()
            (v, xs), g = jax.value_and_grad(value, has_aux=True)(q0)
            v, xs, g = float(v), np.asarray(xs), np.asarray(g)
            out["first_s"] = time.perf_counter() - t0
            out["value"] = v
            out["x_norm"] = float(np.linalg.norm(xs))
            out["envelope_err"] = float(np.linalg.norm(g - xs) / max(np.linalg.norm(xs), 1.0))
            out["finite"] = bool(
                np.isfinite(v) and np.all(np.isfinite(xs)) and np.all(np.isfinite(g))
            )
        except Exception as e:  # noqa: BLE001  (recorded, classified as "error")
            out["exception"] = type(e).__name__
            out["message"] = _first_line(e)
            out["traceback_tail"] = traceback.format_exc().strip().splitlines()[-3:]
            out["cause"] = _cause(str(e).splitlines())
    degenerate = None
    if tool == "cvxjax":
        import cvxjax

        degenerate = getattr(cvxjax, "DegenerateDerivativeWarning", None)
    out["warnings"] = [
        dict(category=w.category.__name__, message=_first_line(w.message)) for w in caught
    ][:10]
    out["degenerate_warning"] = bool(
        degenerate is not None and any(issubclass(w.category, degenerate) for w in caught)
    )
    out["degenerate_warning_class_exists"] = degenerate is not None
    return out


def classify(res: dict, v_ref: float) -> dict:
    """Add ``class``, ``value_err`` (relative to 1 + |V_ref|) to a worker's result."""
    if res.get("timeout"):
        res["class"] = "timeout"
        return res
    if "exception" in res or "value" not in res:
        res["class"] = "error"
        return res
    import math

    res["value_err"] = abs(res["value"] - v_ref) / (1 + abs(v_ref)) if v_ref is not None else None
    value_ok = res["value_err"] is not None and res["value_err"] <= VALUE_TOL
    env_ok = math.isfinite(res["envelope_err"]) and res["envelope_err"] <= ENVELOPE_TOL
    if value_ok and env_ok and res.get("finite", True):
        res["class"] = "ok"
    elif not env_ok and res.get("degenerate_warning"):
        res["class"] = "flagged"
    else:
        res["class"] = "wrong"
    return res


def run_one(name: str, tool: str, timeout: float) -> dict:
    """Run :func:`worker` in a fresh interpreter, killed after ``timeout`` seconds."""
    env = dict(os.environ)
    root = os.path.dirname(HERE)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, tool]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(problem=name, tool=tool, timeout=True, wall_s=time.perf_counter() - t0)
    wall = time.perf_counter() - t0
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT ") :])
            res["wall_s"] = wall
            return res
    tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
    return dict(
        problem=name,
        tool=tool,
        exception=f"worker exit {p.returncode}",
        message=tail[-1][:300] if tail else "",
        traceback_tail=tail,
        wall_s=wall,
    )


def _fmt(v, spec=".1e"):
    return "–" if v is None else format(v, spec)


def write_markdown(path: str, results: dict, tools, meta: dict) -> None:
    lines = [
        "# Maros–Meszaros: value and envelope identity through the layer",
        "",
        f"Problems with n + m ≤ 1000 ({len(results)} here). Default settings of each tool; "
        "reference CVXPY + Clarabel. `val` = |V − V_ref| / (1 + |V_ref|), "
        "`env` = ‖∇V − x*‖ / max(‖x*‖, 1), `time` = build + first forward/backward (s). "
        f"ok: val ≤ {VALUE_TOL:g} and env ≤ {ENVELOPE_TOL:g}. Generated by "
        "`benchmarks/maros_meszaros.py` on " + meta["date"] + ".",
        "",
    ]
    header = "| problem | n | m | V_ref |"
    sep = "|---|---:|---:|---:|"
    for t in tools:
        header += f" {t} | val | env | time |"
        sep += "---|---:|---:|---:|"
    lines += [header, sep]
    counts = {t: {} for t in tools}
    ok_flagged = {}  # right, but warned (e.g. a non-unique optimal point): not an error
    for name in sorted(results):
        row = results[name]
        ref = row["reference"]
        line = f"| {name} | {row['n']} | {row['m']} | {_fmt(ref.get('value'), '.6g')} |"
        for t in tools:
            res = row["tools"].get(t)
            if res is None:
                line += " | | | |"
                continue
            c = res["class"]
            counts[t][c] = counts[t].get(c, 0) + 1
            label = c
            if c == "ok" and res.get("degenerate_warning"):
                label = "ok, flagged"
                ok_flagged[t] = ok_flagged.get(t, 0) + 1
            if c == "error":
                cause = res.get("cause") or _cause(res.get("traceback_tail", []))
                label += f" ({cause.split(':', 1)[0] if cause else res.get('exception', '')})"
            tt = None
            if "first_s" in res:
                tt = res.get("build_s", 0) + res["first_s"]
            line += (
                f" {label} | {_fmt(res.get('value_err'))} | {_fmt(res.get('envelope_err'))} |"
                f" {_fmt(tt, '.2f')} |"
            )
        lines.append(line)
    lines.append("")
    for t in tools:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts[t].items()))
        if ok_flagged.get(t):
            summary += f" (of the ok, {ok_flagged[t]} flagged with DegenerateDerivativeWarning)"
        lines.append(f"**{t}**: {summary}  ")
    lines.append("")
    errors = [
        f"- {name} / {t}: {res.get('exception')}: {res.get('message')}"
        + (
            f" — cause: {res.get('cause') or _cause(res.get('traceback_tail', []))}"
            if res.get("cause") or _cause(res.get("traceback_tail", []))
            else ""
        )
        for name in sorted(results)
        for t, res in results[name]["tools"].items()
        if res["class"] == "error"
    ]
    if errors:
        lines += ["Errors:", ""] + errors + [""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per (problem, tool)")
    ap.add_argument("--only", default="", help="comma-separated problem names")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "maros_meszaros"))
    ap.add_argument(
        "--markdown-only", action="store_true", help="rewrite OUT.md from OUT.json, run nothing"
    )
    ap.add_argument("--worker", nargs=2, metavar=("NAME", "TOOL"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker(*args.worker)
        print("RESULT " + json.dumps(res), flush=True)
        return
    if args.markdown_only:
        with open(args.out + ".json") as f:
            saved = json.load(f)
        write_markdown(args.out + ".md", saved["results"], saved["meta"]["tools"], saved["meta"])
        return
    tools = [t for t in args.tools.split(",") if t]
    names = [n for n in args.only.split(",") if n] or mm.names()
    meta = dict(
        date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        timeout_s=args.timeout,
        tools=tools,
        value_tol=VALUE_TOL,
        envelope_tol=ENVELOPE_TOL,
    )
    results: dict = {}
    for name in names:
        d = mm.load(name)
        try:
            ref = reference(name)
        except Exception as e:  # noqa: BLE001
            ref = dict(status="error", value=None, message=_first_line(e))
        row = dict(n=d["n"], m=d["m"], reference=ref, tools={})
        for tool in tools:
            res = classify(run_one(name, tool, args.timeout), ref.get("value"))
            row["tools"][tool] = res
            print(
                f"{name:10s} {tool:12s} {res['class']:8s} "
                f"val={_fmt(res.get('value_err'))} env={_fmt(res.get('envelope_err'))} "
                f"wall={res.get('wall_s', 0):.1f}s {res.get('exception', '')}",
                flush=True,
            )
        results[name] = row
        # written after each problem so that an interrupted run leaves partial results
        with open(args.out + ".json", "w") as f:
            json.dump(dict(meta=meta, results=results), f, indent=1)
        write_markdown(args.out + ".md", results, tools, meta)


if __name__ == "__main__":
    main()
