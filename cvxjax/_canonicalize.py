"""Compile a DPP CVXPY problem into the canonical program of :mod:`cvxjax._program`.

CVXPY already knows how to turn a DPP problem into conic form: for the SCS solving chain it
builds a :class:`cvxpy.reductions.dcp2cone.cone_matrix_stuffing.ParamConeProg` whose tensors map
the parameter vector ``v = [θ̃; 1]`` (every parameter of the *reduced* problem flattened in
column-major order at ``param_id_to_col``, then a constant 1) linearly to the problem data:

    vec_F([A_c | b_c]) = T_A v,     [q; d] = T_q v,     vec_F(P) = T_P v,

where (cone_matrix_stuffing.py / conic_solver.py) ``A_c x + b_c ∈ K`` and the data handed to SCS
is ``A = −A_c``, ``b = b_c``, ``c = q`` and the full symmetric ``P`` (SCS keeps its upper
triangle itself), i.e. ``A x + s = b, s = b_c + A_c x ∈ K``. That is exactly our canonical
form, already in SCS's row order (zero, nonneg, soc, psd, exp, pow), SCS's PSD format (lower
triangle column-major, off-diagonals ×√2: ``SCS.PSD_TRIANGLE_KIND = LOWER``,
``PSD_SQRT2_SCALING = True``) and CVXPY's exponential cone order (``SCS.EXP_CONE_ORDER =
[0, 1, 2]``).

Parameters carrying attributes (symmetric, PSD, diag, sparsity) are replaced by reduced
parameters inside the chain; the reductions' ``param_forward`` (the linear map CVXPY uses for
its own derivatives) takes a user value to the reduced one. So the whole thing is one affine map

    θ (user parameters, column-major)  ↦  (P values, q, A values, b),

which we assemble once at construction as a sparse matrix on the *union* sparsity pattern
(every entry any parameter value can touch, explicit zeros kept), and apply in JAX.

Solution recovery goes the other way: CVXPY's ``SolvingChain.invert`` maps SCS's ``(x, y)``
to variable values and constraint duals with all of CVXPY's sign/scaling conventions
(``<=`` duals, PSD duals as full matrices, SOC/exp/pow duals split per argument, symmetric
variables rebuilt from their upper triangle, ...). Every step is linear in ``(x, y)`` except
that variables with bound-type attributes (``nonneg``, ``bounds``, ...) get *projected* onto
their attribute set; we use the reductions' ``var_forward`` (the same map without the
projection, which is the identity at any feasible point) for the primal part. The linear map is
found once by probing that inversion and stored as a sparse matrix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import cvxpy as cp
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from cvxpy.reductions.reduction import Reduction
from cvxpy.reductions.solution import Solution

from ._program import ConeDims, ProgramData, ProgramStructure

__all__ = ["CanonicalProblem", "canonicalize"]

_DPP_URL = "https://www.cvxpy.org/tutorial/dpp/"
_DCP_URL = "https://www.cvxpy.org/tutorial/dcp/"

# CVXPY's id of the constant column of the parameter vector (cvxpy.lin_ops.lin_op.CONSTANT_ID).
_CONSTANT_ID = -1

# A dense matvec costs rows·cols multiply-adds; the sparse path costs nnz gathers plus a
# scatter-add that is several times slower per element (markedly so on accelerators), so we go
# dense while rows·cols is within this factor of nnz -- or tiny -- and below a memory cap.
_DENSE_FILL_FACTOR = 8
_DENSE_ALWAYS_ENTRIES = 1 << 12
_DENSE_MAX_ENTRIES = 1 << 24

_SYMMETRIC_ATTRIBUTES = ("symmetric", "PSD", "NSD")


# --------------------------------------------------------------------------------------------
# A fixed sparse linear map applied in JAX.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class _LinearMap:
    """``w = M v`` for a fixed real matrix ``M`` of shape (rows, cols), applied in JAX.

    Stored as COO triplets sorted by row, plus a dense copy when that is cheaper to apply
    (see ``_DENSE_FILL_FACTOR``). Works for one unbatched ``v`` of shape (cols,); batching is
    left to ``jax.vmap``. Being linear in ``v`` it is trivially differentiable.
    """

    shape: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    vals: np.ndarray
    dense: np.ndarray | None

    @classmethod
    def from_scipy(cls, M) -> _LinearMap:
        M = sp.coo_array(M)
        M.sum_duplicates()  # also sorts by (row, col)
        shape = (int(M.shape[0]), int(M.shape[1]))
        rows, cols = _index_array(M.row), _index_array(M.col)
        vals = np.asarray(M.data, dtype=np.float64)
        entries = shape[0] * shape[1]
        dense = None
        if entries <= _DENSE_MAX_ENTRIES and (
            entries <= _DENSE_ALWAYS_ENTRIES or entries <= _DENSE_FILL_FACTOR * vals.size
        ):
            dense = M.toarray().astype(np.float64)
            dense.flags.writeable = False
        for a in (rows, cols, vals):
            a.flags.writeable = False
        return cls(shape, rows, cols, vals, dense)

    def __call__(self, v: jax.Array) -> jax.Array:
        """v: (cols,) -> (rows,), in v's dtype."""
        if self.dense is not None:
            return jnp.asarray(self.dense, v.dtype) @ v
        contrib = jnp.asarray(self.vals, v.dtype) * v[self.cols]
        return jax.ops.segment_sum(
            contrib, self.rows, num_segments=self.shape[0], indices_are_sorted=True
        )

    def to_scipy(self) -> sp.csr_array:
        return sp.csr_array((self.vals, (self.rows, self.cols)), shape=self.shape)


