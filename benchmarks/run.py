"""Benchmark cvxjax against cvxpylayers, qpax, JAXopt and the bare solvers, in one run.

Usage (from the repository root)::

    python benchmarks/run.py                 # full suite, ~15 min on 2 cores
    python benchmarks/run.py --quick         # one small workload per family, ~2 min
    python benchmarks/run.py --only dense_qp-n50-b1,lasso --tools cvxjax,cvxpylayers
    python benchmarks/run.py --list          # workloads and tools

Writes ``benchmarks/results/results.json``, ``benchmark.png`` and ``table.md`` for a full run
(``quick.*`` for ``--quick``, ``partial.*`` for a run restricted with ``--only``/``--tools``,
unless ``--merge`` folds it into ``results.json``), and prints the table and the targets.
See ``benchmarks/README.md``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("JAX_ENABLE_X64", "1")
# One BLAS thread for every tool (JAX's CPU LAPACK calls go through SciPy's OpenBLAS too): the
# problems here are small, and on 2 cores OpenBLAS's spin-waiting threads made a 212x212 solve
# take up to 390 ms instead of 0.4 ms whenever another process wanted a core. Same for all.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # a script, not the library: float64 throughout

import argparse  # noqa: E402
import datetime  # noqa: E402
import fnmatch  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from importlib import metadata  # noqa: E402

import report  # noqa: E402
from harness import AGREE_TOL, Config, Runner  # noqa: E402
from tools import DEFAULT_TOOLS, TOOLS  # noqa: E402
from workloads import ALL_SPECS, QUICK_NAMES, make_instance, reference_indices  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = [
    "cvxjax",
    "jax",
    "jaxlib",
    "numpy",
    "scipy",
    "cvxpy",
    "clarabel",
    "osqp",
    "scs",
    "cvxpylayers",
    "diffcp",
    "qpax",
    "jaxopt",
    "matplotlib",
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"run only {', '.join(QUICK_NAMES)} with fewer repeats (~2 min)",
    )
    p.add_argument(
        "--only",
        default=None,
        help="comma-separated workloads: names, families or glob patterns "
        "(e.g. 'dense_qp-n50-b1', 'lasso', 'dense_qp-n200-*')",
    )
    p.add_argument(
        "--tools",
        default=None,
        help=f"comma-separated tools (default: {','.join(DEFAULT_TOOLS)}; all: {','.join(TOOLS)})",
    )
    p.add_argument(
        "--repeats", type=int, default=None, help="timed calls per mode (default 7; 5 quick)"
    )
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per mode after which repeating stops (default 3; 1 quick)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds per (workload, tool) worker before it is killed (default 180; 90 quick)",
    )
    p.add_argument(
        "--stat",
        choices=("median", "min"),
        default="median",
        help="statistic of the timed samples shown (default median; both are saved)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="re-make the table, targets and plot from the saved JSON, no runs",
    )
    p.add_argument(
        "--readme",
        action="store_true",
        help="write the machine, table and targets into benchmarks/README.md",
    )
    p.add_argument("--out", default=os.path.join(HERE, "results"), help="output directory")
    p.add_argument(
        "--merge",
        action="store_true",
        help="fold the measured (workload, tool) pairs into results.json",
    )
    p.add_argument(
        "--inline",
        action="store_true",
        help="run in this process (debugging; no timeouts, memory not per tool)",
    )
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--list", action="store_true", help="list workloads and tools and exit")
    return p.parse_args(argv)


def select_specs(args):
    if args.only:
        patterns = [s.strip() for s in args.only.split(",") if s.strip()]
        chosen = [
            s
            for s in ALL_SPECS
            if any(
                fnmatch.fnmatch(s.name, pat) or s.family == pat or s.name == pat for pat in patterns
            )
        ]
        if not chosen:
            sys.exit(f"--only {args.only!r} matches no workload; see --list")
        return chosen
    if args.quick:
        return [s for s in ALL_SPECS if s.name in QUICK_NAMES]
    return list(ALL_SPECS)


def select_tools(args):
    names = [t.strip() for t in args.tools.split(",")] if args.tools else list(DEFAULT_TOOLS)
    unknown = [t for t in names if t not in TOOLS]
    if unknown:
        sys.exit(f"unknown tools {unknown}; choose from {list(TOOLS)}")
    # cvxjax's default first, so the explicit-solver variants can be recognized as duplicates.
    return sorted(names, key=lambda t: (t != "cvxjax", list(TOOLS).index(t)))


def machine_info():
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cores": os.cpu_count(),
    }
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in (
                "Model name",
                "CPU(s)",
                "Thread(s) per core",
                "L2 cache",
                "L3 cache",
                "Hypervisor vendor",
            ):
                info[key.strip()] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/meminfo") as f:
            info["memory_gb"] = round(int(f.readline().split()[1]) / 1024**2, 1)
    except OSError:
        pass
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    info["versions"] = versions
    try:
        info["git_commit"] = subprocess.run(
            ["git", "-C", os.path.dirname(HERE), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        info["git_dirty"] = bool(
            subprocess.run(
                ["git", "-C", os.path.dirname(HERE), "status", "--porcelain", "--", "cvxjax"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def status_of(rec):
    if rec.get("unavailable"):
        return "unavailable"
    if rec.get("error"):
        return "timeout" if rec["error"].startswith("timeout") else "fail"
    return "ok"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def summary_line(rec):
    if rec["status"] != "ok":
        text = rec.get("error") or rec.get("unavailable") or ""
        return f"{rec['status']}: {text.splitlines()[0][:160] if text else ''}"
    parts = [f"fwd {report.median_ms(rec, 'fwd'):.2f} ms"]
    if rec.get("fwd_bwd"):
        parts.append(f"fwd+bwd {report.median_ms(rec, 'fwd_bwd'):.2f} ms")
    if rec.get("max_abs_diff") is not None:
        parts.append(f"|dx| {rec['max_abs_diff']:.1e}" + ("" if rec.get("agrees") else " WRONG"))
    return ", ".join(parts)


def measure_all(args, specs, tool_names, config):
    """Run every applicable (workload, tool) pair; returns the list of result records."""
    runner = Runner(config, inline=args.inline)
    results = []
    pairs = [(s, t) for s in specs for t in tool_names if TOOLS[t].applies(s)]
    log(
        f"{len(specs)} workloads x {len(tool_names)} tools -> {len(pairs)} runs "
        f"(repeats {config.repeats}, budget {config.budget_s} s, timeout {config.timeout_s} s)"
    )
    done = 0
    for spec in specs:
        inst = make_instance(spec)
        t = time.perf_counter()
        reference = inst.reference(reference_indices(spec))
        log(
            f"== {spec.name}: CVXPY reference for elements {reference_indices(spec)} "
            f"({time.perf_counter() - t:.1f} s)"
        )
        default_solver = None
        for tool_name in tool_names:
            tool = TOOLS[tool_name]
            if not tool.applies(spec):
                continue
            done += 1
            base = {
                "workload": spec.name,
                "family": spec.family,
                "n": spec.n,
                "batch": spec.batch,
                "tool": tool_name,
                "kind": tool.kind,
                "jit": tool.jit,
            }
            if tool.kind == "cvxjax" and tool.solver and default_solver == tool.solver:
                results.append({**base, "status": "same", "same_as": "cvxjax"})
                log(
                    f"[{done}/{len(pairs)}] {spec.name} / {tool_name}: "
                    "same solver as cvxjax default, not re-run"
                )
                continue
            rec = {**base, **runner.run(spec, tool_name, reference)}
            rec["status"] = status_of(rec)
            if tool_name == "cvxjax":
                default_solver = (rec.get("info") or {}).get("resolved_solver")
            results.append(rec)
            log(
                f"[{done}/{len(pairs)}] {spec.name} / {tool_name}: {summary_line(rec)} "
                f"({rec['wall_s']:.1f} s)"
            )
    return results


def merge(results, path):
    """``results`` folded into the saved ``path`` (its other pairs are kept)."""
    with open(path) as f:
        old = json.load(f)
    fresh = {(r["workload"], r["tool"]) for r in results}
    kept = [r for r in old["results"] if (r["workload"], r["tool"]) not in fresh]
    order = {s.name: i for i, s in enumerate(ALL_SPECS)}
    return sorted(
        kept + results, key=lambda r: (order.get(r["workload"], 99), list(TOOLS).index(r["tool"]))
    )


def write_outputs(results, meta, out_dir, stem, plot=True, readme=False):
    """Ratios, targets, JSON, markdown table, plot; prints the table and targets."""
    report.add_ratios(results)
    entries = report.targets(results)
    table, fails = report.table(results), report.failures(results)
    targets = report.targets_text(entries)
    full = stem == "results"
    png = os.path.join(out_dir, "benchmark.png" if full else f"{stem}.png")
    meta = {**meta, "stat": report.STAT}
    with open(os.path.join(out_dir, f"{stem}.json"), "w") as f:
        json.dump(
            {"meta": meta, "targets": entries, "results": results},
            f,
            indent=1,
            default=report.finite_or_none,
        )
    with open(os.path.join(out_dir, "table.md" if full else f"{stem}.md"), "w") as f:
        f.write(table + "\n\n" + (fails + "\n\n" if fails else "") + "Targets:\n" + targets + "\n")
    if readme:
        report.update_readme(
            os.path.join(HERE, "README.md"),
            {
                "machine": report.machine_text(meta),
                "table": table + ("\n\nFailures and disagreements:\n\n" + fails if fails else ""),
                "targets": report.targets_table(entries) + "\n\n" + "Backward/forward of every "
                "cvxjax run: "
                + ", ".join(
                    f"{e['numerator']} on {e['workload']} {e['measured']:.2f}"
                    for e in entries
                    if e["target"].startswith("backward")
                )
                + ".",
            },
        )
    if plot:
        machine = meta.get("machine", {})
        report.plot(
            results,
            png,
            f"cvxjax benchmarks ({machine.get('Model name', '')}, "
            f"{machine.get('cores')} cores, {meta.get('date')})",
        )
    print(table)
    print()
    print(
        f"Times are {report.STAT}s in ms. ×peer: ratio to the fastest of cvxpylayers/qpax/"
        "jaxopt whose answer agrees with CVXPY (same mode); ×floor: ratio to the fastest bare "
        "solver (forward); bwd/fwd = (fwd+bwd - fwd) / fwd. Last column: max |x - x_cvxpy| "
        "over the checked batch elements."
    )
    if fails:
        print("\nFailures / disagreements:\n" + fails)
    print("\nTargets (cvxjax = default solver):\n" + targets)
    wall = meta.get("wall_s")
    print(
        f"\nWrote {out_dir}/{stem}.json"
        + (f", {png}" if plot else "")
        + (
            f"; total {wall:.0f} s, load average {meta['loadavg_start'][0]:.1f} -> "
            f"{meta['loadavg_end'][0]:.1f}"
            if wall
            else ""
        )
    )


def main(argv=None):
    args = parse_args(argv)
    report.STAT = args.stat
    if args.list:
        print("workloads:", " ".join(s.name for s in ALL_SPECS))
        print("quick:    ", " ".join(QUICK_NAMES))
        print("tools:    ", " ".join(TOOLS), f"(default: {' '.join(DEFAULT_TOOLS)})")
        return 0
    partial = bool(args.only or args.tools)
    stem = "quick" if args.quick else ("partial" if partial and not args.merge else "results")
    os.makedirs(args.out, exist_ok=True)
    if args.report_only:
        with open(os.path.join(args.out, f"{stem}.json")) as f:
            saved = json.load(f)
        write_outputs(
            saved["results"], saved["meta"], args.out, stem, not args.no_plot, args.readme
        )
        return 0

    specs, tool_names = select_specs(args), select_tools(args)
    config = Config(
        repeats=args.repeats or (5 if args.quick else 7),
        budget_s=args.budget or (1.0 if args.quick else 3.0),
        timeout_s=args.timeout or (90.0 if args.quick else 180.0),
    )
    started = time.time()
    meta = {
        "command": " ".join(["python", "benchmarks/run.py"] + (argv or sys.argv[1:])),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "repeats": config.repeats,
            "budget_s": config.budget_s,
            "timeout_s": config.timeout_s,
            "agree_tol": AGREE_TOL,
            "isolation": "inline" if args.inline else "forkserver process per pair",
        },
        "loadavg_start": os.getloadavg(),
    }
    results = measure_all(args, specs, tool_names, config)
    meta["loadavg_end"] = os.getloadavg()
    meta["wall_s"] = time.time() - started
    path = os.path.join(args.out, "results.json")
    if args.merge and os.path.exists(path):
        with open(path) as f:
            meta["merged_into"] = json.load(f).get("meta", {}).get("command")
        results = merge(results, path)
    write_outputs(results, meta, args.out, stem, not args.no_plot, args.readme)
    return 0


if __name__ == "__main__":
    sys.exit(main())
