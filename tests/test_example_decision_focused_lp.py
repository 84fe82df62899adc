"""Smoke test of examples/decision_focused_lp.py at reduced size (Clarabel, 192 samples)."""

import numpy as np
from helpers import load_example


def test_decision_focused_lp_smoke(tmp_path):
    example = load_example("decision_focused_lp")
    methods = ("two_stage", "spo_plus", "fenchel_young", "smoothed")
    results = example.main(quick=True, out_dir=tmp_path, methods=methods)

    assert (tmp_path / "decision_focused_lp.png").stat().st_size > 0
    initial = results["two_stage"]["regret_curve"][0]
    for method in methods:
        curve = results[method]["regret_curve"]
        assert len(curve) == results["config"]["epochs"] + 1 and np.all(np.isfinite(curve))
        # Same data, model and initialization for every method.
        np.testing.assert_allclose(curve[0], initial, rtol=1e-9)
        # Normalized regret of feasible paths is in [0, 1) here; training lowers it.
        assert 0.0 <= curve[-1] < curve[0] < 1.0
    # The decision-focused losses beat the two-stage fit on this misspecified (degree-4) model.
    for method in ("spo_plus", "fenchel_young", "smoothed"):
        assert results[method]["regret"] < results["two_stage"]["regret"]
