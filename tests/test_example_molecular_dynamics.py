"""Smoke test of examples/molecular_dynamics.py at reduced size (float64 session)."""

import numpy as np
from helpers import load_example


def test_molecular_dynamics_smoke(tmp_path):
    example = load_example("molecular_dynamics")
    out = example.main(smoke=True, out_dir=tmp_path)

    assert (tmp_path / "molecular_dynamics.png").stat().st_size > 10_000
    # A relaxed, jammed packing: forces vanish but particles still overlap (E > 0).
    assert out["max_force"] < 1e-10
    assert out["energy"] > 1e-3
    # The Hessian is singular exactly along the expected directions: translations and rattlers.
    assert out["n_zero_modes"] == 2 + 2 * out["n_rattlers"]
    assert out["smallest_nonzero_eigenvalue"] > 1e-4
    # The implicit derivative is nontrivial, has no translation part (minimum-norm solution),
    # matches central finite differences of re-minimized packings, and cg agrees with lstsq.
    sensitivity = out["sensitivity"]
    assert sensitivity.shape == (out["n_particles"], 2)
    assert out["sensitivity_norm"] > 1.0
    assert np.max(np.abs(out["mean_sensitivity"])) < 1e-9
    assert out["fd_rel_error"] < 1e-4
    assert out["cg_vs_lstsq_rel_error"] < 1e-6
