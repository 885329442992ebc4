"""Every ``pruning.scope``, registered: the allocation module's own (``global``, ``layer``,
``erk``), Wanda's ``row`` and OWL's ``owl``. Code that takes the scope from a config imports
:func:`allocate` from here, so the registry is complete; :mod:`prunebench.pruning.allocation`
itself imports none of the scopes defined elsewhere (no import cycle through them).
"""

from __future__ import annotations

from prunebench.pruning import owl as _owl  # noqa: F401  (registers "owl")
from prunebench.pruning.allocation import (  # noqa: F401  (re-exported)
    ALLOCATIONS,
    allocate,
    allocate_split,
    erk_keep_counts,
    output_rate_target,
)
from prunebench.pruning.criteria.wanda import allocate_row

if "row" not in ALLOCATIONS.names():
    ALLOCATIONS.register("row")(allocate_row)

__all__ = ["ALLOCATIONS", "allocate", "allocate_split", "erk_keep_counts", "output_rate_target"]
