"""Cones of cvxjax's canonical conic form: projections onto K and K* with finite derivatives.

Private package; see :class:`Cone` for the contract and :mod:`cvxjax._program` for the
conventions (row order, svec, exponential and power cone orientation).
"""

from ._base import Cone as Cone
from .exponential import ExponentialCone as ExponentialCone
from .nonnegative import NonnegativeCone as NonnegativeCone
from .power import PowerCone as PowerCone
from .product import ProductCone as ProductCone
from .psd import PSDCone as PSDCone
from .psd import smat as smat
from .psd import svec as svec
from .second_order import SecondOrderCone as SecondOrderCone
from .zero import ZeroCone as ZeroCone
