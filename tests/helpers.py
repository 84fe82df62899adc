"""Shared test utilities: float64 central finite differences."""

import numpy as np


def central_fd_jacobian(fun, x, eps=1e-6):
    """Jacobian of ``fun`` (array -> array) at ``x`` by central differences, float64.

    Returns an array of shape ``fun(x).shape + x.shape``. Independent of JAX autodiff.
    """
    x = np.asarray(x, dtype=np.float64)
    out0 = np.asarray(fun(x))
    jac = np.zeros(out0.shape + x.shape)
    for idx in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[idx] = eps
        jac[(...,) + idx] = (np.asarray(fun(x + step)) - np.asarray(fun(x - step))) / (2 * eps)
    return jac


def load_example(name):
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cvxjax_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as a normal import does: dataclasses (and anything else
    # that resolves annotations) look the module up in sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
