"""Channel pruning: score, allocate, then physically remove channels.

The three steps are kept apart (as Torch-Pruning's importance / pruner / ``group.prune``):
:mod:`criteria` scores, :mod:`allocation` decides how many channels each coupled group
loses, and Torch-Pruning's dependency graph performs the surgery through BatchNorm,
residual additions, concatenations and depthwise convs.

Targets are fractions of the DENSE model (``baseline``): ``channels`` (of prunable
channels), ``params`` (of all parameters) or ``flops`` (of per-sample forward FLOPs).
Channel ratios are not parameter ratios — a conv loses parameters on both its output and
its input side — so params/flops targets are reached by searching the channel amount
(bisection, each candidate pruned on a deep copy and measured), and the achieved
values are always reported.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from prunebench.errors import ConfigError, check_range, unknown_name
from prunebench.metrics import count_params, layer_flops
from prunebench.pruning.structured.allocation import SCOPES, GroupState, plan_global, plan_layer
from prunebench.pruning.structured.attention import HeadGroup, head_groups, head_scores, head_width, remove_heads, zero_heads
from prunebench.pruning.structured.criteria import ChannelScoreContext, get_channel_criterion
from prunebench.pruning.structured.groups import (
    ROOT_TYPES,
    ChannelGroup,
    IgnoredLayers,
    build_graph,
    channel_groups,
    default_ignored,
    prune_group,
)

TARGETS = ("channels", "params", "flops")

Plan = dict[str, list[int]]  # group key -> channel positions to remove

_SEARCH_TOL = 1e-3  # params/flops targets: stop once within 0.1 percentage points
_SEARCH_STEPS = 24


def width(module: nn.Module) -> int:
    """Output width of a Conv or Linear layer."""
    return int(module.out_features if isinstance(module, nn.Linear) else module.out_channels)


def layer_channels(model: nn.Module) -> dict[str, int]:
    """Output width of every Conv/Linear layer, by module name."""
    return {n: width(m) for n, m in model.named_modules() if isinstance(m, ROOT_TYPES)}


@dataclass(frozen=True)
class StructuredBaseline:
    """Dense reference for cumulative targets: group widths, layer widths, params, FLOPs.

    Measure it once on the dense model and pass it to every level of a schedule. Only
    plain types inside, so ``to_dict()`` can go into a JSON/YAML file for resuming.
    """

    group_channels: dict[str, int]
    layer_channels: dict[str, int]
    params: int
    flops: float

    @classmethod
    def measure(
        cls,
        model: nn.Module,
        example_input: torch.Tensor,
        ignored_layers: IgnoredLayers | None = None,
        heads: bool = True,
    ) -> StructuredBaseline:
        """Measure ``model`` as it is now; ``ignored_layers`` and ``heads`` as given to :func:`prune_channels`.

        Attention head groups count their query heads (keyed by the attention module's name).
        """
        graph = build_graph(model, example_input)
        ignored = default_ignored(model, ignored_layers, example_input)
        groups = channel_groups(model, graph, ignored, warn=False)
        widths = {g.key: g.channels for g in groups}
        if heads:
            widths.update({h.key: h.channels for h in head_groups(model, ignored)})
        flops, _ = layer_flops(model, example_input)
        return cls(widths, layer_channels(model), count_params(model), float(flops))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StructuredBaseline:
        return cls(dict(d["group_channels"]), dict(d["layer_channels"]), int(d["params"]), float(d["flops"]))


@dataclass(frozen=True)
class ChannelPruneResult:
    """What one call of :func:`prune_channels` did, relative to this call and to the dense baseline.

    ``channel_ratio`` is the fraction of the baseline's prunable channels removed so
    far; ``params_reduction``/``flops_reduction`` likewise for all parameters and
    per-sample FLOPs. ``channel_amount`` is the channel fraction the allocation used
    (equal to ``amount`` for the ``channels`` target, found by search otherwise).
    """

    target: str
    amount: float
    criterion: str
    scope: str
    channel_amount: float
    channel_ratio: float
    params_before: int
    params_after: int
    params_baseline: int
    flops_before: float
    flops_after: float
    flops_baseline: float
    group_channels: dict[str, int]
    group_channels_baseline: dict[str, int]
    layer_channels: dict[str, int]
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def params_reduction(self) -> float:
        """Achieved parameter sparsity: 1 - params after / params of the dense model."""
        return 1.0 - self.params_after / self.params_baseline

    @property
    def flops_reduction(self) -> float:
        return 1.0 - self.flops_after / self.flops_baseline

    @property
    def speedup_theoretical(self) -> float:
        """Dense FLOPs / pruned FLOPs."""
        return self.flops_baseline / self.flops_after

    @property
    def achieved(self) -> float:
        """The achieved value in the units of ``target`` (compare with ``amount``)."""
        return {"channels": self.channel_ratio, "params": self.params_reduction, "flops": self.flops_reduction}[
            self.target
        ]

    def as_row(self) -> dict[str, Any]:
        """Columns for the results table (structure=channel)."""
        return {
            "structure": "channel",
            "channel_target": self.target,
            "channel_ratio": self.channel_ratio,
            "sparsity": self.params_reduction,
            "params": self.params_after,
            "params_dense": self.params_baseline,
            "flops": self.flops_after,
            "flops_dense": self.flops_baseline,
            "speedup_theoretical": self.speedup_theoretical,
        }


def _validate(amount: float, target: str, criterion: str, scope: str, max_layer_amount: float, round_to: int | None,
              batches: list | None) -> None:
    check_range("schedule.target_sparsity", amount, 0.0, 1.0)
    if target not in TARGETS:
        raise unknown_name("pruning.target", target, TARGETS)
    crit = get_channel_criterion(criterion)
    if scope not in SCOPES:
        raise unknown_name("pruning.scope", scope, SCOPES)
    check_range("pruning.max_layer_amount", max_layer_amount, 0.0, 1.0, low_inclusive=False, high_inclusive=True)
    if round_to is not None and (not isinstance(round_to, int) or isinstance(round_to, bool) or round_to < 1):
        raise ConfigError(f"pruning.round_to={round_to!r} is out of range; expected a positive integer or null")
    if crit.needs_data and not batches:
        raise ConfigError(
            f"pruning.method={criterion!r} needs calibration batches; set pruning.calibration_batches > 0"
        )


def _states(model: nn.Module, groups: Sequence[ChannelGroup | HeadGroup],
            baseline: StructuredBaseline) -> dict[str, GroupState]:
    states = {}
    for g in groups:
        if g.key not in baseline.group_channels:
            raise ConfigError(
                f"structured baseline does not match the model: it has no channel group {g.key!r} "
                f"(measure the baseline on the dense version of this model)"
            )
        # Grouped layers: allocate whole units (one offset in every channel block).
        states[g.key] = GroupState(current=g.units, dense=baseline.group_channels[g.key] // g.ch_groups)
    return states


def _unit_scores(g: ChannelGroup | HeadGroup, scores: torch.Tensor) -> torch.Tensor:
    """Per-unit scores: the mean over the group's channel blocks (Torch-Pruning's group reduction)."""
    return scores if g.ch_groups == 1 else scores.reshape(g.ch_groups, g.units).mean(0)


def _expand(g: ChannelGroup | HeadGroup, units: list[int]) -> list[int]:
    """Unit offsets -> channel positions: the same offset in every block."""
    if g.ch_groups == 1:
        return units
    return sorted(u + b * g.units for u in units for b in range(g.ch_groups))


def _channel_ratio(model: nn.Module, baseline: StructuredBaseline) -> float:
    dense = sum(baseline.group_channels.values())
    if dense == 0:
        return 0.0
    now = sum(group_width(model, k) for k in baseline.group_channels)
    return 1.0 - now / dense


def group_width(model: nn.Module, key: str) -> int:
    """Current width of the group ``key``: output channels of its root layer, or query heads."""
    m = model.get_submodule(key)
    return width(m) if isinstance(m, ROOT_TYPES) else head_width(model, key)


@dataclass
class ChannelSelection:
    """The channels :func:`prune_channels` would remove, before any surgery.

    ``plan`` maps group keys to channel positions; ``groups``/``graph`` refer to the
    model as it was when selected (apply or zero the plan before changing the model).
    """

    plan: Plan
    groups: list[ChannelGroup]
    graph: Any
    channel_amount: float
    baseline: StructuredBaseline
    heads: list[HeadGroup] = field(default_factory=list)  # attention head groups (plan: query heads)


def apply_selection(selection: ChannelSelection) -> dict[str, int]:
    """Physically remove the selected channels and heads (in place); returns what each group lost."""
    return _apply(selection.graph, selection.groups, selection.plan, selection.heads)


def _apply(graph: Any, groups: list[ChannelGroup], plan: Plan, heads: Sequence[HeadGroup] = ()) -> dict[str, int]:
    removed = {}
    for g in groups:
        idxs = plan.get(g.key, [])
        if idxs:
            prune_group(graph, g, idxs)
            removed[g.key] = len(idxs)
    # Heads after the graph's groups: their surgery touches only the attention projections,
    # which no channel group contains, so the graph's recorded indices stay valid.
    for h in heads:
        idxs = plan.get(h.key, [])
        if idxs:
            remove_heads(h, idxs)
            removed[h.key] = len(idxs)
    return removed


@torch.no_grad()
def zero_channels(selection: ChannelSelection) -> None:
    """Set to exactly zero every weight that produces a planned channel (filters, biases, BN affine).

    Afterwards (in eval mode, with activations that map 0 to 0) those channels carry
    zeros everywhere, so removing them must not change the outputs: the surgery's
    equivalence test. This is the masked counterpart of :func:`apply_selection`.
    """
    for g in selection.groups:
        idxs = selection.plan.get(g.key, [])
        if not idxs:
            continue
        drop = set(idxs)
        for m in g.members:
            if not (m.out_side and m.scorable):
                continue
            local = [li for li, r in zip(m.idxs, m.root_idxs) if r in drop]
            if not local:
                continue
            for pname in ("weight", "bias"):
                p = getattr(m.module, pname, None)
                if not isinstance(p, torch.Tensor):
                    continue
                if pname == "weight" and getattr(m.module, "transposed", False):
                    p.transpose(0, 1)[local] = 0
                else:
                    p[local] = 0
    for h in selection.heads:
        zero_heads(h, selection.plan.get(h.key, []))


class _Planner:
    """Scores once, then plans for any channel amount (the target search re-plans many times)."""

    def __init__(
        self,
        model: nn.Module,
        groups: list[ChannelGroup],
        baseline: StructuredBaseline,
        criterion: str,
        scope: str,
        max_layer_amount: float,
        round_to: int | None,
        ctx: ChannelScoreContext,
        heads: Sequence[HeadGroup] = (),
    ) -> None:
        self.crit = get_channel_criterion(criterion)
        self.groups: dict[str, ChannelGroup | HeadGroup] = {g.key: g for g in [*groups, *heads]}
        raw = self.crit.fn(model, groups, ctx)
        raw.update(head_scores(criterion, model, heads, batches=ctx.batches, loss_fn=ctx.loss_fn,
                               generator=ctx.generator))
        self.scores = {k: _unit_scores(g, raw[k]) for k, g in self.groups.items()}
        self.states = _states(model, list(self.groups.values()), baseline)
        self.scope, self.max_layer_amount, self.round_to = scope, max_layer_amount, round_to

    def plan(self, channel_amount: float) -> Plan:
        kw = dict(max_layer_amount=self.max_layer_amount, round_to=self.round_to)
        if self.scope == "layer":
            units = plan_layer(self.scores, self.states, channel_amount, **kw)
        else:
            units = plan_global(self.scores, self.states, channel_amount, normalize=self.crit.normalize, **kw)
        return {k: _expand(self.groups[k], v) for k, v in units.items()}


def _reduction(model: nn.Module, example_input: torch.Tensor, target: str, baseline: StructuredBaseline) -> float:
    if target == "params":
        return 1.0 - count_params(model) / baseline.params
    return 1.0 - layer_flops(model, example_input)[0] / baseline.flops


def _measure_plan(
    model: nn.Module,
    example_input: torch.Tensor,
    ignored: Sequence[nn.Module],
    plan: Plan,
    target: str,
    baseline: StructuredBaseline,
    heads: bool = True,
) -> float:
    """Reduction of ``target`` (vs baseline) that ``plan`` would reach, measured on a deep copy."""
    trial = copy.deepcopy(model)
    names = {m: n for n, m in model.named_modules()}
    trial_ignored = [trial.get_submodule(names[m]) for m in ignored if m in names]
    graph = build_graph(trial, example_input)
    _apply(graph, channel_groups(trial, graph, trial_ignored, warn=False), plan,
           head_groups(trial, trial_ignored) if heads else ())
    return _reduction(trial, example_input, target, baseline)


def _search(
    planner: _Planner,
    model: nn.Module,
    example_input: torch.Tensor,
    ignored: Sequence[nn.Module],
    target: str,
    amount: float,
    baseline: StructuredBaseline,
    heads: bool = True,
) -> float:
    """Channel amount whose plan reaches ``amount`` of ``target`` most closely (bisection)."""
    cache: dict[tuple, float] = {}

    def f(c: float) -> float:
        plan = planner.plan(c)
        sig = tuple(sorted((k, tuple(v)) for k, v in plan.items() if v))
        if sig not in cache:  # an empty plan is the model as it is
            cache[sig] = (
                _measure_plan(model, example_input, ignored, plan, target, baseline, heads)
                if sig
                else _reduction(model, example_input, target, baseline)
            )
        return cache[sig]

    lo, hi = 0.0, min(planner.max_layer_amount, 1.0 - 1e-9)
    f_lo, f_hi = f(lo), f(hi)
    if f_lo >= amount:
        return lo
    if f_hi < amount:
        warnings.warn(
            f"pruning.target={target!r}: {amount:g} is out of reach under pruning.max_layer_amount="
            f"{planner.max_layer_amount:g}; reaching {f_hi:.4f}",
            stacklevel=3,
        )
        return hi
    for _ in range(_SEARCH_STEPS):
        if hi - lo < 1e-4 or min(amount - f_lo, f_hi - amount) <= _SEARCH_TOL:
            break
        mid = 0.5 * (lo + hi)
        f_mid = f(mid)
        if f_mid >= amount:
            hi, f_hi = mid, f_mid
        else:
            lo, f_lo = mid, f_mid
    return hi if f_hi - amount <= amount - f_lo else lo


def select_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    amount: float,
    target: str = "channels",
    criterion: str = "l1",
    scope: str = "layer",
    max_layer_amount: float = 0.9,
    round_to: int | None = None,
    ignored_layers: IgnoredLayers | None = None,
    batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    baseline: StructuredBaseline | None = None,
    generator: torch.Generator | None = None,
    heads: bool = True,
) -> ChannelSelection:
    """Score and allocate without changing ``model``: same arguments as :func:`prune_channels`.

    For params/flops targets the search prunes deep copies to measure candidates.
    """
    _validate(amount, target, criterion, scope, max_layer_amount, round_to, batches)
    ignored = default_ignored(model, ignored_layers, example_input)
    if baseline is None:
        baseline = StructuredBaseline.measure(model, example_input, ignored, heads=heads)
    graph = build_graph(model, example_input)
    groups = channel_groups(model, graph, ignored)
    attn = head_groups(model, ignored) if heads else []
    ctx = ChannelScoreContext(batches=list(batches or []), generator=generator)
    planner = _Planner(model, groups, baseline, criterion, scope, max_layer_amount, round_to, ctx, attn)
    if target == "channels":
        channel_amount = amount
    else:
        channel_amount = _search(planner, model, example_input, ignored, target, amount, baseline, heads)
    return ChannelSelection(planner.plan(channel_amount), groups, graph, channel_amount, baseline, attn)


def prune_channels(
    model: nn.Module,
    example_input: torch.Tensor,
    *,
    amount: float,
    target: str = "channels",
    criterion: str = "l1",
    scope: str = "layer",
    max_layer_amount: float = 0.9,
    round_to: int | None = None,
    ignored_layers: IgnoredLayers | None = None,
    batches: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    baseline: StructuredBaseline | None = None,
    generator: torch.Generator | None = None,
    heads: bool = True,
) -> ChannelPruneResult:
    """Physically remove channels from ``model`` IN PLACE; see the package docstring.

    ``amount`` is the fraction of ``target`` (channels / params / flops) to have removed
    relative to ``baseline`` (the dense model; measured on ``model`` now when omitted), so
    an iterative schedule passes its cumulative level.

    Transactional: scoring, surgery and a checking forward pass run on a deep copy, which
    is swapped into ``model`` only when all of it succeeded. Any error (ConfigError for
    bad options or an architecture the dependency graph cannot follow, naming the config
    key and module) leaves ``model`` exactly as it was. ``ignored_layers`` holds modules,
    module names or fnmatch patterns (``pruning.ignored_layers``).
    """
    names = {m: n for n, m in model.named_modules()}
    ignored = default_ignored(model, ignored_layers, example_input)  # resolves names now: a typo fails before any work
    work = copy.deepcopy(model)
    work_ignored = [work.get_submodule(names[m]) for m in ignored if m in names]
    params_before = count_params(work)
    flops_before, _ = layer_flops(work, example_input)
    sel = select_channels(
        work,
        example_input,
        amount=amount,
        target=target,
        criterion=criterion,
        scope=scope,
        max_layer_amount=max_layer_amount,
        round_to=round_to,
        ignored_layers=work_ignored,
        batches=batches,
        baseline=baseline,
        generator=generator,
        heads=heads,
    )
    try:
        removed = apply_selection(sel)
        # The FLOPs count runs a forward pass: it also proves the pruned model is consistent.
        flops_after, _ = layer_flops(work, example_input)
    except Exception as e:  # noqa: BLE001 - any failure inside the copy: name the group, keep the model
        raise _surgery_error(model, example_input, sel, e) from e
    _swap_in(model, work)
    from prunebench.models.hf_config import sync_config

    sync_config(model)  # a transformers model's config states its new head counts and widths
    base = sel.baseline
    return ChannelPruneResult(
        target=target,
        amount=amount,
        criterion=criterion,
        scope=scope,
        channel_amount=sel.channel_amount,
        channel_ratio=_channel_ratio(model, base),
        params_before=params_before,
        params_after=count_params(model),
        params_baseline=base.params,
        flops_before=float(flops_before),
        flops_after=float(flops_after),
        flops_baseline=base.flops,
        group_channels={k: group_width(model, k) for k in base.group_channels},
        group_channels_baseline=dict(base.group_channels),
        layer_channels=layer_channels(model),
        removed=removed,
    )


def _surgery_error(model: nn.Module, example_input: torch.Tensor, sel: ChannelSelection, err: Exception) -> ConfigError:
    """ConfigError naming the first group whose surgery alone breaks the model (tried on fresh copies).

    Typical cause: a width kept in a module attribute (a head count, a hidden size used in
    a ``reshape``) that the dependency graph cannot see.
    """
    culprit = None
    for g in sel.groups:
        idxs = sel.plan.get(g.key, [])
        if not idxs:
            continue
        trial = copy.deepcopy(model)
        try:
            graph = build_graph(trial, example_input)
            tg = next(t for t in channel_groups(trial, graph, warn=False) if t.key == g.key)
            prune_group(graph, tg, idxs)
            with torch.no_grad():
                was = trial.training
                trial.eval()
                trial(example_input)
                trial.train(was)
        except Exception:  # noqa: BLE001
            culprit = g
            break
    if culprit is None:
        return ConfigError(
            f"pruning.structure=channel: channel surgery left an inconsistent model ({type(err).__name__}: {err}); "
            "the model was left unchanged. An operation the dependency graph does not follow (padding, slicing or "
            "reshaping along channels)? Keep the affected layers with pruning.ignored_layers"
        )
    members = ", ".join(sorted({m.name for m in culprit.members}))[:300]
    return ConfigError(
        f"pruning.structure=channel: removing channels of group {culprit.key!r} (layers {members}) breaks the model "
        f"({type(err).__name__}: {err}); a width kept in a module attribute (head count, hidden size) or a reshape "
        f"the dependency graph cannot follow? The model was left unchanged; keep this group whole with "
        f"pruning.ignored_layers=[{culprit.key!r}]"
    )


def _swap_in(model: nn.Module, pruned: nn.Module) -> None:
    """Make ``model`` the pruned copy, module by module, keeping the caller's module objects.

    Surgery changes tensors and width attributes, never the module tree; tensors that did
    not change stay the caller's own objects (so references to them stay valid).
    """
    for (name, dst), (_, src) in zip(model.named_modules(), pruned.named_modules(), strict=True):
        for store in ("_parameters", "_buffers"):
            old, new = getattr(dst, store), getattr(src, store)
            merged = {}
            for k, t in new.items():
                o = old.get(k)
                same = o is not None and t is not None and o.shape == t.shape and o.dtype == t.dtype and torch.equal(o, t)
                merged[k] = o if same else t
            old.clear()
            old.update(merged)
        for k, v in vars(src).items():
            if not k.startswith("_") and k != "training" and isinstance(v, (int, float, bool, tuple, list, str)):
                setattr(dst, k, copy.copy(v))
