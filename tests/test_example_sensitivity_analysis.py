"""Smoke test of examples/sensitivity_analysis.py (economic dispatch sensitivities)."""

import numpy as np
from helpers import load_example


def test_sensitivity_analysis_smoke(tmp_path):
    example = load_example("sensitivity_analysis")
    out = example.main(smoke=True, out_dir=tmp_path)
    assert (tmp_path / "sensitivity_analysis.png").stat().st_size > 10_000

    # The operating point is non-trivial (a congested line, a generator at capacity, separated
    # prices) and strictly complementary, so the derivatives below are well defined.
    assert out["n_congested"] >= 1 and out["n_at_capacity"] >= 1
    assert out["price_spread"] > 1.0
    assert out["complementarity_margin"] > 1e-3

    # Duals returned by the layer are CVXPY's own nodal-balance duals (the LMPs).
    np.testing.assert_allclose(out["prices"], out["cvxpy_prices"], rtol=0, atol=1e-5)
    # Envelope theorem: gradient of the cost through the dispatch equals the duals.
    np.testing.assert_allclose(out["grad_cost"], out["prices"], rtol=0, atol=1e-5)
    # Forward-mode Jacobian and reverse-mode gradient vs central differences of CVXPY.
    np.testing.assert_allclose(out["jac_dispatch"], out["fd_jac_dispatch"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out["grad_cost"], out["fd_grad_cost"], rtol=0, atol=1e-5)
    # Non-trivial Jacobian: the generator at capacity does not move, the others do.
    assert np.abs(out["jac_dispatch"]).max() > 0.1
    assert np.any(np.all(np.abs(out["jac_dispatch"]) < 1e-6, axis=1))
    # Lossless network: one more MW of demand anywhere is one more MW of generation.
    assert out["column_sum_error"] < 1e-6

    # Batched sweep with on_failure="nan": feasible points solved, infeasible ones NaN + status.
    solved = out["sweep_status"] == 0
    assert solved.any() and (~solved).any()
    assert np.all(np.isfinite(out["sweep_prices"][solved]))
    assert np.all(np.isnan(out["sweep_prices"][~solved]))
