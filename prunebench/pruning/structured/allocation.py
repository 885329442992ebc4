"""Channel allocation: turn per-channel scores into the channels each group loses.

Pure functions of (scores, current widths, dense widths) — no model, no graph — so the
target search can re-plan cheaply and tests can check the counts exactly.

* ``layer`` scope: every group keeps ``ceil((1 - amount) * dense width)`` channels.
* ``global`` scope: all channels are ranked together and ``round(amount * dense total)``
  are removed in all, lowest first, skipping a group once it reaches its cap.

Both count against the DENSE widths, so an iterative schedule passes cumulative
amounts and already-removed channels count toward them (channels never come back).
No group keeps fewer than ``ceil((1 - max_layer_amount) * dense width)`` channels, nor
fewer than one. With ``round_to`` every pruned width is a multiple of it (nearest
multiple, at least one multiple, never below the cap); a group already narrower than
that is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch

SCOPES = ("global", "layer")


@dataclass(frozen=True)
class GroupState:
    """Widths of one group: ``current`` now, ``dense`` in the baseline."""

    current: int
    dense: int


def min_keep(dense: int, max_layer_amount: float, round_to: int | None) -> int:
    """Fewest channels a group of dense width ``dense`` may keep."""
    keep = max(1, math.ceil((1.0 - max_layer_amount) * dense - 1e-9))
    if round_to:
        keep = round_to * math.ceil(keep / round_to)
    return keep


def _round_keep(keep: int, state: GroupState, max_layer_amount: float, round_to: int | None) -> int:
    floor = min_keep(state.dense, max_layer_amount, round_to)
    if round_to:
        keep = max(round_to, round_to * math.floor(keep / round_to + 0.5))
    return min(max(keep, floor), state.current)


def _lowest(scores: torch.Tensor, n: int) -> list[int]:
    """Positions of the ``n`` lowest scores (stable on ties, so plans are reproducible)."""
    if n <= 0:
        return []
    order = torch.argsort(torch.nan_to_num(scores.float(), nan=float("-inf")), stable=True)
    return sorted(order[:n].tolist())


def plan_layer(
    scores: Mapping[str, torch.Tensor],
    states: Mapping[str, GroupState],
    amount: float,
    *,
    max_layer_amount: float,
    round_to: int | None = None,
) -> dict[str, list[int]]:
    """Uniform: each group keeps ``(1 - amount)`` of its dense width (within cap and rounding)."""
    plan = {}
    for key, st in states.items():
        keep = math.ceil((1.0 - amount) * st.dense - 1e-9)
        if keep < st.current:  # round only widths that change: amount 0 is a no-op
            keep = _round_keep(keep, st, max_layer_amount, round_to)
        else:
            keep = st.current
        plan[key] = _lowest(scores[key], st.current - keep)
    return plan


def plan_global(
    scores: Mapping[str, torch.Tensor],
    states: Mapping[str, GroupState],
    amount: float,
    *,
    max_layer_amount: float,
    round_to: int | None = None,
    normalize: bool = True,
) -> dict[str, list[int]]:
    """Global ranking: remove ``round(amount * dense total)`` channels in all, lowest score first.

    With ``normalize`` each group's scores are divided by their mean first, so layers
    whose filters are simply larger (more fan-in) are not spared for that alone.
    """
    keys = list(states)
    dense_total = sum(st.dense for st in states.values())
    already = sum(st.dense - st.current for st in states.values())
    todo = round(amount * dense_total) - already
    if todo <= 0:
        return {k: [] for k in keys}
    flat, owner = [], []
    for i, k in enumerate(keys):
        s = torch.nan_to_num(scores[k].float(), nan=float("-inf"))
        if normalize:
            finite = s[torch.isfinite(s)]
            mean = finite.abs().mean() if finite.numel() else torch.tensor(1.0)
            s = s / (mean + 1e-12)
        flat.append(s)
        owner.append(torch.full((len(s),), i, dtype=torch.long))
    flat_t, owner_t = torch.cat(flat), torch.cat(owner)
    budget = [st.current - min_keep(st.dense, max_layer_amount, round_to) for st in states.values()]
    removed = [0] * len(keys)
    taken = 0
    for pos in torch.argsort(flat_t, stable=True).tolist():
        if taken >= todo:
            break
        g = int(owner_t[pos])
        if removed[g] < budget[g]:
            removed[g] += 1
            taken += 1
    plan = {}
    for i, k in enumerate(keys):
        st = states[k]
        keep = st.current - removed[i]
        if round_to and removed[i]:
            keep = _round_keep(keep, st, max_layer_amount, round_to)
        plan[k] = _lowest(scores[k], st.current - keep)
    return plan
