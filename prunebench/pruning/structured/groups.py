"""Coupled channel groups, found by Torch-Pruning's dependency graph.

A *group* is a set of channels that must be removed together: a conv's filters, its
BatchNorm, the next layers' input channels, and — through residual additions — every
other conv writing into the same sum. Concatenations and depthwise convs are followed
by the graph too. prunebench never re-derives these couplings; it only names each group
and scores its channels.

A group is named by its *key*: the first Conv/Linear (in ``named_modules`` order) whose
output channels belong to it. Keys are stable across deep copies, pruning and
save/load, so a dense baseline measured once can be matched against a pruned model later.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from prunebench.pruning.targets import output_layer_name

# Layers whose output channels can root a group (the "filters" of channel pruning).
ROOT_TYPES: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass
class Member:
    """One layer touched by a group: ``out_side`` when the group removes its outputs.

    ``idxs`` are the layer's own channel indices; ``root_idxs`` the matching channel
    positions of the group (they differ after a concatenation). ``None`` entries in
    ``root_idxs`` mean the graph could not map that index back; such members are
    not scored.
    """

    name: str
    module: nn.Module
    out_side: bool
    idxs: list[int]
    root_idxs: list[int | None]

    @property
    def scorable(self) -> bool:
        return all(r is not None for r in self.root_idxs)


@dataclass
class ChannelGroup:
    """A set of coupled channels; ``channels`` is its current width."""

    key: str
    root: nn.Module
    handler: Any  # Torch-Pruning's pruning function of the root (out-channel side)
    channels: int
    members: list[Member] = field(default_factory=list)

    def producers(self) -> list[Member]:
        """Conv/Linear layers whose filters produce this group's channels."""
        return [m for m in self.members if m.out_side and isinstance(m.module, ROOT_TYPES) and m.scorable]

    def batchnorms(self) -> list[Member]:
        """Affine BatchNorm layers normalising this group's channels."""
        return [
            m
            for m in self.members
            if isinstance(m.module, nn.modules.batchnorm._BatchNorm) and m.module.affine and m.scorable
        ]


def default_ignored(model: nn.Module, ignored_layers: Iterable[nn.Module] | None = None) -> list[nn.Module]:
    """``ignored_layers`` plus the output layer (last ``nn.Linear``), whose width is the class count."""
    ignored = list(ignored_layers or [])
    out = output_layer_name(model)
    if out is not None:
        module = model.get_submodule(out)
        if not any(module is m for m in ignored):
            ignored.append(module)
    return ignored


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` once on ``example_input`` into a dependency graph.

    Tracing needs autograd and puts the model in eval mode; the caller's mode and
    grad state are restored afterwards.
    """
    was_training = model.training
    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    finally:
        model.train(was_training)
    return graph


def channel_groups(
    model: nn.Module,
    graph: tp.DependencyGraph,
    ignored_layers: Sequence[nn.Module] = (),
    *,
    warn: bool = True,
) -> list[ChannelGroup]:
    """All prunable groups of ``model`` (full index sets), in module order of their keys.

    A group is left out when it would remove output channels of an ignored layer, when
    it has fewer than two channels, or when the graph cannot follow it safely (see
    :func:`_unsafe`); the last case warns (with ``warn``), naming the groups kept whole.
    """
    order = {m: i for i, (_, m) in enumerate(model.named_modules())}
    names = {m: n for n, m in model.named_modules()}
    groups = []
    for group in graph.get_all_groups(ignored_layers=[], root_module_types=ROOT_TYPES):
        root_dep = group[0].dep
        members = []
        for item in group.items:
            module = item.dep.target.module
            if not isinstance(module, nn.Module) or module not in names:
                continue  # Torch-Pruning's placeholder ops (add, cat, reshape): no weights
            members.append(
                Member(
                    name=names[module],
                    module=module,
                    out_side=graph.is_out_channel_pruning_fn(item.dep.handler),
                    idxs=list(item.idxs),
                    root_idxs=list(item.root_idxs),
                )
            )
        roots = [m for m in members if m.out_side and isinstance(m.module, ROOT_TYPES)]
        channels = graph.get_out_channels(root_dep.target.module)
        if not roots or channels is None:
            continue
        key = min(roots, key=lambda m: order[m.module]).name
        groups.append(ChannelGroup(key, root_dep.target.module, root_dep.handler, int(channels), members))

    unsafe = _unsafe(groups, graph)
    if unsafe and warn:
        warnings.warn(
            "channel groups kept whole because the dependency graph cannot follow them "
            f"(e.g. channel padding in a shortcut): {', '.join(sorted(unsafe))}",
            stacklevel=2,
        )
    ignored = {id(m) for m in ignored_layers}
    groups = [
        g
        for g in groups
        if g.key not in unsafe and g.channels >= 2 and not any(m.out_side and id(m.module) in ignored for m in g.members)
    ]
    groups.sort(key=lambda g: order[model.get_submodule(g.key)])
    return groups


def _depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups == module.out_channels > 1


def _unsafe(groups: list[ChannelGroup], graph: tp.DependencyGraph) -> set[str]:
    """Keys of groups whose channels the graph does not map one-to-one.

    Groups must partition every layer's output channels: no channel claimed by two
    groups, and none left unclaimed. A violation means the graph coupled tensors of
    different widths through an op it takes for element-wise but is not (``F.pad`` on
    channels in a CIFAR ResNet's option-A shortcut, say); removing those channels would
    leave an inconsistent model, so such groups are kept whole instead.
    """
    claims: dict[tuple[int, bool], dict[int, str]] = {}
    widths: dict[int, int] = {}
    bad: set[str] = set()
    for g in groups:
        for m in g.members:
            side = m.out_side or _depthwise(m.module)  # a depthwise conv's inputs are its outputs
            seen = claims.setdefault((id(m.module), side), {})
            for i in m.idxs:
                other = seen.setdefault(i, g.key)
                if other != g.key:
                    bad.update((other, g.key))
            if side and id(m.module) not in widths:
                w = graph.get_out_channels(m.module)
                if w is not None:
                    widths[id(m.module)] = int(w)
    for g in groups:
        for m in g.members:
            w = widths.get(id(m.module))
            if w is None or not (m.out_side or _depthwise(m.module)):
                continue
            if set(claims[(id(m.module), True)]) != set(range(w)):
                bad.add(g.key)
    return bad


def prune_group(graph: tp.DependencyGraph, group: ChannelGroup, remove: Sequence[int]) -> None:
    """Physically remove channels ``remove`` (positions in the group) and everything coupled."""
    if not remove:
        return
    pg = graph.get_pruning_group(group.root, group.handler, sorted(int(i) for i in remove))
    if not graph.check_pruning_group(pg):  # would empty a layer; the planner's caps forbid it
        raise RuntimeError(f"pruning {len(remove)} of {group.channels} channels would empty group {group.key}")
    pg.prune()
