"""Timing harness: one (workload, tool) pair per worker process.

Each pair runs in its own process, forked from a server that has already imported JAX, CVXPY
and the solvers (``multiprocessing``'s ``forkserver`` start method with preloading), so that

* a tool that hangs is killed after ``timeout_s`` without losing the rest of the run (the
  worker reports each finished phase as it goes, so partial results survive);
* a crash (segfault, out of memory) in one tool does not end the run;
* the peak resident memory (``VmHWM``) is per tool and per workload.

What the memory numbers measure: ``peak_rss_mb`` is the worker's peak resident set size
(Linux ``VmHWM``) over its whole life; it includes the ~120 MB of the preloaded
Python/JAX/CVXPY/NumPy modules (``rss_start_mb``, the resident size when the worker starts) and,
for the JAX tools, the JAX CPU runtime (~100 MB, started when the parameter values are put on
the device). ``rss_ready_mb`` is the resident size once the tool's modules are imported, the
workload is built and the runtime is up, just before the tool is constructed, and
``peak_delta_mb = peak_rss_mb - rss_ready_mb`` is what the tool added on top: canonicalized
problem data, traced programs, XLA executables and buffers, solver workspaces, Python garbage
not yet collected. It is a high-water mark of physical memory, not a count of live allocations.

Timing: ``construct_s`` is the tool's set-up (for the layers, canonicalization; for the bare
solvers, CVXPY's ``get_problem_data`` of every batch element). ``first_fwd_s`` /
``first_grad_s`` is the time to the first result: for jit-compiled tools, ahead-of-time
tracing + compilation (also reported alone as ``compile_fwd_s`` / ``compile_grad_s``) plus
one execution; for the others, the first call. Then one warm-up call, and each mode is timed
``repeats`` times (fewer past its time budget: at least three samples, or a single one when
one call exceeds three budgets, in which case the first execution after an ahead-of-time
compilation, or else the warm-up call, is that sample); the median is reported. Every call
blocks until its result is ready.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Optional

import numpy as np

AGREE_TOL = 1e-3
"""A solution *disagrees* with CVXPY's when max |x - x_cvxpy| > AGREE_TOL · max(1, ‖x_cvxpy‖∞)."""

PRELOAD = [
    "numpy",
    "scipy.sparse",
    "jax",
    "jax.numpy",
    "cvxpy",
    "clarabel",
    "osqp",
    "scs",
    "workloads",
    "tools",
]


@dataclass
class Config:
    """Measurement settings."""

    repeats: int = 7
    budget_s: float = 5.0
    timeout_s: float = 180.0


def measure(call: Callable[[], Any], repeats: int, budget_s: float) -> Dict[str, Any]:
    """Time ``call()`` up to ``repeats`` times; stop early past the time budget."""
    samples = []
    start = time.perf_counter()
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        if (elapsed > budget_s and len(samples) >= 3) or elapsed > 3 * budget_s:
            break
    ms = [1e3 * s for s in samples]
    return {
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
        "max_ms": max(ms),
        "n": len(ms),
        "samples_ms": [round(v, 4) for v in ms],
    }


