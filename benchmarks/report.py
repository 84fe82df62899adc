"""Turning measurements into ratios, the results table, the targets check and the plot."""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

from tools import TOOLS

MODES = ("fwd", "fwd_bwd")
MODE_LABEL = {"fwd": "forward", "fwd_bwd": "forward + backward"}


#: Statistic of the timed samples used in the table, ratios, targets and plot: "median"
#: (default) or "min" (more robust on a machine shared with other work).
STAT = "median"


def median_ms(rec: Dict[str, Any], mode: str) -> Optional[float]:
    """The summary time (``STAT``) of one mode of one record, in ms."""
    entry = rec.get(mode)
    return None if not entry else entry[f"{STAT}_ms"]


def by_workload(results: List[Dict[str, Any]]) -> Dict[str, List[Dict[str, Any]]]:
    groups: Dict[str, List[Dict[str, Any]]] = {}
    for rec in results:
        groups.setdefault(rec["workload"], []).append(rec)
    return groups


def _ok(rec) -> bool:
    return rec.get("status") == "ok"


def _fastest(recs: Iterable[Dict[str, Any]], mode: str, kinds) -> Optional[Dict[str, Any]]:
    best = None
    for rec in recs:
        t = median_ms(rec, mode)
        if _ok(rec) and rec["kind"] in kinds and t is not None and rec.get("agrees", True):
            if best is None or t < median_ms(best, mode):
                best = rec
    return best


def add_ratios(results: List[Dict[str, Any]]) -> None:
    """Add ``ratio_vs_best_peer`` (per mode), ``fwd_vs_floor`` and ``bwd_over_fwd`` in place.

    The best peer is the fastest *differentiable* tool other than cvxjax (cvxpylayers, qpax,
    JAXopt) whose answer agrees with CVXPY; the floor is the fastest bare solver (forward).
    """
    for recs in by_workload(results).values():
        floor = _fastest(recs, "fwd", ("bare",))
        for mode in MODES:
            peer = _fastest(recs, mode, ("peer",))
            for rec in recs:
                t = median_ms(rec, mode)
                rec.setdefault("best_peer", {})[mode] = peer["tool"] if peer else None
                rec.setdefault("ratio_vs_best_peer", {})[mode] = (
                    t / median_ms(peer, mode) if peer and t is not None else None
                )
        for rec in recs:
            t = median_ms(rec, "fwd")
            rec["floor"] = floor["tool"] if floor else None
            rec["fwd_vs_floor"] = t / median_ms(floor, "fwd") if floor and t else None
            f, fb = median_ms(rec, "fwd"), median_ms(rec, "fwd_bwd")
            rec["bwd_over_fwd"] = (fb - f) / f if f and fb else None


# ---------------------------------------------------------------------------------------------
# Table


