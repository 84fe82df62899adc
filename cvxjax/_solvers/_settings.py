"""Solver options: one validation for every solver, and the names cvxpylayers users pass.

Each solver declares the options it accepts (:class:`SettingsSpec`: its own names, found by
introspecting the solver library where it exposes them, and how the option names of
cvxpylayers / diffcp / SCS map onto them). :func:`check_settings` is the one place options are
checked: an unknown name raises the same ``ValueError`` whichever solver runs (and whichever
the automatic choice picked), naming the option, the solver and the names it accepts; a
cvxpylayers name is translated to the solver's own, or rejected with what to write instead.
The layer calls it eagerly, at construction and on every call, before anything is traced, so
the error never surfaces from inside a host callback as a ``JaxRuntimeError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from typing import Any, Callable, Mapping, Optional, Union

# An alias maps a value to native options ({} = the option has nothing to change for this
# solver), or is a string: the reason it is rejected, and what to write instead.
Alias = Union[Callable[[Any], dict], str]

# diffcp's own options (cvxpylayers' default backend); none has a meaning in cvxjax.
_DIFFCP_ONLY = {
    "solve_method": (
        "is diffcp's choice of inner solver; in cvxjax choose the solver with the layer's "
        "solver= argument (e.g. solver='SCS' or solver='CLARABEL')"
    ),
    "mode": (
        "is diffcp's derivative method; cvxjax differentiates with its own implicit rule "
        "(drop the option)"
    ),
    "n_jobs_forward": "sets diffcp's worker processes; use the layer's max_workers= instead",
    "n_jobs_backward": "sets diffcp's worker processes; use the layer's max_workers= instead",
}


@dataclasses.dataclass(frozen=True)
class SettingsSpec:
    """The options one solver accepts.

    Attributes:
      names: a function returning the solver's own option names (called once, lazily, so a
        solver library is only imported when its solver is used).
      aliases: other names (cvxpylayers / diffcp / SCS spellings) and how they translate.
      check_values: optional eager check of the values (raises ``ValueError``).
      doc: where the solver's options are documented, for the error message.
    """

    names: Callable[[], frozenset]
    aliases: Mapping[str, Alias] = dataclasses.field(default_factory=dict)
    check_values: Optional[Callable[[Mapping[str, Any]], None]] = None
    doc: str = ""


def check_settings(solver_name: str, spec: Optional[SettingsSpec], settings) -> dict:
    """``settings`` validated and translated to the solver's own names.

    Native names win over aliases when both set the same option. Raises ``ValueError`` for an
    unknown or rejected name (the message names it, the solver, and the accepted names).
    """
    settings = dict(settings or {})
    if spec is None:  # a user-defined solver without a declaration: its own business
        return settings
    names = _cached_names(spec)
    native, translated = {}, {}
    for key, value in settings.items():
        if key in names:
            native[key] = value
        elif key in spec.aliases or key in _DIFFCP_ONLY:
            alias = spec.aliases.get(key, _DIFFCP_ONLY.get(key))
            if isinstance(alias, str):
                raise ValueError(
                    f"solver_args: {key!r} is not an option of {solver_name}: it {alias}."
                )
            translated.update(alias(value))
        else:
            close = difflib.get_close_matches(key, sorted(names | set(spec.aliases)), n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            accepted = ", ".join(sorted(names))
            aliases = ", ".join(
                sorted(k for k, a in spec.aliases.items() if not isinstance(a, str))
            )
            raise ValueError(
                f"solver_args: unknown option {key!r} for solver {solver_name}.{hint} "
                f"{solver_name} accepts: {accepted}"
                + (f"; and the cvxpylayers/SCS names {aliases}" if aliases else "")
                + (f" (see {spec.doc})" if spec.doc else "")
                + "."
            )
    options = {**translated, **native}
    if spec.check_values is not None:
        spec.check_values(options)
    return options


@functools.lru_cache(maxsize=None)
def _names_of(names_fn) -> frozenset:
    return frozenset(names_fn())


def _cached_names(spec: SettingsSpec) -> frozenset:
    return _names_of(spec.names)


def _set(*names):
    """An alias setting each of ``names`` to the value."""
    return lambda value: {name: value for name in names}


def _ignored(_value) -> dict:
    return {}


# ---- Clarabel ---------------------------------------------------------------------------------


def clarabel_names() -> frozenset:
    import clarabel

    settings = clarabel.DefaultSettings()
    return frozenset(
        name
        for name in dir(settings)
        if not name.startswith("_") and not callable(getattr(settings, name))
    )


def _clarabel_check_values(options) -> None:
    import clarabel

    settings = clarabel.DefaultSettings()
    for key, value in options.items():
        try:
            setattr(settings, key, value)
        except (TypeError, ValueError, AttributeError, OverflowError) as err:
            raise ValueError(
                f"solver_args: CLARABEL's option {key!r} does not take {value!r}: {err}"
            ) from None


_NO_ACCELERATION = _ignored  # Anderson acceleration of SCS; an interior point has none

CLARABEL = SettingsSpec(
    names=clarabel_names,
    aliases={
        # diffcp/SCS: one tolerance for primal, dual residuals and gap.
        "eps": _set("tol_gap_abs", "tol_gap_rel", "tol_feas"),
        "tol": _set("tol_gap_abs", "tol_gap_rel", "tol_feas"),  # Moreau's and cvxjax JAX's
        "eps_abs": _set("tol_gap_abs", "tol_feas"),
        "eps_rel": _set("tol_gap_rel"),
        "max_iters": _set("max_iter"),
        "acceleration_lookback": _NO_ACCELERATION,
        "acceleration_interval": _NO_ACCELERATION,
        "time_limit_secs": _set("time_limit"),
    },
    check_values=_clarabel_check_values,
    doc="clarabel.DefaultSettings",
)

# ---- SCS --------------------------------------------------------------------------------------

# SCS 3's keyword arguments (scs/include/glbopts.h, the Python wrapper's keyword parser; each is
# checked against scs.SCS in tests/test_compat.py). SCS exposes no list to introspect.
_SCS_NAMES = frozenset(
    {
        "normalize",
        "scale",
        "adaptive_scale",
        "rho_x",
        "max_iters",
        "eps_abs",
        "eps_rel",
        "eps_infeas",
        "alpha",
        "time_limit_secs",
        "verbose",
        "acceleration_lookback",
        "acceleration_interval",
        "write_data_filename",
        "log_csv_filename",
    }
)

SCS = SettingsSpec(
    names=lambda: _SCS_NAMES,
    aliases={
        "eps": _set("eps_abs", "eps_rel"),
        "tol": _set("eps_abs", "eps_rel"),
        "max_iter": _set("max_iters"),
    },
    doc="https://www.cvxgrp.org/scs/api/settings.html",
)

# ---- OSQP -------------------------------------------------------------------------------------


def osqp_names() -> frozenset:
    import osqp

    settings = osqp.OSQP().ext.OSQPSettings()
    fields = {name for name in dir(settings) if not name.startswith("_")}
    # Names the Python wrapper translates itself (osqp.OSQP.update_settings).
    return frozenset(fields | {"solver_type", "cg_preconditioner"})


OSQP = SettingsSpec(
    names=osqp_names,
    aliases={
        "eps": _set("eps_abs", "eps_rel"),
        "tol": _set("eps_abs", "eps_rel"),
        "max_iters": _set("max_iter"),
        "polish": _set("polishing"),
        "acceleration_lookback": _NO_ACCELERATION,
        "acceleration_interval": _NO_ACCELERATION,
        "time_limit_secs": _set("time_limit"),
    },
    doc="https://osqp.org/docs/interfaces/solver_settings.html",
)

# ---- the pure-JAX solver ----------------------------------------------------------------------

_JAX_QP_NAMES = frozenset({"tol", "max_iter", "refine"})
_JAX_CONIC_NAMES = frozenset(
    {"tol", "max_iter", "check_every", "polish_steps", "polish_at", "tol_inf"}
)


def _jax_verbose(value) -> dict:
    if value:
        raise ValueError(
            "solver_args: the JAX solver prints no progress log (verbose=True); to watch a "
            "solve, run a host solver, e.g. solver='CLARABEL' with solver_args={'verbose': True}."
        )
    return {}


def jax_spec(is_qp: bool) -> SettingsSpec:
    """The JAX solver's options: those of its interior point (QPs) or of its ADMM."""
    return _JAX_QP if is_qp else _JAX_CONIC


def _jax_aliases(method: str) -> dict:
    return {
        "eps": _set("tol"),
        "eps_rel": _set("tol"),
        "eps_abs": (
            f"has no counterpart: the JAX solver's {method} stops on one relative tolerance; "
            "write tol=... instead"
        ),
        "max_iters": _set("max_iter"),
        "verbose": _jax_verbose,
        "acceleration_lookback": _NO_ACCELERATION,
        "acceleration_interval": _NO_ACCELERATION,
    }


_JAX_QP = SettingsSpec(
    names=lambda: _JAX_QP_NAMES,
    aliases=_jax_aliases("interior-point method"),
    doc="cvxjax.solvers.Jax (QPs: the interior-point method)",
)
_JAX_CONIC = SettingsSpec(
    names=lambda: _JAX_CONIC_NAMES,
    aliases=_jax_aliases("ADMM"),
    doc="cvxjax.solvers.Jax (cones other than zero and nonnegative: ADMM)",
)
