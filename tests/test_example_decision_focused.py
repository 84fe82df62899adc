"""Smoke test of examples/decision_focused.py at reduced size."""

import numpy as np
from helpers import load_example


def test_decision_focused_smoke(tmp_path):
    example = load_example("decision_focused")
    results = example.main(smoke=True, out_dir=tmp_path)

    assert (tmp_path / "decision_focused.png").stat().st_size > 0
    curve = results["dfl_regret_curve"]
    assert np.all(np.isfinite(curve))
    # DFL starts from the two-stage fit, so its curve starts at the two-stage regret.
    np.testing.assert_allclose(curve[0], results["two_stage_regret"], rtol=1e-6)
    assert 0.0 < results["two_stage_regret"] < 1.0
    # Training through the layer lowers the test regret clearly below two-stage (misspecified
    # linear model: the known regime where decision-focused learning wins) ...
    assert results["dfl_regret"] < 0.9 * results["two_stage_regret"]
    assert results["dfl_train_regret"] < results["two_stage_train_regret"]
    # ... at the price of worse predictions of μ (it is not fitting μ any more).
    assert results["dfl_mse"] > results["two_stage_mse"]
    # Decisions from the layer are feasible portfolios (1ᵀx = 1, x ≥ 0).
    assert results["max_violation"] < 1e-6
