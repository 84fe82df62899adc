"""The compiled problem, :class:`CanonicalProblem`, and :func:`canonicalize`, which builds it.

How the data map is derived is in :mod:`._problem_data`, how outputs are recovered in
:mod:`._recovery`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from cvxpy.utilities import scopes

from .._program import ProgramData, ProgramStructure
from ._linear_map import _LinearMap
from ._problem_data import (
    _check_parameters,
    _check_problem,
    _cone_dims,
    _data_maps,
    _parameter_embedding,
)
from ._recovery import _recover_map, _resolve_outputs


@dataclasses.dataclass(frozen=True, eq=False)
class CanonicalProblem:
    """A DPP CVXPY problem compiled to the canonical program of :mod:`cvxjax._program`.

    For parameter values θ the canonical program is::

        minimize    ½ xᵀ P(θ) x + q(θ)ᵀ x            (+ objective_offset(θ))
        subject to  A(θ) x + s = b(θ),   s ∈ K

    with ``(P, q, A, b)`` affine in θ and ``K`` fixed (``structure.cones``). The user problem's
    optimal value is ``objective_sign · (½ xᵀPx + qᵀx + objective_offset(θ))``
    (``objective_sign = −1`` for ``cp.Maximize``, which CVXPY turns into minimizing −f).

    Attributes:
      structure: sizes, cones and the fixed sparsity patterns of P (full symmetric) and A.
      parameters: the CVXPY parameters, in the order ``data`` takes their values.
      outputs: the requested CVXPY variables / dual variables, in the order ``recover`` returns.
      objective_sign: +1 for a minimization, −1 for a maximization.
    """

    structure: ProgramStructure
    parameters: tuple[cp.Parameter, ...]
    outputs: tuple[cp.Variable, ...]
    objective_sign: float
    _data_map: _LinearMap = dataclasses.field(repr=False)
    _offset_map: _LinearMap = dataclasses.field(repr=False)
    _recover_map: _LinearMap = dataclasses.field(repr=False)

    @property
    def param_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(p.shape) for p in self.parameters)

    @property
    def output_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(o.shape) for o in self.outputs)

    def _param_vector(self, param_values) -> jax.Array:
        """``[vec_F(θ₁); …; vec_F(θ_K); 1]``, shape (Σ size_k + 1,), in the values' dtype."""
        if len(param_values) != len(self.parameters):
            raise ValueError(
                f"expected {len(self.parameters)} parameter values "
                f"({', '.join(p.name() for p in self.parameters) or 'none'}), "
                f"got {len(param_values)}"
            )
        values = [jnp.asarray(v) for v in param_values]
        for p, v in zip(self.parameters, values):
            if tuple(v.shape) != tuple(p.shape):
                raise ValueError(
                    f"parameter {p.name()!r} has shape {tuple(p.shape)}, got a value of shape "
                    f"{tuple(v.shape)} (pass unbatched values; use jax.vmap to batch)"
                )
        dtype = _float_dtype(values)
        # CVXPY flattens parameters in column-major order; transpose + C-ravel is that.
        pieces = [jnp.ravel(jnp.transpose(v)).astype(dtype) for v in values]
        return jnp.concatenate(pieces + [jnp.ones((1,), dtype)])

    def data(self, *param_values) -> ProgramData:
        """The canonical data ``(P, q, A, b)`` for one set of parameter values.

        Args:
          *param_values: one array per parameter, in ``self.parameters`` order, each with the
            parameter's shape (unbatched; use ``jax.vmap`` for batches). Values of symmetric /
            PSD / NSD parameters are symmetrized, ``(Θ + Θᵀ)/2``, before use.

        Returns:
          ``ProgramData`` with ``P`` (nnz_P,), ``q`` (n,), ``A`` (nnz_A,), ``b`` (m,) on the
          patterns of ``self.structure``, in the (floating) dtype of the inputs. The map is
          affine, so it is exact under ``jit``, ``vmap``, ``jvp`` and ``grad``.
        """
        v = self._param_vector(param_values)
        w = self._data_map(v)
        s = self.structure
        nP, n, nA, m = s.P_rows.size, s.n, s.A_rows.size, s.m
        return ProgramData(
            P=w[:nP],
            q=w[nP : nP + n],
            A=w[nP + n : nP + n + nA],
            b=w[nP + n + nA : nP + n + nA + m],
        )

    def constant_A_entries(self) -> tuple[np.ndarray, np.ndarray]:
        """Which entries of A do not depend on the parameters, and their values.

        Returns ``(mask, values)``, both (nnz_A,): ``mask[k]`` is True when entry k of A is the
        same for every parameter value (its row of the data map only touches the constant
        column), ``values[k]`` is that value (0 where ``mask`` is False). Used to eliminate
        variables through equality rows whose pivot can never vanish.
        """
        s = self.structure
        M = self._data_map.to_scipy().tocsr()
        start = s.P_rows.size + s.n
        block = M[start : start + s.A_rows.size]
        constant_col = block.shape[1] - 1
        block = sp.coo_array(block)
        touches_param = np.zeros(s.A_rows.size, dtype=bool)
        touches_param[block.row[(block.col != constant_col) & (block.data != 0)]] = True
        values = np.zeros(s.A_rows.size)
        at_one = block.col == constant_col
        np.add.at(values, block.row[at_one], block.data[at_one])
        values[touches_param] = 0.0
        return ~touches_param, values

    def objective_offset(self, *param_values) -> jax.Array:
        """The constant ``d(θ)`` of the canonical objective (scalar, affine in θ)."""
        return self._offset_map(self._param_vector(param_values))[0]

    def recover(self, x: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
        """Values of the requested outputs from a canonical primal-dual pair.

        Args:
          x: (n,) canonical primal solution.
          y: (m,) canonical dual solution (``y ∈ K*``, rows in SCS layout, i.e. the ``y`` SCS
            returns; ``P x + q + Aᵀ y = 0``).

        Returns:
          One array per output, each with the CVXPY object's shape: variable values, and dual
          values with CVXPY's own sign and scaling conventions (what ``problem.solve`` stores in
          ``constraint.dual_variables[k].value``). Linear in ``(x, y)``.
        """
        x = jnp.asarray(x)
        y = jnp.asarray(y)
        s = self.structure
        if x.shape != (s.n,) or y.shape != (s.m,):
            raise ValueError(
                f"expected x of shape ({s.n},) and y of shape ({s.m},), got {x.shape} and {y.shape}"
            )
        dtype = _float_dtype([x, y])
        w = self._recover_map(jnp.concatenate([x.astype(dtype), y.astype(dtype)]))
        out, start = [], 0
        for shape in self.output_shapes:
            size = int(np.prod(shape, dtype=np.int64))
            # The probe flattened each output in C order; undo that.
            out.append(w[start : start + size].reshape(shape))
            start += size
        return tuple(out)


def canonicalize(
    problem: cp.Problem,
    parameters: Sequence[cp.Parameter],
    outputs: Sequence[cp.Variable],
    canon_backend: str | None = None,
) -> CanonicalProblem:
    """Compile ``problem`` into a :class:`CanonicalProblem`.

    Args:
      problem: a DCP problem that follows the DPP rules.
      parameters: exactly the problem's parameters, in the order ``data`` will take them.
      outputs: variables of the problem and/or dual variables of its constraints
        (``constraint.dual_variables[k]``; e.g. ``constraint.dual_variables[0]`` is what
        ``constraint.dual_value`` reports), in the order ``recover`` returns them.
      canon_backend: CVXPY's canonicalization backend (``None``: CVXPY's default; ``"SCIPY"``,
        ``"CPP"``, ...), passed to ``problem.get_problem_data``.

    Raises:
      ValueError: the problem is not DCP or not DPP, ``parameters`` does not match the
        problem's parameters, or an output is neither a variable of the problem nor a dual
        variable of one of its constraints.
      NotImplementedError: complex-valued or mixed-integer problems.
    """
    if not isinstance(problem, cp.Problem):
        raise TypeError(f"expected a cvxpy.Problem, got {type(problem).__name__}")
    quad_form_scope = _check_problem(problem)
    parameters = _check_parameters(problem, parameters)
    outputs = tuple(outputs)
    output_sources = _resolve_outputs(problem, outputs)

    # CVXPY's SCS chain keeps a quadratic objective as P, so inside the quad_form scope a
    # parametric Q lands in P(θ) like any other parameter (see _check_problem).
    scope = scopes.quad_form_dpp_scope() if quad_form_scope else contextlib.nullcontext()
    with scope:
        data, chain, inverse_data = problem.get_problem_data(
            cp.SCS, enforce_dpp=True, canon_backend=canon_backend
        )
    prog = data[cp.settings.PARAM_PROB]
    if any(type(r).__name__ == "Complex2Real" for r in chain.reductions):
        raise NotImplementedError("complex-valued problems are not supported")
    if (
        prog.lb_tensor is not None
        or prog.ub_tensor is not None
        or (prog.lower_bounds is not None or prog.upper_bounds is not None)
    ):
        # The SCS chain turns variable bounds into constraints; this guards a future change.
        raise NotImplementedError("variable bounds outside of the cone constraints")

    n = int(prog.x.size)
    cones = _cone_dims(data["dims"])
    m = cones.rows
    if m != int(prog.constr_size):
        raise AssertionError(f"cone rows {m} != constraint rows {prog.constr_size}")

    embed = _parameter_embedding(prog, chain, parameters)
    structure, data_map, offset_map = _data_maps(prog, n, m, cones, embed)
    recover_map = _recover_map(chain, inverse_data, n, m, outputs, output_sources)
    return CanonicalProblem(
        structure=structure,
        parameters=parameters,
        outputs=outputs,
        objective_sign=-1.0 if isinstance(problem.objective, cp.Maximize) else 1.0,
        _data_map=data_map,
        _offset_map=offset_map,
        _recover_map=recover_map,
    )


def _float_dtype(arrays: Sequence[jax.Array]):
    """The common floating dtype of ``arrays`` (integers promote to JAX's default float)."""
    if not arrays:
        return jnp.result_type(float)
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype
