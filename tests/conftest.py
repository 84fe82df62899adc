"""Test configuration.

Tests run in float64 so that derivatives can be checked against central finite differences
tightly. The library itself never flips ``jax_enable_x64``; only the test session does.
"""

import jax

jax.config.update("jax_enable_x64", True)
