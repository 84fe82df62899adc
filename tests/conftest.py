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

jax.config.update("jax_enable_x64", True)
