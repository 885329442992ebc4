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

import fnmatch
import math
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.targets import output_layer_name

#: What ``ignored_layers`` may hold: modules, module names, or fnmatch patterns of names.
IgnoredLayers = Iterable[nn.Module | str]

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
    #: Channel blocks that must stay of equal width (a grouped conv's groups, GroupNorm's
    #: groups): positions are ``ch_groups`` blocks of ``channels // ch_groups`` and a plan
    #: removes the same offsets from every block, as Torch-Pruning's own pruners do.
    ch_groups: int = 1

    @property
    def units(self) -> int:
        """Width in removable units (a unit is one offset in every block)."""
        return self.channels // self.ch_groups

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


def resolve_ignored(model: nn.Module, ignored_layers: IgnoredLayers | None) -> list[nn.Module]:
    """Modules named by ``ignored_layers`` (modules, names or fnmatch patterns), with their submodules.

    A name or pattern that matches no module raises ConfigError naming
    ``pruning.ignored_layers`` (a typo would otherwise silently prune the layer).
    """
    named = list(model.named_modules())
    picked: dict[int, nn.Module] = {}
    for entry in ignored_layers or []:
        if isinstance(entry, nn.Module):
            roots = [entry]
        elif isinstance(entry, str):
            roots = [m for n, m in named if n and (n == entry or fnmatch.fnmatchcase(n, entry))]
            if not roots:
                examples = ", ".join(n for n, m in named if n and isinstance(m, ROOT_TYPES))
                raise ConfigError(
                    f"pruning.ignored_layers entry {entry!r} matches no module of the model; give module names "
                    f"or fnmatch patterns, e.g. one of: {examples[:400]}"
                )
        else:
            raise ConfigError(
                f"pruning.ignored_layers entry {entry!r} is not a module name, pattern or nn.Module"
            )
        for root in roots:
            for m in root.modules():  # as Torch-Pruning: a module is ignored with everything inside it
                picked.setdefault(id(m), m)
    return list(picked.values())


def last_layer(model: nn.Module, example_input: torch.Tensor) -> nn.Module | None:
    """The last Conv/Linear that runs in a forward pass: it produces the logits.

    Models need not end in an ``nn.Linear`` (SqueezeNet's classifier is a 1x1 conv), so
    the output layer is found by running the model once (eval mode, no grad).
    """
    seen: list[nn.Module] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: seen.append(mod)) for m in model.modules()
             if isinstance(m, ROOT_TYPES)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return seen[-1] if seen else None


def default_ignored(
    model: nn.Module, ignored_layers: IgnoredLayers | None = None, example_input: torch.Tensor | None = None
) -> list[nn.Module]:
    """``ignored_layers`` (resolved) plus the output layer, whose width is the class count.

    The output layer is the last ``nn.Linear`` and, given ``example_input``, also the
    last Conv/Linear that runs (see :func:`last_layer`).
    """
    ignored = resolve_ignored(model, ignored_layers)
    outs = []
    out = output_layer_name(model)
    if out is not None:
        outs.append(model.get_submodule(out))
    if example_input is not None:
        last = last_layer(model, example_input)
        if last is not None:
            outs.append(last)
    for module in outs:
        if not any(module is m for m in ignored):
            ignored.append(module)
    return ignored


def _failing_module(tb: Any, names: dict[nn.Module, str]) -> str | None:
    """Name of the module nearest to the graph node Torch-Pruning failed on (from the traceback)."""
    while tb is not None:
        node = tb.tb_frame.f_locals.get("node")
        if node is not None and hasattr(node, "inputs"):
            seen, todo = set(), [node]
            while todo:  # the failing op is often a reshape/cat: walk back to a named layer
                n = todo.pop(0)
                if id(n) in seen:
                    continue
                seen.add(id(n))
                if getattr(n, "module", None) in names:
                    return names[n.module]
                todo.extend(getattr(n, "inputs", []))
        tb = tb.tb_next
    return None