def _index_array(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    if a.size == 0 or a.max() < np.iinfo(np.int32).max:
        a = a.astype(np.int32)
    return a


def _float_dtype(arrays: Sequence[jax.Array]):
    """The common floating dtype of ``arrays`` (integers promote to JAX's default float)."""
    if not arrays:
        return jnp.result_type(float)
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    return dtype


# --------------------------------------------------------------------------------------------
# The public object.
# --------------------------------------------------------------------------------------------


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
                f"expected x of shape ({s.n},) and y of shape ({s.m},), "
                f"got {x.shape} and {y.shape}"
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


# --------------------------------------------------------------------------------------------
# Construction.
# --------------------------------------------------------------------------------------------


def canonicalize(
    problem: cp.Problem,
    parameters: Sequence[cp.Parameter],
    outputs: Sequence[cp.Variable],
) -> CanonicalProblem:
    """Compile ``problem`` into a :class:`CanonicalProblem`.

    Args:
      problem: a DCP problem that follows the DPP rules.
      parameters: exactly the problem's parameters, in the order ``data`` will take them.
      outputs: variables of the problem and/or dual variables of its constraints
        (``constraint.dual_variables[k]``; e.g. ``constraint.dual_variables[0]`` is what
        ``constraint.dual_value`` reports), in the order ``recover`` returns them.

    Raises:
      ValueError: the problem is not DCP or not DPP, ``parameters`` does not match the
        problem's parameters, or an output is neither a variable of the problem nor a dual
        variable of one of its constraints.
      NotImplementedError: complex-valued or mixed-integer problems.
    """
    if not isinstance(problem, cp.Problem):
        raise TypeError(f"expected a cvxpy.Problem, got {type(problem).__name__}")
    _check_problem(problem)
    parameters = _check_parameters(problem, parameters)
    outputs = tuple(outputs)
    output_sources = _resolve_outputs(problem, outputs)

    data, chain, inverse_data = problem.get_problem_data(cp.SCS, enforce_dpp=True)
    prog = data[cp.settings.PARAM_PROB]
    if any(type(r).__name__ == "Complex2Real" for r in chain.reductions):
        raise NotImplementedError("complex-valued problems are not supported")
    if prog.lb_tensor is not None or prog.ub_tensor is not None or (
        prog.lower_bounds is not None or prog.upper_bounds is not None
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


def _check_problem(problem: cp.Problem) -> None:
    if not problem.is_dcp():
        raise ValueError(
            "the problem is not DCP (disciplined convex), so it cannot be compiled; "
            f"see {_DCP_URL}"
        )
    if not problem.is_dpp():
        raise ValueError(
            "the problem is DCP but not DPP (disciplined parametrized programming): its data "
            "must be affine in the parameters (e.g. no products of two parameter-dependent "
            "expressions, parameters must not enter nonlinear atoms of constants). Rewrite it "
            f"following the rules at {_DPP_URL}"
        )
    if problem.is_mixed_integer():
        raise NotImplementedError("mixed-integer problems are not supported")


def _check_parameters(problem: cp.Problem, parameters) -> tuple[cp.Parameter, ...]:
    parameters = tuple(parameters)
    for p in parameters:
        if not isinstance(p, cp.Parameter):
            raise TypeError(f"parameters must be cvxpy.Parameter objects, got {p!r}")
    ids = [p.id for p in parameters]
    dup = sorted({p.name() for p in parameters if ids.count(p.id) > 1})
    if dup:
        raise ValueError(f"parameters listed more than once: {', '.join(dup)}")
    problem_params = problem.parameters()
    given = set(ids)
    wanted = {p.id for p in problem_params}
    missing = [p.name() for p in problem_params if p.id not in given]
    extra = [p.name() for p in parameters if p.id not in wanted]
    if missing or extra:
        msg = ["`parameters` must be exactly the problem's parameters."]
        if missing:
            msg.append(f"Missing: {', '.join(missing)}.")
        if extra:
            msg.append(f"Not in the problem: {', '.join(extra)}.")
        raise ValueError(" ".join(msg))
    for p in parameters:
        if p.is_complex():
            raise NotImplementedError(f"complex parameter {p.name()!r} is not supported")
    return parameters


def _resolve_outputs(problem: cp.Problem, outputs) -> list[tuple]:
    """For each output: ``("var", variable)`` or ``("dual", constraint, k)``."""
    variables = {v.id: v for v in problem.variables()}
    duals = {}
    for c in problem.constraints:
        for k, dv in enumerate(c.dual_variables):
            duals[dv.id] = (c, k)
    sources = []
    for o in outputs:
        oid = getattr(o, "id", None)
        if isinstance(o, cp.Variable) and oid in variables:
            sources.append(("var", o))
        elif isinstance(o, cp.Variable) and oid in duals:
            c, k = duals[oid]
            sources.append(("dual", c, k))
        else:
            raise ValueError(
                f"output {o!r} is neither a variable of the problem nor a dual variable of one "
                "of its constraints (use `constraint.dual_variables[k]`)"
            )
    return sources


def _cone_dims(dims) -> ConeDims:
    """CVXPY's ``ConeDims`` (as handed to SCS) as our :class:`ConeDims`."""
    if getattr(dims, "pnd", None):
        # The SCS chain lowers n-dimensional power cones to 3-d ones.
        raise NotImplementedError("n-dimensional power cones")
    return ConeDims(
        zero=int(dims.zero),
        nonneg=int(dims.nonneg),
        soc=tuple(int(k) for k in dims.soc),
        psd=tuple(int(k) for k in dims.psd),
        exp=int(dims.exp),
        pow=tuple(float(a) for a in dims.p3d),
    )


def _parameter_embedding(prog, chain, parameters) -> sp.csr_array:
    """Sparse E with ``v = E [vec_F(θ₁); …; vec_F(θ_K); 1]``, v CVXPY's parameter vector.

    Shape (total_param_size + 1, Σ size_k + 1). A user parameter either appears in ``prog``
    under its own id (a block of ones), was replaced by a reduced parameter (its block is the
    composition of the reductions' linear ``param_forward`` maps, after symmetrizing when the
    parameter is symmetric), or was eliminated (e.g. zero-size) and contributes nothing.
    """
    n_user = sum(int(p.size) for p in parameters)
    n_prog = int(prog.total_param_size)
    col_of = prog.param_id_to_col
    size_of = prog.param_id_to_size
    rows, cols, vals = [], [], []
    offset = 0
    for p in parameters:
        size = int(p.size)
        if p.id in col_of:
            L = sp.csr_array(
                (np.ones(size), (col_of[p.id] + np.arange(size), np.arange(size))),
                shape=(n_prog, size),
            )
        else:

            def forward(u, p=p):
                delta = {p.id: np.reshape(u, p.shape, order="F")}
                for r in chain.reductions:
                    delta = r.param_forward(delta)
                out = np.zeros(n_prog)
                for pid, val in delta.items():
                    if pid in col_of and pid != p.id:
                        out[col_of[pid] : col_of[pid] + size_of[pid]] = np.ravel(
                            np.asarray(val, dtype=np.float64), order="F"
                        )
                return out

            L = _probe_linear_map(forward, size, n_prog)
        if size and any(p.attributes.get(a) for a in _SYMMETRIC_ATTRIBUTES):
            # CVXPY only ever reads a triangle of a symmetric parameter; using the symmetric
            # part makes the map (and so its gradient) independent of that choice.
            L = L @ _symmetrizer(p.shape)
        L = sp.coo_array(L)
        rows.append(L.row)
        cols.append(offset + L.col)
        vals.append(L.data)
        offset += size
    rows.append(np.array([col_of[_CONSTANT_ID]]))
    cols.append(np.array([n_user]))
    vals.append(np.ones(1))
    return sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_prog + 1, n_user + 1),
    )


