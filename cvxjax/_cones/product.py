"""The product cone ``K = K_1 × … × K_p`` of the canonical form, in :class:`ConeDims` row order."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._program import ConeDims
from ._base import Cone
from .exponential import ExponentialCone
from .nonnegative import NonnegativeCone
from .power import PowerCone, project_pow
from .psd import PSDCone
from .second_order import SecondOrderCone
from .zero import ZeroCone

_BatchFn = Callable[[jax.Array], jax.Array]


class _Group(NamedTuple):
    """Equal cones projected together: rows ``idx`` (count, size) of the stacked vector."""

    idx: np.ndarray
    start: int | None  # first row if idx is the contiguous range start..start+idx.size
    project: _BatchFn  # (count, size) -> (count, size)
    project_dual: _BatchFn


def _make_group(idx: np.ndarray, project: _BatchFn, project_dual: _BatchFn) -> _Group:
    flat = idx.ravel()
    contiguous = flat.size > 0 and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size))
    return _Group(idx, int(flat[0]) if contiguous else None, project, project_dual)


def _vmapped(cone: Cone) -> tuple[_BatchFn, _BatchFn]:
    return jax.vmap(cone.project), jax.vmap(cone.project_dual)


class ProductCone(Cone):
    """Product of the cones described by a :class:`ConeDims`, acting on the stacked vector.

    Rows are ordered zero, nonnegative, second-order, PSD (svec), exponential, power, as in
    :mod:`cvxjax._program`. ``project``/``project_dual`` take and return shape
    ``(dims.rows,)``; the dual of a product is the product of the duals.

    For efficiency the cones are not projected one by one: the zero and nonnegative rows
    are single elementwise blocks, and equal cones (SOCs of the same size, PSD cones of the
    same order, all exponential cones, all power cones — the exponent is vmapped as data)
    are gathered into a ``(count, size)`` array and projected with one ``jax.vmap``. Only
    distinct sizes cost a separate (static, Python-level) block. Derivatives come from
    autodiff through the gathers and the parts' own (custom) JVPs.

    Attributes:
      dims: the :class:`ConeDims`.
      dim: total number of rows.
      cones: the individual cones in row order (zero and nonnegative rows as one cone each).
    """

    def __init__(self, dims: ConeDims):
        self.dims = dims
        self.dim = dims.rows
        cones: list[Cone] = []
        groups: list[_Group] = []
        offset = 0

        def contiguous_block(count: int, size: int) -> np.ndarray:
            nonlocal offset
            idx = np.arange(offset, offset + count * size).reshape(count, size)
            offset += count * size
            return idx

        if dims.zero:
            cone = ZeroCone(dims.zero)
            cones.append(cone)
            idx = contiguous_block(1, dims.zero)
            groups.append(_make_group(idx, *_vmapped(cone)))
        if dims.nonneg:
            cone = NonnegativeCone(dims.nonneg)
            cones.append(cone)
            idx = contiguous_block(1, dims.nonneg)
            groups.append(_make_group(idx, *_vmapped(cone)))

        # SOC and PSD: group equal sizes, which need not be adjacent, so gather by index.
        for sizes, make in ((dims.soc, SecondOrderCone), (dims.psd, PSDCone)):
            rows_by_size: dict[int, list[np.ndarray]] = {}
            for size in sizes:
                cone = make(size)
                cones.append(cone)
                rows_by_size.setdefault(size, []).append(np.arange(offset, offset + cone.dim))
                offset += cone.dim
            for size, rows in rows_by_size.items():
                groups.append(_make_group(np.stack(rows), *_vmapped(make(size))))

        if dims.exp:
            cone = ExponentialCone()
            cones.extend(ExponentialCone() for _ in range(dims.exp))
            idx = contiguous_block(dims.exp, 3)
            groups.append(_make_group(idx, *_vmapped(cone)))

        if dims.pow:
            alphas = tuple(float(a) for a in dims.pow)
            cones.extend(PowerCone(a) for a in alphas)  # validates the exponents
            alphas_np = np.asarray(alphas)
            idx = contiguous_block(len(alphas), 3)

            def pow_project(V, alphas_np=alphas_np):
                a = jnp.asarray(alphas_np, V.dtype)
                return jax.vmap(project_pow)(V, a)

            def pow_project_dual(V, alphas_np=alphas_np):
                # Moreau, as in Cone.project_dual: Π_{K*}(v) = v + Π_K(−v).
                return V + pow_project(-V)

            groups.append(_make_group(idx, pow_project, pow_project_dual))

        assert offset == self.dim
        self.cones = tuple(cones)
        self._groups = tuple(groups)
        order = np.concatenate([g.idx.ravel() for g in groups]) if groups else np.zeros(0, int)
        # Results are concatenated group by group; `_inverse` puts them back in row order.
        self._inverse = None if np.array_equal(order, np.arange(self.dim)) else np.argsort(order)
        self.dual_is_self = all(c.dual_is_self for c in cones)

    def _apply(self, v: jax.Array, dual: bool) -> jax.Array:
        if self.dim == 0:
            return v
        parts = []
        for g in self._groups:
            count, size = g.idx.shape
            if g.start is not None:
                block = jax.lax.slice_in_dim(v, g.start, g.start + count * size)
                block = block.reshape(count, size)
            else:
                block = v[g.idx]
            out = g.project_dual(block) if dual else g.project(block)
            parts.append(out.reshape(-1))
        out = jnp.concatenate(parts)
        return out if self._inverse is None else out[self._inverse]

    def project(self, v: jax.Array) -> jax.Array:
        """Projection onto K. v: (dim,) -> (dim,)."""
        return self._apply(v, dual=False)

    def project_dual(self, v: jax.Array) -> jax.Array:
        """Projection onto K* (blockwise duals). v: (dim,) -> (dim,)."""
        return self._apply(v, dual=True)

    def __repr__(self) -> str:
        return f"ProductCone({self.dims})"