def _fmt_ms(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def _fmt_ratio(v: Optional[float]) -> str:
    return "-" if v is None else (f"{v:.2f}x" if v < 10 else f"{v:.0f}x")


def _fmt_s(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.2f}"


def _tool_label(rec) -> str:
    label = rec["tool"]
    if not rec.get("jit", True) and rec["kind"] != "bare":
        label += " (no jit)"
    if rec["kind"] == "bare":
        label += " (bare, fwd only)"
    return label


def _status_cell(rec) -> str:
    status = rec.get("status")
    if status == "ok":
        if rec.get("agrees") is False:
            return f"WRONG {rec['max_abs_diff']:.1e}"
        if rec.get("grad_finite") is False:
            return "NaN grad"
        return "-" if rec.get("max_abs_diff") is None else f"{rec['max_abs_diff']:.0e}"
    if status == "same":
        return f"= {rec.get('same_as')}"
    if status == "unavailable":
        return "unavailable"
    if status == "timeout":
        return "timeout"
    return "fail"


def table(results: List[Dict[str, Any]]) -> str:
    """A markdown table: one block of rows per workload."""
    head = (
        "| workload | tool | fwd ms | fwd ×peer | fwd ×floor | fwd+bwd ms | fwd+bwd ×peer "
        "| bwd/fwd | setup s | 1st fwd s | 1st grad s | peak MB (+Δ) | max abs Δx |"
    )
    rule = "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"
    lines = [head, rule]
    for workload, recs in by_workload(results).items():
        for rec in recs:
            ok = _ok(rec)
            r = rec.get("ratio_vs_best_peer", {})
            mem = "-"
            if rec.get("peak_rss_mb") is not None and rec.get("construct_s") is not None:
                mem = f"{rec['peak_rss_mb']:.0f} (+{rec.get('peak_delta_mb', 0):.0f})"
            lines.append(
                "| "
                + " | ".join(
                    [
                        workload,
                        _tool_label(rec),
                        _fmt_ms(median_ms(rec, "fwd"))
                        if rec.get("fwd")
                        else ("-" if ok else _status_cell(rec)),
                        _fmt_ratio(r.get("fwd")),
                        _fmt_ratio(rec.get("fwd_vs_floor")),
                        _fmt_ms(median_ms(rec, "fwd_bwd"))
                        if rec.get("fwd_bwd")
                        else (
                            "n/a" if rec["kind"] == "bare" else ("-" if ok else _status_cell(rec))
                        ),
                        _fmt_ratio(r.get("fwd_bwd")),
                        _fmt_ratio(rec.get("bwd_over_fwd")),
                        _fmt_s(rec.get("construct_s")),
                        _fmt_s(rec.get("first_fwd_s")),
                        _fmt_s(rec.get("first_grad_s")),
                        mem,
                        _status_cell(rec),
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def failures(results: List[Dict[str, Any]]) -> str:
    """Failed, timed-out, wrong and unavailable runs with their error text."""
    lines = []
    for rec in results:
        if rec.get("status") in ("fail", "timeout", "unavailable") or rec.get("agrees") is False:
            why = (
                rec.get("error")
                or rec.get("unavailable")
                or (f"max abs difference to CVXPY {rec.get('max_abs_diff'):.2e}")
            )
            lines.append(f"- {rec['workload']} / {rec['tool']}: {rec.get('status')}: {why}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Targets


def _get(results, workload, tool):
    for rec in results:
        if rec["workload"] == workload and rec["tool"] == tool:
            return rec
    return None


def _ratio_target(results, text, workload, mode, num_tool, den, limit, den_mode=None):
    num = _get(results, workload, num_tool)
    if den == "floor":
        den_rec = _fastest(by_workload(results).get(workload, []), den_mode or mode, ("bare",))
    else:
        den_rec = _get(results, workload, den)
    entry = {
        "target": text,
        "workload": workload,
        "limit": limit,
        "measured": None,
        "met": None,
        "numerator": num_tool,
        "denominator": den_rec["tool"] if den_rec else den,
    }
    a = median_ms(num, mode) if num else None
    b = median_ms(den_rec, den_mode or mode) if den_rec else None
    if a is not None and b:
        entry["measured"] = a / b
        entry["met"] = a / b <= limit
        entry["numerator_ms"], entry["denominator_ms"] = a, b
        if not entry["met"]:
            entry["gap"] = (
                f"{a / b / limit:.2f}x over the limit: {a:.2f} ms measured, "
                f"{limit * b:.2f} ms allowed"
            )
    else:
        why = [
            f"{r['tool']} {r.get('status')}: {(r.get('error') or '').splitlines()[0][:90]}"
            for r in (num, den_rec)
            if r and r.get("status") in ("fail", "timeout")
        ]
        entry["note"] = "; ".join(why) or "not run (not selected, or the workload was skipped)"
    return entry


def targets(results: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The speed targets of the benchmark issue, with measured ratios (cvxjax = default solver)."""
    out = [
        _ratio_target(
            results,
            "dense QP n=50 batch 1, fwd+bwd: cvxjax no slower than qpax",
            "dense_qp-n50-b1",
            "fwd_bwd",
            "cvxjax",
            "qpax",
            1.0,
        ),
    ]
    for mode in MODES:
        out.append(
            _ratio_target(
                results,
                f"dense QP n=200 batch 32, {MODE_LABEL[mode]}: cvxjax <= 0.1x cvxpylayers",
                "dense_qp-n200-b32",
                mode,
                "cvxjax",
                "cvxpylayers",
                0.1,
            )
        )
    for mode in MODES:
        out.append(
            _ratio_target(
                results,
                f"sparse QP n=2000, {MODE_LABEL[mode]}: cvxjax <= 0.6x cvxpylayers",
                "sparse_qp-n2000",
                mode,
                "cvxjax",
                "cvxpylayers",
                0.6,
            )
        )
    out.append(
        _ratio_target(
            results,
            "sparse QP n=2000, forward: cvxjax <= 1.3x the fastest bare solver",
            "sparse_qp-n2000",
            "fwd",
            "cvxjax",
            "floor",
            1.3,
        )
    )
    # The same comparison solver by solver (cvxjax's overhead over the solver it calls).
    default = _get(results, "sparse_qp-n2000", "cvxjax")
    resolved = str((default or {}).get("info", {}).get("resolved_solver", "")).lower()
    pairs = [("cvxjax", resolved)] + [
        (f"cvxjax-{b}", b) for b in ("osqp", "clarabel") if b != resolved
    ]  # cvxjax-<default> was not re-run
    for layer_tool, bare in pairs:
        if bare in ("osqp", "clarabel"):
            out.append(
                _ratio_target(
                    results,
                    f"(same solver) sparse QP n=2000, forward: {layer_tool} <= 1.3x bare {bare}",
                    "sparse_qp-n2000",
                    "fwd",
                    layer_tool,
                    bare,
                    1.3,
                )
            )
    for mode in MODES:
        out.append(
            _ratio_target(
                results,
                f"lasso SOCP n=100 batch 32, {MODE_LABEL[mode]}: cvxjax <= 0.2x cvxpylayers",
                "lasso-n100-b32",
                mode,
                "cvxjax",
                "cvxpylayers",
                0.2,
            )
        )
    # Backward <= 0.5x forward where a factorization can be reused: the pure-JAX QP solver
    # keeps its final KKT factorization for the backward pass; checked for every cvxjax
    # variant so the numbers for the host solvers (which do not reuse one) are visible too.
    for rec in results:
        if rec["kind"] == "cvxjax" and rec.get("bwd_over_fwd") is not None:
            b = rec["bwd_over_fwd"]
            entry = {
                "target": f"backward <= 0.5x forward ({rec['tool']}, {rec['workload']})",
                "workload": rec["workload"],
                "limit": 0.5,
                "measured": b,
                "met": b <= 0.5,
                "numerator": rec["tool"],
                "denominator": rec["tool"],
                "reuses_factorization": rec["tool"] == "cvxjax-jax"
                or rec.get("info", {}).get("resolved_solver") == "JAX",
            }
            if not entry["met"]:
                entry["gap"] = f"{b / 0.5:.2f}x over the limit"
            out.append(entry)
    return out


def targets_text(entries: List[Dict[str, Any]]) -> str:
    lines = []
    for e in entries:
        if e["target"].startswith("backward") and not e.get("reuses_factorization"):
            continue
        if e["measured"] is None:
            lines.append(f"- {e['target']}: NOT MEASURED: {e.get('note', '')}")
            continue
        verdict = "MET" if e["met"] else f"MISSED ({e.get('gap')})"
        lines.append(f"- {e['target']}: measured {e['measured']:.3g} -> {verdict}")
    bwd = [e for e in entries if e["target"].startswith("backward")]
    if bwd:
        lines.append(
            "- backward/forward of every cvxjax run (target <= 0.5 where a factorization "
            "is reused): "
            + ", ".join(f"{e['numerator']}@{e['workload']}={e['measured']:.2f}" for e in bwd)
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Plot


_COLORS = {
    "cvxjax": "#1f4e9c",
    "cvxjax-clarabel": "#3b7dd8",
    "cvxjax-osqp": "#6fa8ef",
    "cvxjax-jax": "#00a6a6",
    "cvxjax-scs": "#9cc5f5",
    "cvxpylayers": "#d62728",
    "qpax": "#ff7f0e",
    "jaxopt": "#2ca02c",
    "osqp": "#7f7f7f",
    "clarabel": "#303030",
}


def plot(results: List[Dict[str, Any]], path: str, title: str) -> None:
    """Grouped bar chart (log scale): one panel per mode, one group per workload.

    Bare solvers are drawn hatched (forward only), answers that disagree with CVXPY with a red
    edge, and failed or timed-out runs as a small "fail"/"t/o" label at the bottom.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_workload(results)
    workloads = list(groups)
    tools = [t for t in TOOLS if any(r["tool"] == t and r.get("status") != "same" for r in results)]
    fig_width = max(10, 1.0 * len(workloads) + 4)
    fig, axes = plt.subplots(2, 1, figsize=(fig_width, 9), sharex=True)
    width = 0.85 / max(1, len(tools))
    for ax, mode in zip(axes, MODES):
        for i, tool in enumerate(tools):
            kind = TOOLS[tool].kind
            for j, workload in enumerate(workloads):
                rec = next((r for r in groups[workload] if r["tool"] == tool), None)
                if rec is None:
                    continue
                x = j - 0.425 + (i + 0.5) * width
                t = median_ms(rec, mode)
                if t is not None:
                    wrong = rec.get("agrees") is False
                    ax.bar(
                        x,
                        t,
                        width=width,
                        color=_COLORS.get(tool),
                        hatch="//" if kind == "bare" else None,
                        edgecolor="red" if wrong else "white",
                        linewidth=1.2 if wrong else 0.3,
                    )
                elif rec.get("status") in ("fail", "timeout") and not (
                    mode == "fwd_bwd" and kind == "bare"
                ):
                    ax.text(
                        x,
                        0.02,
                        "t/o" if rec["status"] == "timeout" else "fail",
                        transform=ax.get_xaxis_transform(),
                        rotation=90,
                        fontsize=6,
                        ha="center",
                        va="bottom",
                        color=_COLORS.get(tool),
                    )
        ax.set_yscale("log")
        ax.set_ylabel(f"{MODE_LABEL[mode]} [ms]")
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.set_title(f"{MODE_LABEL[mode]} ({STAT}; lower is better)", fontsize=10)
    axes[-1].set_xticks(range(len(workloads)))
    axes[-1].set_xticklabels(workloads, rotation=35, ha="right", fontsize=8)
    handles = [
        plt.Rectangle(
            (0, 0), 1, 1, color=_COLORS.get(t), hatch="//" if TOOLS[t].kind == "bare" else None
        )
        for t in tools
    ]
    labels = [
        t
        + (" (bare, fwd)" if TOOLS[t].kind == "bare" else "")
        + (" (no jit)" if TOOLS[t].kind == "peer" and not TOOLS[t].jit else "")
        for t in tools
    ]
    handles.append(plt.Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="red"))
    labels.append("disagrees with CVXPY")
    fig.legend(handles, labels, loc="center right", fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.2 / fig_width, 1))  # ~2.2 in on the right for the legend
    fig.savefig(path, dpi=110)
    plt.close(fig)


def finite_or_none(value):
    """JSON-safe float."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# README


def targets_table(entries: List[Dict[str, Any]]) -> str:
    """Markdown table of the targets (the backward one for cvxjax-jax runs only)."""
    lines = ["| target | measured | limit | met | gap |", "|---|---|---|---|---|"]
    for e in entries:
        if e["target"].startswith("backward") and not e.get("reuses_factorization"):
            continue
        if e["measured"] is None:
            lines.append(
                f"| {e['target']} | not measured | {e['limit']} | - | {e.get('note', '')} |"
            )
            continue
        detail = ""
        if "numerator_ms" in e:
            detail = f" ({e['numerator_ms']:.2f} / {e['denominator_ms']:.2f} ms)"
        lines.append(
            f"| {e['target']} | {e['measured']:.3g}{detail} | {e['limit']} | "
            f"{'yes' if e['met'] else '**no**'} | {e.get('gap', '')} |"
        )
    return "\n".join(lines)


def machine_text(meta: Dict[str, Any]) -> str:
    m = meta.get("machine", {})
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items() if v)
    load = meta.get("loadavg_start"), meta.get("loadavg_end")
    return "\n".join(
        [
            f"- CPU: {m.get('Model name', '?')} ({m.get('Hypervisor vendor', 'bare metal')} VM), "
            f"{m.get('cores')} cores, {m.get('Thread(s) per core', '?')} thread per core, "
            f"L2 {m.get('L2 cache', '?')}, L3 {m.get('L3 cache', '?')}; RAM {m.get('memory_gb')} GB",
            f"- {m.get('platform')}, Python {m.get('python')}",
            f"- packages: {versions}",
            f"- cvxjax commit {m.get('git_commit', '?')}"
            + (" with uncommitted changes in cvxjax/" if m.get("git_dirty") else ""),
            f"- command: `{meta.get('command')}`, run {meta.get('date')}, "
            f"{(meta.get('wall_s') or 0) / 60:.1f} min; statistic: {meta.get('stat', STAT)}",
            f"- load average (1 min) {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end"
            if load[0] and load[1]
            else "- load average: not recorded",
        ]
    )


def update_readme(path: str, sections: Dict[str, str]) -> None:
    """Replace the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` markers."""
    with open(path) as f:
        text = f.read()
    for name, body in sections.items():
        begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < 0:
            continue
        text = text[: i + len(begin)] + "\n" + body.strip() + "\n" + text[j:]
    with open(path, "w") as f:
        f.write(text)
