"""Structured (channel) pruning: physically remove filters and everything coupled to them.

prunebench decides *what* to remove (criteria, allocation, targets, schedules);
Torch-Pruning's dependency graph finds *what else must follow* (BatchNorm, the next
layers' inputs, residual additions, concatenations, depthwise convs) and performs the
surgery. The pruned model is an ordinary, smaller ``nn.Module``: fewer parameters, fewer
FLOPs, and — unlike zero masks — measurably faster on dense hardware.

API::

    from prunebench.pruning.structured import (
        prune_channels, ChannelPruneResult, StructuredBaseline, CHANNEL_CRITERIA,
        save_pruned, load_pruned,
    )

    baseline = StructuredBaseline.measure(dense_model, example_input)   # once, on the dense model
    result = prune_channels(
        model, example_input,          # example_input: a small batch on the model's device
        amount=0.5,                    # fraction to have removed, relative to the DENSE baseline
                                       #   (iterative schedules pass their cumulative level)
        target="channels",             # "channels" | "params" | "flops": what `amount` is a fraction of
        criterion="l1",                # "l1" | "l2" | "bn_scale" | "taylor" | "random"
        scope="layer",                 # "layer" (uniform) | "global" (ranked across layers)
        max_layer_amount=0.9,          # no group loses more than this fraction of its dense width
        round_to=None,                 # e.g. 8: pruned widths are multiples of 8
        ignored_layers=None,           # modules, names or fnmatch patterns ("layer4.*"), with everything
                                       #   inside them: never pruned on their output side
                                       #   (+ always the output layer: last nn.Linear / last layer run)
        batches=None,                  # [(x, y), ...] calibration batches (TRAIN split) for "taylor"
        baseline=baseline,             # default: measured on `model` now
        generator=None,                # torch.Generator for "random"
        heads=True,                    # transformers: remove whole attention heads too
    )                                  # -> ChannelPruneResult; `model` is pruned IN PLACE,
                                       #    transactionally (see below)
    result.channel_ratio, result.params_reduction, result.flops_reduction, result.speedup_theoretical
    result.params_after / result.params_baseline      # achieved density (1 - parameter sparsity)
    result.layer_channels              # {conv/linear name: out width} after pruning
    result.as_row()                    # columns for the results table (structure="channel")

    save_pruned(model, "pruned.pt", extra={"baseline": baseline.to_dict()})
    model = load_pruned("pruned.pt", lambda: build_model("resnet56", (3, 32, 32), 10))

Semantics:

* A *group* is a set of coupled channels (e.g. a whole residual stage's width); it is
  named by its first Conv/Linear producer. Widths, caps and ``layer`` scope are per group.
* ``target="channels"``: ``amount`` of the baseline's prunable channels. ``"params"`` /
  ``"flops"``: reached by bisection on the channel amount (each candidate pruned on a deep
  copy and measured); the achieved value is ``result.achieved`` (a target out of reach
  under the cap warns and prunes to the cap).
* Counts are against the dense baseline, so channels already removed count toward the
  target and channels never come back.
* Grouped (non-depthwise) convs and GroupNorm: a group's positions form ``ch_groups``
  equal blocks (conv ``groups``, GroupNorm ``num_groups``), and a plan removes the same
  offsets from every block — whole units, as Torch-Pruning's MetaPruner — so every group of
  the layer keeps the same width. Scores are averaged over the blocks; widths, caps and
  ``round_to`` count units; ``global`` scope ranks units (one unit = ``ch_groups`` channels).
  A grouped layer whose channels are not the group's positions in order (behind a
  concatenation) cannot be aligned: that group is kept whole, with a warning.
* Transactional: scoring, surgery and a checking forward pass run on a deep copy, swapped
  into ``model`` only on success (module objects kept; unchanged tensors stay the caller's).
  Any failure leaves ``model`` exactly as it was.
* Refusals (ConfigError naming the module and the fix): a model the dependency graph
  cannot trace (e.g. shufflenet's channel shuffle) names the layer before the reshape;
  a group through ``nn.MultiheadAttention`` (its embed width is the residual width and the
  head count times head size, and models copy it into attributes, e.g. torchvision's ViT
  ``hidden_dim``) names the group to put in ``ignored_layers`` — the transformer's MLP
  hidden units are then pruned; surgery that breaks the forward pass names the first group
  that breaks it alone. nn.MultiheadAttention's heads are not removed: it packs q/k/v in
  one projection whose width is the residual width.
* Transformers with separate q/k/v/out projections (``gpt_tiny``; Hugging Face
  Llama-style ``q_proj/k_proj/v_proj/o_proj``; others via
  :func:`~prunebench.pruning.structured.attention.register_attention`): whole attention
  heads are a group per attention module (keyed by its name, width = query heads; the
  module's head count is updated; grouped-query attention keeps its key/value heads and
  the same number of query heads per key/value group), the MLP hidden units are the
  graph's groups, and the residual stream is never cut. ``heads=False``
  (``pruning.heads=false``) keeps every head. See :mod:`.attention`.
* Errors (ConfigError, before anything changes): unknown ``pruning.method`` (criterion),
  ``pruning.target`` or ``pruning.scope`` list the valid names; ``schedule.target_sparsity``
  (amount) outside [0, 1), ``pruning.max_layer_amount`` outside (0, 1], a bad
  ``pruning.round_to``, and ``taylor`` without batches (``pruning.calibration_batches``)
  name the key and the value.
* :func:`select_channels` + :func:`zero_channels` give the masked equivalent of a plan
  (used to prove the surgery exact); :func:`export_onnx` needs the optional
  ``onnx``/``onnxscript`` packages.
"""

from prunebench.pruning.structured.allocation import SCOPES
from prunebench.pruning.structured.criteria import (
    CHANNEL_CRITERIA,
    ChannelCriterion,
    ChannelScoreContext,
    get_channel_criterion,
    register_channel_criterion,
)
from prunebench.pruning.structured.groups import ChannelGroup, build_graph, channel_groups
from prunebench.pruning.structured.io import architecture, export_onnx, load_pruned, read_pruned, save_pruned
from prunebench.pruning.structured.surgery import (
    TARGETS,
    ChannelPruneResult,
    ChannelSelection,
    StructuredBaseline,
    apply_selection,
    layer_channels,
    prune_channels,
    select_channels,
    zero_channels,
)

__all__ = [
    "CHANNEL_CRITERIA",
    "SCOPES",
    "TARGETS",
    "ChannelCriterion",
    "ChannelGroup",
    "ChannelPruneResult",
    "ChannelScoreContext",
    "ChannelSelection",
    "StructuredBaseline",
    "apply_selection",
    "architecture",
    "build_graph",
    "channel_groups",
    "export_onnx",
    "get_channel_criterion",
    "layer_channels",
    "load_pruned",
    "prune_channels",
    "read_pruned",
    "register_channel_criterion",
    "save_pruned",
    "select_channels",
    "zero_channels",
]
