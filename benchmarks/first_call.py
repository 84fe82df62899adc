"""Time to the first answer and peak memory, cvxjax against qpax, each in a fresh process.

A notebook user or a training script pays compilation once per new problem; this measures it
the way they see it. For each system and each repeat a new Python process is started that

1. imports JAX, CVXPY and the system, builds the workload (``dense_qp-n50-b1`` of
   ``benchmarks/workloads.py`` by default: ``min ½‖Lx‖² + qᵀx s.t. Gx ≤ h, Ax = b`` with
   parameters q, h, b) and records its resident set size (RSS);
2. constructs the layer (cvxjax: ``CvxpyLayer``, CVXPY canonicalization; qpax: nothing) and
   calls the jitted forward once: **first solution** (construction + trace + compile + run);
3. then calls the jitted gradient of ``sum(x)`` with respect to every parameter once:
   **first gradient** (cumulative, from the start of construction);
4. reports the peak RSS (Linux ``VmHWM``) minus the RSS of step 1: **peak memory added**.

A second kind of process (``grad-only``) goes straight from construction to the first gradient,
as a training loop does (it never calls the forward alone).

Usage::

    python benchmarks/first_call.py                        # 3 processes per system and mode
    python benchmarks/first_call.py --repeats 5 --n 50
    python benchmarks/first_call.py --cache                 # also: cvxjax with a warm persistent
                                                             # compilation cache (2nd process on),
                                                             # as built by default and without
                                                             # host callbacks (only that caches)
    python benchmarks/first_call.py --json out.json

Medians over the repeats are printed with the cvxjax/qpax ratios. Nothing else may run on the
machine for the numbers to mean much (compilation is single-threaded and CPU bound).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _rss_mb():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024.0
    return out["VmRSS"], out["VmHWM"]


def worker(system: str, n: int, mode: str, cache_dir: str | None) -> dict:
    """Runs in the child process; returns the measurements as a dict."""
    t_start = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    if cache_dir:
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        # Cache every executable, however quick to compile (the defaults skip those under 1 s).
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import jax.numpy as jnp

    sys.path.insert(0, HERE)
    from workloads import Spec, make_instance

    if system.startswith("cvxjax"):
        import cvxjax
    else:
        import qpax
    inst = make_instance(Spec("dense_qp", n, 1))
    params = [jnp.asarray(v) for v in inst.values]
    jnp.zeros(1).block_until_ready()  # start the runtime before the baseline
    t_imported = time.perf_counter()
    rss0, _ = _rss_mb()

    t0 = time.perf_counter()
    if system.startswith("cvxjax"):
        # "cvxjax-nocallback": a layer whose programs hold no host callback (the JAX solver
        # without the Clarabel fallback, failures and degenerate derivatives as NaN instead
        # of an error or warning raised from a callback). JAX's persistent cache does not
        # store executables with host callbacks, so only this configuration can be cached.
        kwargs = {}
        if system == "cvxjax-nocallback":
            kwargs = dict(solver="JAX", on_failure="nan", on_degenerate="nan")
        layer = cvxjax.CvxpyLayer(inst.problem, inst.parameters, [inst.x], **kwargs)

        def solve(*p):
            return layer(*p)[0]
    else:

        def solve(*p):
            return qpax.solve_qp_primal(*inst.dense(*p))

    def loss(*p):
        return jnp.sum(solve(*p))

    fwd = jax.jit(solve)
    grad = jax.jit(jax.grad(loss, argnums=tuple(range(len(params)))))
    t_constructed = time.perf_counter()
    rec = {
        "system": system,
        "mode": mode,
        "n": n,
        "import_s": t_imported - t_start,
        "construct_s": t_constructed - t0,
    }
    if mode == "fwd-grad":
        x = fwd(*params)
        x.block_until_ready()
        rec["first_solution_s"] = time.perf_counter() - t0
        g = grad(*params)
        jax.block_until_ready(g)
        rec["first_gradient_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        jax.block_until_ready(fwd(*params))
        rec["second_solution_s"] = time.perf_counter() - t
    else:
        g = grad(*params)
        jax.block_until_ready(g)
        rec["first_gradient_s"] = time.perf_counter() - t0
    rss1, peak = _rss_mb()
    rec["rss_before_mb"] = rss0
    rec["peak_added_mb"] = peak - rss0
    rec["rss_added_mb"] = rss1 - rss0
    return rec


def run_child(system, n, mode, cache_dir=None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", system, "--n", str(n)]
    cmd += ["--mode", mode]
    if cache_dir:
        cmd += ["--cache-dir", cache_dir]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("JAX_PLATFORMS", "cpu")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{system} {mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--systems", default="cvxjax,qpax")
    ap.add_argument("--cache", action="store_true", help="also measure a warm persistent cache")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="fwd-grad", help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.mode, args.cache_dir)))
        return

    systems = args.systems.split(",")
    runs = {}
    for r in range(args.repeats):
        # Interleave the systems so that a change of machine load hits both alike.
        for system in systems:
            for mode in ("fwd-grad", "grad-only"):
                rec = run_child(system, args.n, mode)
                runs.setdefault((system, mode), []).append(rec)
                print(f"  [{r}] {system:7s} {mode:9s} " + _fmt(rec), flush=True)
    if args.cache and "cvxjax" in systems:
        for system in ("cvxjax", "cvxjax-nocallback"):
            with tempfile.TemporaryDirectory() as cache_dir:
                run_child(system, args.n, "fwd-grad", cache_dir)  # fills the cache
                for r in range(args.repeats):
                    rec = run_child(system, args.n, "fwd-grad", cache_dir)
                    runs.setdefault((f"{system}+cache", "fwd-grad"), []).append(rec)
                    print(f"  [{r}] {system}+cache fwd-grad " + _fmt(rec), flush=True)

    summary = {}
    for (system, mode), recs in runs.items():
        keys = [k for k in recs[0] if k.endswith("_s") or k.endswith("_mb")]
        summary[f"{system}/{mode}"] = {k: statistics.median(r[k] for r in recs) for k in keys}
    print(f"\nmedians over {args.repeats} fresh processes, dense QP n={args.n}:")
    for key, med in summary.items():
        print(f"  {key:22s} " + _fmt(med))
    if "cvxjax" in systems and "qpax" in systems:
        print("\nratios cvxjax / qpax:")
        for mode, fields in (
            ("fwd-grad", ("first_solution_s", "first_gradient_s", "peak_added_mb")),
            ("grad-only", ("first_gradient_s", "peak_added_mb")),
        ):
            c, q = summary[f"cvxjax/{mode}"], summary[f"qpax/{mode}"]
            print(f"  {mode:9s} " + "  ".join(f"{f} {c[f] / q[f]:.2f}x" for f in fields))
        for key in ("cvxjax+cache/fwd-grad", "cvxjax-nocallback+cache/fwd-grad"):
            if key in summary:
                c, q = summary[key], summary["qpax/fwd-grad"]
                fields = ("first_solution_s", "first_gradient_s", "peak_added_mb")
                print(f"  {key:9s} " + "  ".join(f"{f} {c[f] / q[f]:.2f}x" for f in fields))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"runs": {f"{s}/{m}": v for (s, m), v in runs.items()}, "summary": summary}, f
            )


def _fmt(rec):
    parts = []
    for key in ("construct_s", "first_solution_s", "first_gradient_s", "peak_added_mb"):
        if key in rec:
            parts.append(f"{key.removesuffix('_s').removesuffix('_mb')} {rec[key]:.2f}")
    return "  ".join(parts)


if __name__ == "__main__":
    main()