def build_graph(model: nn.Module, example_input: torch.Tensor) -> tp.DependencyGraph:
    """Trace ``model`` once on ``example_input`` into a dependency graph.

    Tracing needs autograd and puts the model in eval mode; the caller's mode and
    grad state are restored afterwards.
    """
    was_training = model.training
    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_input, verbose=False)
    except Exception as e:  # noqa: BLE001 - Torch-Pruning fails with bare arithmetic errors on what it cannot map
        names = {m: n for n, m in model.named_modules() if n}
        where = _failing_module(sys.exc_info()[2], names)
        at = f" at the output of {where!r}" if where else ""
        raise ConfigError(
            f"pruning.structure=channel: the dependency graph cannot follow this model's channels{at} "
            f"({type(e).__name__}: {e}); this happens for reshapes that mix channels, e.g. a channel shuffle. "
            "Channel pruning is not supported for this architecture: use pruning.structure=unstructured or nm, "
            "or change the model so channels are not reshaped"
        ) from e
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
    from prunebench.pruning.structured.attention import attention_projections

    order = {m: i for i, (_, m) in enumerate(model.named_modules())}
    names = {m: n for n, m in model.named_modules()}
    groups = []
    # Recognised attention projections never root a group (see the filter below); skipping
    # them here also spares the graph tracing through rotary embeddings, which can take minutes.
    proj_modules = attention_projections(model)
    for group in graph.get_all_groups(ignored_layers=proj_modules, root_module_types=ROOT_TYPES):
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

    untraced = [n for m, n in names.items() if n and isinstance(m, ROOT_TYPES) and m not in graph.module2node]
    if untraced and warn:
        # e.g. GoogLeNet's auxiliary heads, which run only in training mode: their inputs
        # are not resized with the layers before them.
        warnings.warn(
            "layers not reached by the traced forward pass (eval mode) are not updated by channel surgery "
            f"and may not fit afterwards: {', '.join(untraced[:10])}{' ...' if len(untraced) > 10 else ''}",
            stacklevel=2,
        )
    unsafe = _unsafe(groups, graph)
    for g in groups:
        g.ch_groups, grouped_ok = _channel_grouping(g)
        if not grouped_ok or g.channels % g.ch_groups:
            unsafe.add(g.key)
    if unsafe and warn:
        warnings.warn(
            "channel groups kept whole because the dependency graph cannot follow them "
            f"(e.g. channel padding in a shortcut, a grouped conv fed by a concatenation): {', '.join(sorted(unsafe))}",
            stacklevel=2,
        )
    ignored = {id(m) for m in ignored_layers}
    groups = [
        g
        for g in groups
        if g.key not in unsafe and g.units >= 2 and not any(m.out_side and id(m.module) in ignored for m in g.members)
    ]
    groups.sort(key=lambda g: order[model.get_submodule(g.key)])
    # Recognised attention modules: their projections' groups (the residual stream, the
    # head dimensions) are left to the head groups of :mod:`attention`, never cut here.
    proj = {id(m) for m in proj_modules}
    if proj:
        groups = [g for g in groups if not any(id(m.module) in proj for m in g.members)]
    _refuse_attention(groups)
    return groups


def _member_grouping(m: Member) -> int:
    """Channel blocks this member imposes on its side (1 = none), as Torch-Pruning's MetaPruner."""
    mod = m.module
    if isinstance(mod, nn.modules.conv._ConvNd):
        return 1 if _depthwise(mod) else int(mod.groups)
    if isinstance(mod, nn.GroupNorm):
        return int(mod.num_groups)
    return 1


def _channel_grouping(g: ChannelGroup) -> tuple[int, bool]:
    """(blocks the group's positions fall into, whether every blocked member maps one-to-one).

    Blocks of different members nest when one count divides the other, so the group
    uses their least common multiple. A blocked member whose channels are not the
    group's positions in order (e.g. behind a concatenation) cannot be kept aligned:
    the group is then reported unsafe and kept whole.
    """
    blocks, ok = 1, True
    for m in g.members:
        k = _member_grouping(m)
        if k <= 1:
            continue
        blocks = math.lcm(blocks, k)
        mod = m.module
        side = int(mod.num_channels if isinstance(mod, nn.GroupNorm) else
                   mod.out_channels if m.out_side else mod.in_channels)
        if side != g.channels or m.idxs != list(range(g.channels)) or m.root_idxs != m.idxs:
            ok = False
    return blocks, ok


def _refuse_attention(groups: list[ChannelGroup]) -> None:
    """ConfigError for a group that would change an ``nn.MultiheadAttention``'s width.

    Its ``embed_dim`` is at once the residual width, the q/k/v width and ``num_heads *
    head_dim``, and models keep copies of it in attributes (torchvision's ViT reshapes by
    ``self.hidden_dim``); surgery would leave a model that fails or computes something else.
    """
    for g in groups:
        for m in g.members:
            if isinstance(m.module, nn.MultiheadAttention):
                raise ConfigError(
                    f"pruning.structure=channel: channel group {g.key!r} runs through the attention module "
                    f"{m.name!r} (nn.MultiheadAttention), whose embedding width and head count cannot be changed "
                    f"by channel surgery; keep the group whole with pruning.ignored_layers=[{g.key!r}] "
                    "(transformer MLP hidden units are still pruned)"
                )


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
    if group.ch_groups > 1:
        step = group.units
        offsets = {int(i) % step for i in remove}
        expected = {o + b * step for o in offsets for b in range(group.ch_groups)}
        if set(int(i) for i in remove) != expected:  # a partial block would break the grouped layers
            raise ValueError(f"group {group.key}: positions to remove must repeat in each of its "
                             f"{group.ch_groups} channel blocks")
    pg = graph.get_pruning_group(group.root, group.handler, sorted(int(i) for i in remove))
    if not graph.check_pruning_group(pg):  # would empty a layer; the planner's caps forbid it
        raise RuntimeError(f"pruning {len(remove)} of {group.channels} channels would empty group {group.key}")
    pg.prune()