def _symmetrizer(shape) -> sp.csr_array:
    """S with ``S vec_F(X) = vec_F((X + Xᵀ)/2)``, transposing the last two axes of X."""
    size = int(np.prod(shape, dtype=np.int64))
    idx = np.arange(size).reshape(shape, order="F")
    idx_t = np.swapaxes(idx, -1, -2)
    rows = np.concatenate([idx.ravel(), idx.ravel()])
    cols = np.concatenate([idx.ravel(), idx_t.ravel()])
    return sp.csr_array((np.full(2 * size, 0.5), (rows, cols)), shape=(size, size))


def _data_maps(prog, n: int, m: int, cones: ConeDims, embed: sp.csr_array):
    """The affine maps θ ↦ (P, q, A, b) and θ ↦ d, and the patterns they fill.

    Row ``r`` of CVXPY's constraint tensor is entry ``(r mod m, r div m)`` of the m × (n+1)
    matrix ``[A_c | b_c]`` (column-major); of the P tensor, entry ``(r mod n, r div n)`` of P.
    SCS receives ``A = −A_c``, ``b = b_c`` (``A_c x + b_c ∈ K`` ⇔ ``A x + s = b, s ∈ K``).
    """
    n_cols = embed.shape[1]

    # --- A and b -------------------------------------------------------------------------
    T = _tensor_coo(prog.A, m * (n + 1), embed.shape[0])
    col_of_entry = T.row // max(m, 1)
    in_A = col_of_entry < n
    A_flat, A_entry = np.unique(T.row[in_A], return_inverse=True)
    A_rows, A_cols = A_flat % max(m, 1), A_flat // max(m, 1)
    M_A = -sp.csr_array(
        (T.data[in_A], (A_entry, T.col[in_A])), shape=(A_flat.size, embed.shape[0])
    )
    in_b = ~in_A
    M_b = sp.csr_array(
        (T.data[in_b], (T.row[in_b] % max(m, 1), T.col[in_b])), shape=(m, embed.shape[0])
    )

    # --- q and the objective offset d ------------------------------------------------------
    Tq = _tensor_coo(prog.q, n + 1, embed.shape[0])
    in_q = Tq.row < n
    M_q = sp.csr_array((Tq.data[in_q], (Tq.row[in_q], Tq.col[in_q])), shape=(n, embed.shape[0]))
    M_d = sp.csr_array(
        (Tq.data[~in_q], (Tq.row[~in_q] - n, Tq.col[~in_q])), shape=(1, embed.shape[0])
    )

    # --- P ---------------------------------------------------------------------------------
    if prog.P is None:
        P_rows = P_cols = np.zeros(0, dtype=np.int64)
        M_P = sp.csr_array((0, embed.shape[0]))
    else:
        TP = _tensor_coo(prog.P, n * n, embed.shape[0])
        i, j = TP.row % n, TP.row // n
        # CVXPY stores the full symmetric P; should it ever store one triangle only, mirror it
        # (xᵀPx only sees the symmetric part, and SCS/our structure want the full matrix).
        upper, lower = np.any(i < j), np.any(i > j)
        if upper != lower:
            off = i != j
            i, j = np.concatenate([i, j[off]]), np.concatenate([j, i[off]])
            k = np.concatenate([TP.col, TP.col[off]])
            v = np.concatenate([TP.data, TP.data[off]])
        else:
            k, v = TP.col, TP.data
        # The union pattern of the full P, closed under transposition, column-major.
        flat = np.concatenate([j * n + i, i * n + j])
        P_flat = np.unique(flat)
        P_rows, P_cols = P_flat % max(n, 1), P_flat // max(n, 1)
        entry = np.searchsorted(P_flat, j * n + i)
        M_P = sp.csr_array((v, (entry, k)), shape=(P_flat.size, embed.shape[0]))
        if upper and lower:
            # Already full; average with the transpose so a (numerically) asymmetric tensor
            # still gives a symmetric P. For the symmetric tensors CVXPY builds this is exact.
            entry_t = np.searchsorted(P_flat, i * n + j)
            M_Pt = sp.csr_array((v, (entry_t, k)), shape=(P_flat.size, embed.shape[0]))
            M_P = 0.5 * (M_P + M_Pt)

    M = sp.vstack([M_P, M_q, M_A, M_b]).tocsr() @ embed
    structure = ProgramStructure(
        n=n,
        cones=cones,
        P_rows=_frozen_index(P_rows),
        P_cols=_frozen_index(P_cols),
        A_rows=_frozen_index(A_rows),
        A_cols=_frozen_index(A_cols),
    )
    assert M.shape == (P_rows.size + n + A_rows.size + m, n_cols)
    return structure, _LinearMap.from_scipy(M), _LinearMap.from_scipy(M_d @ embed)