def memory_mb() -> Dict[str, float]:
    """Current and peak resident set size of this process, in MB (Linux ``/proc``)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0]) / 1024.0
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        out = {"VmRSS": float("nan"), "VmHWM": peak}
    return {"rss_mb": out.get("VmRSS", float("nan")), "peak_rss_mb": out.get("VmHWM", float("nan"))}


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text if len(text) <= 600 else text[:600] + " ..."


def _first_call(fn, args, rec, compile_key):
    """Compile ahead of time if ``fn`` allows it, then call once.

    Returns (time to the first result including compilation, the result, the duration of the
    first execution alone for an ahead-of-time compiled ``fn`` else None).
    """
    start = time.perf_counter()
    if hasattr(fn, "compile"):
        fn.compile(*args)
        rec[compile_key] = time.perf_counter() - start
    t = time.perf_counter()
    out = fn(*args)
    end = time.perf_counter()
    return end - start, out, (end - t if hasattr(fn, "compile") else None)


def _timed(fn, args, first_exec, cfg: Config):
    """Warm up (unless slow), then :func:`measure`.

    For an ahead-of-time compiled function whose first execution already took more than three
    budgets, that execution is the one sample (re-running it would only cost time).
    """
    if first_exec is not None and first_exec > 3 * cfg.budget_s:
        ms = 1e3 * first_exec
        return {
            "median_ms": ms,
            "min_ms": ms,
            "max_ms": ms,
            "n": 1,
            "samples_ms": [round(ms, 4)],
            "note": "single sample: first execution",
        }
    t = time.perf_counter()
    fn(*args)  # warm-up
    if time.perf_counter() - t > 3 * cfg.budget_s:
        ms = 1e3 * (time.perf_counter() - t)
        return {
            "median_ms": ms,
            "min_ms": ms,
            "max_ms": ms,
            "n": 1,
            "samples_ms": [round(ms, 4)],
            "note": "single sample: warm-up call",
        }
    return measure(lambda: fn(*args), cfg.repeats, cfg.budget_s)


def worker(
    spec_dict: dict, tool_name: str, config: dict, reference: Optional[np.ndarray], conn
) -> None:
    """Measure one tool on one workload; send the (growing) record through ``conn``."""
    os.environ["JAX_ENABLE_X64"] = "1"
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    from tools import TOOLS, Unavailable, prepare
    from workloads import Spec, make_instance, reference_indices

    cfg = Config(**config)
    rec: Dict[str, Any] = {"rss_start_mb": memory_mb()["rss_mb"]}

    def send(final: bool = False) -> None:
        rec["final"] = final
        rec.update({k: v for k, v in memory_mb().items() if k == "peak_rss_mb"})
        conn.send(rec)

    try:
        tool = TOOLS[tool_name]
        prepare(tool)
        spec = Spec(**spec_dict)
        inst = make_instance(spec)
        args = [] if tool.kind == "bare" else [jnp.asarray(v) for v in inst.values]
        jax.block_until_ready(args)
        rec["rss_ready_mb"] = memory_mb()["rss_mb"]

        t = time.perf_counter()
        built = tool.build(inst)
        rec["construct_s"] = time.perf_counter() - t
        rec["info"] = built.info

        rec["first_fwd_s"], out, first = _first_call(built.fwd, args, rec, "compile_fwd_s")
        if reference is not None:
            x = built.solution(out)[reference_indices(spec)]
            diff = float(np.max(np.abs(x - reference)))
            rec["max_abs_diff"] = diff
            rec["agrees"] = bool(diff <= AGREE_TOL * max(1.0, float(np.max(np.abs(reference)))))
        send()

        rec["fwd"] = _timed(built.fwd, args, first, cfg)
        send()

        if built.grad is not None:
            rec["first_grad_s"], grads, first = _first_call(built.grad, args, rec, "compile_grad_s")
            rec["grad_finite"] = bool(all(np.all(np.isfinite(np.asarray(g))) for g in grads))
            send()
            rec["fwd_bwd"] = _timed(built.grad, args, first, cfg)
    except Unavailable as err:
        rec["unavailable"] = str(err)
    except Exception as err:  # recorded, the run goes on
        rec["error"] = _error_text(err)
        rec["traceback"] = traceback.format_exc(limit=6)[-2000:]
    send(final=True)
    conn.close()


class Runner:
    """Runs ``worker`` for each (workload, tool) pair in a fresh forked process."""

    def __init__(self, config: Config, inline: bool = False):
        self.config = config
        self.inline = inline
        if not inline:
            os.environ["JAX_ENABLE_X64"] = "1"
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(PRELOAD)

    def run(self, spec, tool_name: str, reference: Optional[np.ndarray]) -> Dict[str, Any]:
        start = time.perf_counter()
        rec = (
            self._run_inline(spec, tool_name, reference)
            if self.inline
            else self._run_process(spec, tool_name, reference)
        )
        rec["wall_s"] = time.perf_counter() - start
        rec.pop("final", None)
        if rec.get("peak_rss_mb") is not None and rec.get("rss_ready_mb") is not None:
            rec["peak_delta_mb"] = rec["peak_rss_mb"] - rec["rss_ready_mb"]
        return rec

    def _run_inline(self, spec, tool_name, reference):
        class _Conn:
            last: Dict[str, Any] = {}

            def send(self, rec):
                self.last = dict(rec)

            def close(self):
                pass

        conn = _Conn()
        worker(spec.to_dict(), tool_name, asdict(self.config), reference, conn)
        return conn.last

    def _run_process(self, spec, tool_name, reference):
        recv_end, send_end = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(
            target=worker,
            args=(spec.to_dict(), tool_name, asdict(self.config), reference, send_end),
            daemon=True,
        )
        proc.start()
        send_end.close()
        deadline = time.perf_counter() + self.config.timeout_s
        rec: Dict[str, Any] = {}
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                proc.kill()
                rec["error"] = (
                    f"timeout: no result within {self.config.timeout_s:.0f} s "
                    "(worker killed; phases finished before are kept)"
                )
                break
            if recv_end.poll(min(remaining, 0.5)):
                try:
                    rec = recv_end.recv()
                except EOFError:
                    break
                if rec.get("final"):
                    break
            elif not proc.is_alive() and not recv_end.poll(0):
                break
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        if not rec.get("final") and "error" not in rec:
            rec["error"] = f"worker died (exit code {proc.exitcode})"
        recv_end.close()
        return rec
