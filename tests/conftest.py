"""Test configuration.

Tests run in float64 so that derivatives can be checked against central finite differences
tightly. The library itself never flips ``jax_enable_x64``; only the test session does.
"""

import os

# Small dense factorizations (the implicit systems here are 10²-10³ wide) run fastest on one
# BLAS thread; with OpenBLAS's default of one thread per core, a loaded 2-core CI machine spent
# 100x longer in spin-waiting threads than in the arithmetic (measured 0.4 ms vs up to 390 ms
# for a 212x212 solve). JAX's CPU LAPACK calls go through SciPy's OpenBLAS, so this covers
# both. Must be set before NumPy/SciPy load OpenBLAS; a user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)


# Every XLA:CPU executable keeps its JIT-compiled code in memory mappings of its own, and
# JAX's compilation caches (and module-scoped fixtures) keep executables alive. One pytest
# process compiles hundreds of programs: the mapping count climbed by ~450 per test, and with
# the degenerate-derivative flag of issue 11 the suite passed Linux's default
# vm.max_map_count (65530) and XLA aborted mid-compile at test 211 (reproduced at test 59 with
# the limit set to 20000). Dropping the caches after each module keeps the count to what one
# module needs (peak 17930 over those 59 tests, instead of a climb without end); a user's
# process frees a layer's executables with the layer (measured: flat over 8 layers built and
# dropped in turn).
@pytest.fixture(autouse=True, scope="module")
def _release_compiled_executables():
    yield
    jax.clear_caches()