def _tensor_coo(tensor, n_rows: int, n_cols: int) -> sp.coo_array:
    """A CVXPY problem-data tensor (sparse, dense, or None) as COO with zeros removed."""
    if tensor is None:
        return sp.coo_array((n_rows, n_cols))
    T = sp.coo_array(tensor)
    if T.shape != (n_rows, n_cols):
        raise AssertionError(f"unexpected tensor shape {T.shape}, wanted {(n_rows, n_cols)}")
    T.sum_duplicates()
    T.eliminate_zeros()
    T.row = T.row.astype(np.int64)
    T.col = T.col.astype(np.int64)
    return T


def _frozen_index(a) -> np.ndarray:
    a = _index_array(a)
    a.flags.writeable = False
    return a


# --------------------------------------------------------------------------------------------
# Solution recovery.
# --------------------------------------------------------------------------------------------


def _invert(chain, inverse_data, x: np.ndarray, y: np.ndarray) -> Solution:
    """CVXPY's inversion of an SCS result ``(x, y)``, without attribute projections.

    Walks the chain backwards exactly like ``SolvingChain.invert``; for reductions that
    override ``var_forward`` (CvxAttr2Constr: symmetric/diag/sparse/bounded variables) the
    primal part is taken from ``var_forward``, the linear map CVXPY uses to push derivatives
    through the reduction, instead of ``invert``, which also projects onto the attribute set.
    """
    m = y.size
    solution = {
        "x": x,
        "y": y,
        "s": np.zeros(m),
        "info": {
            "status_val": 1,  # SCS_SOLVED
            "status": "solved",
            "solve_time": 0.0,
            "setup_time": 0.0,
            "iter": 0,
            "pobj": 0.0,
        },
    }
    for r, inv in reversed(list(zip(chain.reductions, inverse_data))):
        if type(r).var_forward is not Reduction.var_forward and isinstance(solution, Solution):
            primal = r.var_forward(dict(solution.primal_vars))
            solution = r.invert(solution, inv)
            solution = Solution(
                solution.status, solution.opt_val, primal, solution.dual_vars, solution.attr
            )
        else:
            solution = r.invert(solution, inv)
    return solution


