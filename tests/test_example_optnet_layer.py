"""Smoke test of examples/optnet_layer.py at reduced size."""

import numpy as np
from helpers import load_example


def test_optnet_layer_smoke(tmp_path):
    example = load_example("optnet_layer")
    results = example.main(smoke=True, out_dir=tmp_path)

    assert (tmp_path / "optnet_layer.png").stat().st_size > 0
    for name in example.MODEL_NAMES:
        curve = results[f"{name}_test_curve"]
        assert np.all(np.isfinite(curve)), name
        # Training works for every model: the test loss falls well below its initial value.
        assert results[f"{name}_test_loss"] < 0.6 * results[f"{name}_initial_test_loss"], name
    # The QP layer's output is feasible to solver tolerance on every test sample ...
    assert results["qp_layer_failed_solves"] == 0
    assert results["qp_layer_max_violation"] < 1e-6
    # ... while the unconstrained MLP violates the constraints visibly (so the comparison means
    # something), and the constrained architecture fits the constrained targets better.
    assert results["mlp_max_violation"] > 1e-2
    assert results["qp_layer_test_loss"] < results["mlp_test_loss"]
