"""Short texts for the exceptions a benchmark records (shared by the benchmark scripts)."""

from __future__ import annotations


def first_line(e: BaseException) -> str:
    """The first line of ``str(e)``, at most 300 characters."""
    s = str(e).strip()
    return s.splitlines()[0][:300] if s else ""


def innermost_cause(lines) -> str:
    """The innermost ``SomeError: message`` line, e.g. the error raised inside a host callback
    that JAX re-raises as ``JaxRuntimeError: INTERNAL: CpuCallback error``."""
    found = ""
    for line in lines:
        head = line.split(":", 1)[0].strip().rsplit(".", 1)[-1]
        if ":" in line and (head.endswith("Error") or head.endswith("Exception")):
            found = line.strip()
    return found[:300]
