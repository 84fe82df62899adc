"""The contract every solver of cvxjax implements.

A solver solves one instance of the canonical program of :mod:`cvxjax._program`

    minimize ½ xᵀPx + qᵀx   subject to   Ax + s = b,  s ∈ K

and returns the primal-dual triple (x, y, s) with ``Px + q + Aᵀy = 0``, ``y ∈ K*``,
``sᵀy = 0`` in *our* conventions (each solver converts to and from its own). It is never
differentiated: derivatives come from the optimality residual (:mod:`cvxjax._residual`),
and its answer is checked by one JAX function (:func:`cvxjax._residual.checked_status`)
whatever the solver, so a solver only reports what it found.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, ClassVar, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._settings import check_settings as _check_settings

ALL_CONES = frozenset({"zero", "nonneg", "soc", "psd", "exp", "pow"})


class RawSolution(NamedTuple):
    """What a solver returns for one instance (a pytree; batched under ``vmap``).

    Attributes:
      x: (n,) primal point.
      y: (m,) dual point, in K*.
      s: (m,) slack, in K.
      status: int32 scalar, a :class:`cvxjax.Status` code as the solver sees it (the layer's
        residual check may still turn it into ``INACCURATE`` or ``SOLVED``). With
        ``PRIMAL_INFEASIBLE``, ``DUAL_INFEASIBLE`` or ``NUMERICAL_ERROR`` the point is not
        used (it may be NaN or a certificate).
      iterations: int32 scalar, the solver's iteration count.
    """

    x: jax.Array
    y: jax.Array
    s: jax.Array
    status: jax.Array
    iterations: jax.Array


@dataclasses.dataclass(frozen=True)
class AbstractSolver(abc.ABC):
    """Base of every solver (the docstring is the contract).

    Class data:
      name: the name ``solver=`` accepts (``"CLARABEL"``, ``"JAX"``, ...).
      supported_cones: cone families it handles, as in :meth:`ConeDims.present`.
      data_form: ``"sparse"`` (it receives a :class:`~cvxjax._program.SparseProgram`, the
        canonical program on its sparsity pattern) or ``"dense"`` (it receives a
        :class:`~cvxjax._program.DenseProgram`, after the presolve of :mod:`cvxjax._reduce`).
        A dense-form solver puts the whole layer on the dense path.
      dtypes: floating dtypes of parameter values it accepts (outputs come back in the same
        dtype; host solvers compute in float64 whatever the input).
      polishes: its answers already come out of Newton steps on F, so the layer adds none by
        default (``refine``).

    Fields:
      settings: solver options (its own names), frozen as a sorted tuple of pairs so the
        solver is hashable and compiled functions can be cached on it. Options given to the
        layer (``solver_args``) or per call are merged over them.

    Methods to implement:
      ``init(structure) -> workspace``: once per layer, outside any trace: index arrays,
        permutations, cone lists. ``structure`` is the static
        :class:`~cvxjax._program.ProgramStructure` (sparse form) or
        :class:`~cvxjax._program.DenseShape` (dense form) of the programs it will receive.
      ``solve(workspace, program, settings, warm_start) -> RawSolution``: one unbatched
        instance, traceable (``jit``/``vmap`` apply to it; under ``vmap`` it is handed a
        batch). ``settings`` is a plain dict of options; ``warm_start`` ``None`` or a
        point with fields ``x``, ``y``, ``s`` (a :class:`cvxjax.WarmStart`: a previous
        answer of a solver of the same form, finite; zeros mean a cold start) to start from.

    Optional:
      ``default_check_tol(dtype)``: the largest relative KKT residual accepted by default.
      ``select(...)``: which solver actually runs (the automatic choice overrides it).
    """

    name: ClassVar[str] = ""
    supported_cones: ClassVar[frozenset] = frozenset()
    data_form: ClassVar[str] = "sparse"
    dtypes: ClassVar[frozenset] = frozenset({"float32", "float64"})
    polishes: ClassVar[bool] = False

    settings: tuple = ()

    @classmethod
    def with_settings(cls, **settings) -> "AbstractSolver":
        """An instance with these options, e.g. ``Clarabel.with_settings(max_iter=100)``."""
        return cls(settings=freeze(settings))

    @abc.abstractmethod
    def init(self, structure) -> Any:
        """Structural work done once per layer; the result is passed back to :meth:`solve`."""

    @abc.abstractmethod
    def solve(
        self,
        workspace: Any,
        program,
        settings: Mapping[str, Any],
        warm_start: Optional[RawSolution] = None,
    ) -> RawSolution:
        """Solve one instance (traceable)."""

    def default_check_tol(self, dtype) -> float:
        """1e-6 in float64. In float32 the solution alone is rounded to ≈ 1e-7 relative and
        products with A and P add n such roundings, so the default there is 1e-4."""
        return 1e-6 if jnp.finfo(dtype).bits >= 64 else 1e-4

    def select(self, structure, dense_shape, dtype, settings) -> "AbstractSolver":
        """The solver a call runs: ``self``. ``structure`` is the canonical program's,
        ``dense_shape`` the presolved dense program's (``None`` if the layer is on the sparse
        path), ``dtype`` that of the parameter values, ``settings`` the merged options."""
        del structure, dense_shape, dtype, settings
        return self

    def merged_settings(self, extra: Optional[Mapping[str, Any]]) -> dict:
        return {**dict(self.settings), **dict(extra or {})}

    def settings_spec(self, cones):
        """The options this solver accepts for programs with these cones, as a
        :class:`cvxjax._solvers._settings.SettingsSpec`; ``None`` (the default, for solvers
        defined outside cvxjax) accepts any options unchecked."""
        del cones
        return None

    def check_settings(self, extra: Optional[Mapping[str, Any]], cones) -> dict:
        """``self.settings`` merged with ``extra``, validated and translated to the solver's
        own option names (cvxpylayers' ``eps``, ``max_iters``, ... included). Raises one
        ``ValueError`` naming an unknown option and listing the accepted ones."""
        return _check_settings(self.name, self.settings_spec(cones), self.merged_settings(extra))


def freeze(settings: Optional[Mapping[str, Any]]) -> tuple:
    """Options as a sorted tuple of pairs (hashable; lists become tuples)."""

    def hashable(value):
        if isinstance(value, (list, tuple)):
            return tuple(hashable(v) for v in value)
        if isinstance(value, dict):
            return freeze(value)
        return value

    return tuple(sorted((str(k), hashable(v)) for k, v in dict(settings or {}).items()))
