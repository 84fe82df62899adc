"""The problem data: CVXPY's conic form as an affine map θ ↦ (P, q, A, b).

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
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.utilities import scopes

from .._program import ConeDims, ProgramStructure
from ._linear_map import _frozen_index, _LinearMap, _probe_linear_map, _tensor_coo

_DPP_URL = "https://www.cvxpy.org/tutorial/dpp/"
_DCP_URL = "https://www.cvxpy.org/tutorial/dcp/"

# CVXPY's id of the constant column of the parameter vector (cvxpy.lin_ops.lin_op.CONSTANT_ID).
_CONSTANT_ID = -1

_SYMMETRIC_ATTRIBUTES = ("symmetric", "PSD", "NSD")


def _check_problem(problem: cp.Problem) -> bool:
    """Raise unless the problem can be compiled; return whether it needs CVXPY's parametric
    ``quad_form`` scope (a Parameter inside ``cp.quad_form(x, Q)`` in the objective).

    CVXPY 1.9 treats ``quad_form(x, Q)`` with a parameter-affine PSD (NSD) ``Q`` as DPP only
    inside ``scopes.quad_form_dpp_scope()``, for solvers that take a quadratic objective:
    then ``Q`` goes into ``P(θ)`` instead of being factored into a second-order cone (which
    needs its value). Every cvxjax solver takes ``P``, so the scope is always available; it is
    only entered when the standard rules fail, and only for the objective
    (``problem.is_dpp(quad_form_dpp="qp")``), as CVXPY itself does.
    """
    if not problem.is_dcp():
        raise ValueError(
            f"the problem is not DCP (disciplined convex), so it cannot be compiled; see {_DCP_URL}"
        )
    quad_form_scope = False
    if not problem.is_dpp():
        if problem.is_dpp(quad_form_dpp="qp"):
            quad_form_scope = True
        elif _objective_dpp_in_scope(problem) or _constraints_dpp_in_scope(problem):
            raise ValueError(
                "the problem is DCP but not DPP: cp.quad_form(x, Q) with a Parameter in Q is "
                "supported in the objective only (CVXPY canonicalizes a constraint "
                "quad_form(x, Q) <= t through a factorization of Q's value). In a constraint "
                "write it with a parametrized factor instead: cp.sum_squares(L @ x) <= t with "
                "L a Parameter and Q = LᵀL"
            )
        else:
            raise ValueError(
                "the problem is DCP but not DPP (disciplined parametrized programming): its "
                "data must be affine in the parameters (e.g. no products of two "
                "parameter-dependent expressions such as alpha * Q or Q @ Q, parameters must "
                "not enter nonlinear atoms of constants, and in cp.quad_form(x, Q) the x "
                "argument must be parameter-free and Q affine in the parameters with a PSD or "
                f"NSD attribute). Rewrite it following the rules at {_DPP_URL}"
            )
    if problem.is_mixed_integer():
        raise NotImplementedError("mixed-integer problems are not supported")
    return quad_form_scope


def _objective_dpp_in_scope(problem: cp.Problem) -> bool:
    with scopes.quad_form_dpp_scope():
        return bool(problem.objective.is_dcp(dpp=True))


def _constraints_dpp_in_scope(problem: cp.Problem) -> bool:
    """Whether the constraints are DPP once parametric quad_form is allowed, while they are
    not without it: then a parametric quad_form sits in a constraint."""
    plain = all(c.is_dcp(dpp=True) for c in problem.constraints)
    if plain:
        return False
    with scopes.quad_form_dpp_scope():
        return all(c.is_dcp(dpp=True) for c in problem.constraints)


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
    M_A = -sp.csr_array((T.data[in_A], (A_entry, T.col[in_A])), shape=(A_flat.size, embed.shape[0]))
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