def _as_output(value, shape, what: str) -> np.ndarray:
    if value is None:
        raise ValueError(f"CVXPY does not report a value for {what}")
    if sp.issparse(value):
        value = value.toarray()
    value = np.asarray(value, dtype=np.float64)
    if value.size != int(np.prod(shape, dtype=np.int64)):
        raise AssertionError(f"{what}: got a value of shape {value.shape}, expected {shape}")
    return value.reshape(shape).ravel()


def _recover_map(chain, inverse_data, n: int, m: int, outputs, sources) -> _LinearMap:
    """The matrix R with ``concat_k vec_C(output_k) = R [x; y]``, found by probing CVXPY."""
    # One private copy per constraint: ``save_dual_value`` on the copy splits a dual into the
    # constraint's dual variables (SOC: t and X parts, exp/pow: 3 parts) exactly as CVXPY
    # does, without touching the user's objects.
    copies = {}
    for src in sources:
        if src[0] == "dual" and src[1].id not in copies:
            copies[src[1].id] = src[1].copy()

    def f(z: np.ndarray) -> np.ndarray:
        sol = _invert(chain, inverse_data, z[:n].copy(), z[n:].copy())
        out = []
        for o, src in zip(outputs, sources):
            if src[0] == "var":
                value = sol.primal_vars.get(o.id)
                out.append(_as_output(value, o.shape, f"variable {o.name()!r}"))
            else:
                c, k = src[1], src[2]
                what = f"dual variable {k} of constraint {c}"
                if sol.dual_vars is None or c.id not in sol.dual_vars:
                    raise ValueError(f"CVXPY does not report a value for {what}")
                cc = copies[c.id]
                cc.save_dual_value(sol.dual_vars[c.id])
                out.append(_as_output(cc.dual_variables[k].value, o.shape, what))
        return np.concatenate(out) if out else np.zeros(0)

    n_out = sum(int(np.prod(o.shape, dtype=np.int64)) for o in outputs)
    return _LinearMap.from_scipy(_probe_linear_map(f, n + m, n_out))


