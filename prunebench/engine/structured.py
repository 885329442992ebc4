"""Channel pruning inside the level loop (``pruning.structure=channel``).

prunebench.pruning.structured does the surgery; this module adapts it to runs: it
validates the run's options before training, measures the dense baseline once, prunes
each level to the schedule's cumulative target (relative to the dense model, so
iterative schedules compose), and saves/loads pruned models as weights plus
architecture (``torch.load(weights_only=True)``, no pickled modules).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.spec import RunSpec

#: Retrain modes that make sense after channel surgery. Rewinding to dense weights needs a
#: weight for every surviving position of the *dense* tensors; after surgery those
#: tensors have changed shape, so weight/mask rewinding controls are rejected up front.
CHANNEL_RETRAIN = ("finetune", "none", "lr_rewind")


def options(spec: RunSpec) -> Any:
    """The run's typed channel options (:class:`prunebench.catalog.ChannelOptions`)."""
    return spec.pruning.structure_options


def check_channel_spec(spec: RunSpec) -> None:
    """What the typed options cannot say alone: which retrain modes can follow surgery."""
    if spec.retrain.name not in CHANNEL_RETRAIN:
        raise ConfigError(
            f"retrain={spec.retrain.name!r} cannot follow pruning.structure=channel (the pruned tensors change "
            f"shape, so there is nothing to rewind onto); valid: {', '.join(CHANNEL_RETRAIN)}"
        )


def ignored_layers(spec: RunSpec, net: nn.Module) -> list[nn.Module | str]:
    """Modules whose output channels stay: ``pruning.ignored_layers`` (module names or fnmatch
    patterns such as ``features.*``, resolved by the surgery, where one matching nothing is a
    ConfigError), plus the first Conv/Linear when ``pruning.prune_first=false``. (The
    classifier's outputs, the classes, are never removed; its inputs follow the layer before.)
    """
    out: list[nn.Module | str] = [str(n) for n in options(spec).ignored_layers]
    if spec.pruning.prune_first:
        return out
    from prunebench.pruning.targets import PRUNABLE_TYPES

    return out + [m for _, m in net.named_modules() if isinstance(m, PRUNABLE_TYPES)][:1]


def check_channel_model(spec: RunSpec, net: nn.Module, example: torch.Tensor) -> None:
    """Reject, before training, a model that channel pruning cannot handle with these options.

    Resolves ``pruning.ignored_layers`` against ``net`` (a name or pattern matching nothing
    is a ConfigError), traces the dependency graph (a model it cannot follow, e.g. a
    channel shuffle, is a ConfigError naming the module) and refuses groups through
    ``nn.MultiheadAttention`` (naming the group to ignore). ``net`` is not changed.
    """
    from prunebench.pruning.structured import StructuredBaseline

    StructuredBaseline.measure(net, example, ignored_layers(spec, net), heads=options(spec).heads)


class ChannelPruner:
    """Prunes a run's model level by level against one dense baseline."""

    def __init__(self, spec: RunSpec, dense_net: nn.Module, example: torch.Tensor) -> None:
        from prunebench.pruning.structured import StructuredBaseline

        self.spec = spec
        self.example = example
        self.baseline = StructuredBaseline.measure(dense_net, example, ignored_layers(spec, dense_net),
                                                   heads=options(spec).heads)

    def prune(self, net: nn.Module, target: float, batches: list[tuple[torch.Tensor, torch.Tensor]],
              generator: torch.Generator) -> dict[str, Any]:
        from prunebench.pruning.structured import prune_channels

        opts = options(self.spec)
        result = prune_channels(
            net, self.example, amount=target, target=opts.target, criterion=self.spec.pruning.method,
            scope=self.spec.pruning.scope, max_layer_amount=float(opts.max_layer_amount),
            round_to=opts.round_to, ignored_layers=ignored_layers(self.spec, net), batches=batches or None,
            baseline=self.baseline, generator=generator, heads=bool(opts.heads),
        )
        return {"channel_ratio": result.channel_ratio, "channel_target": opts.target,
                "layer_channels": result.layer_channels}


def save_model(net: nn.Module, path: Path) -> None:
    from prunebench.pruning.structured import save_pruned

    save_pruned(net, path)


def load_model(path: Path, build_net: Callable[[], nn.Module]) -> nn.Module:
    from prunebench.pruning.structured import load_pruned

    from prunebench.models.hf_config import sync_config

    net = load_pruned(path, build_net)
    sync_config(net)  # the rebuilt transformers model's config states the saved widths
    return net