def _probe_linear_map(
    f: Callable[[np.ndarray], np.ndarray], n_in: int, n_out: int
) -> sp.csr_array:
    """The matrix M (n_out × n_in) of a linear black box ``f(u) = M u``.

    CVXPY's maps here are almost always *monomial* (each output is one input times a constant:
    slicing, reshaping, ±1, √2 scalings), which two probes identify: ``f(1)`` gives each row's
    coefficient c_i and ``f(1, 2, …, N)`` gives ``c_i (σ_i + 1)``, hence the input σ_i. The
    guess is checked on random inputs; if it fails we fall back to probing every unit vector.
    Either way the result is verified and a non-linear ``f`` raises.
    """
    rng = np.random.default_rng(0)

    def call(u):
        w = np.asarray(f(u), dtype=np.float64)
        if w.shape != (n_out,):
            raise AssertionError(f"probe returned shape {w.shape}, expected ({n_out},)")
        return w

    def matches(M, trials=2):
        for _ in range(trials):
            u = rng.standard_normal(n_in)
            want = call(u)
            got = M @ u
            scale = 1.0 + (abs(M) @ np.abs(u) if M.nnz else 0.0)
            if not np.all(np.abs(got - want) <= 1e-10 * scale):
                return False
        return True

    if n_out == 0 or n_in == 0:
        return sp.csr_array((n_out, n_in))

    if np.any(call(np.zeros(n_in)) != 0):
        raise RuntimeError("CVXPY's map is not linear (nonzero at zero); please report this")
    coef = call(np.ones(n_in))
    tagged = call(np.arange(1, n_in + 1, dtype=np.float64))
    nz = coef != 0
    ok = np.all(tagged[~nz] == 0)
    if ok:
        idx = np.rint(tagged[nz] / coef[nz]) - 1
        ok = bool(np.all((idx >= 0) & (idx < n_in)))
        ok = ok and np.allclose(tagged[nz], coef[nz] * (idx + 1), rtol=1e-12, atol=0)
    if ok:
        M = sp.csr_array(
            (coef[nz], (np.flatnonzero(nz), idx.astype(np.int64))), shape=(n_out, n_in)
        )
        if matches(M):
            return M

    rows, cols, vals = [], [], []
    e = np.zeros(n_in)
    for j in range(n_in):
        e[j] = 1.0
        w = call(e)
        e[j] = 0.0
        (r,) = np.nonzero(w)
        rows.append(r)
        cols.append(np.full(r.size, j))
        vals.append(w[r])
    M = sp.csr_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_out, n_in)
    )
    if not matches(M):
        raise RuntimeError("CVXPY's solution map is not linear; please report this problem")
    return M
