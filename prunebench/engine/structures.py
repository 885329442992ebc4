"""Structures as strategies: unstructured masks, N:M masks, channel surgery.

The level loop holds one :class:`Structure` and never asks which one it is. A structure

- ``validate``\\ s a run before anything trains (what only it knows: N:M divisibility,
  channel options, whether it can run a gradual schedule);
- ``prune``\\ s the model to a level's cumulative target and returns the model, the mask
  retraining must enforce, and extra row columns;
- ``save``\\ s and ``load``\\ s a finished level, and ``check_files`` of one in the preflight;
- adds its own ``cost_columns``.

A new structure (a regrowing method such as RigL, block sparsity) is one new class here
plus a catalog entry for its options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench.errors import ConfigError
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights
from prunebench.results.store import write_table
from prunebench.spec import RunSpec


@dataclass
class LevelInputs:
    """What a prune step may draw on at level ``level``."""

    level: int
    generator: torch.Generator  # the criterion's stream at this level (seeding: "criterion", level)
    batches: Callable[[], list[Any]]  # calibration batches from the training split (lazy)
    round_rate: float | None = None  # the schedule's per-round rate (output_rate)


def current_targets(spec: RunSpec, net: nn.Module) -> list[str]:
    return [t.param_name for t in prunable_weights(net, prune_output=spec.pruning.prune_output, prune_bias=spec.pruning.prune_bias,
                                                    prune_first=spec.pruning.prune_first)]


class Structure:
    """Base: masks enforced during retraining, saved as mask + state per level."""

    name = "unstructured"
    enforce_mask = True  # retraining keeps pruned weights at exactly zero
    supports_gradual = True
    moves_mask = False  # the fit may replace the mask (dynamic sparse training): the level keeps the fit's

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.gradual_plan: Any = None  # schedule=gradual: the level's ramp (check_training)
        self.gradual: Any = None  # the level's GradualPruning, which the fit calls at optimizer steps

    @property
    def moves_mask_in_fit(self) -> bool:
        """The fit may replace the level's mask: the level keeps the fit's last mask."""
        return self.moves_mask or self.gradual_plan is not None

    # ---- preflight ----------------------------------------------------------------------
    def validate(self, net: nn.Module, targets: list[Any], example: torch.Tensor) -> None:
        spec = self.spec
        if spec.schedule.name == "gradual" and not self.supports_gradual:
            raise ConfigError(f"pruning.structure={self.name!r} does not support schedule=gradual; use "
                              f"schedule=one_shot or schedule=iterative")
        from prunebench.pruning.criteria import get_criterion

        crit = get_criterion(spec.pruning.method)
        if crit.validate is not None:
            crit.validate(net, targets, spec, example)
        if crit.learner is not None and spec.schedule.name != "gradual":
            raise ConfigError(f"pruning.method={spec.pruning.method!r} learns its scores while training, so it needs "
                              f"schedule=gradual (got schedule={spec.schedule.name!r})")
        out_rate = spec.pruning.options.get("output_rate")
        if out_rate is not None:
            s = spec.schedule
            if spec.pruning.scope != "layer" or s.name != "iterative" or s.mode != "geometric":
                raise ConfigError(f"pruning.output_rate={out_rate!r} (the output layer's own per-round rate) needs "
                                  f"pruning.scope=layer and schedule=iterative with schedule.mode=geometric; "
                                  f"got scope={spec.pruning.scope!r}, schedule={s.name!r}, mode={s.mode!r}")
            if not spec.pruning.prune_output:
                raise ConfigError("pruning.output_rate is set but pruning.prune_output=false keeps the output "
                                  "layer dense")

    def setup(self, dense_net: nn.Module, example: torch.Tensor) -> None:
        """Called once with the trained dense model, before level 1."""

    # ---- the prune step ---------------------------------------------------------------
    def prune(self, net: nn.Module, mask: Mask, target: float, inputs: LevelInputs,
              learned: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, Mask]:
        from prunebench.pruning.criteria import get_criterion
        from prunebench.pruning.step import mask_step

        needs = get_criterion(self.spec.pruning.method).needs_data and learned is None
        new = mask_step(net, mask, target, self.spec.pruning, batches=inputs.batches() if needs else None,
                        generator=inputs.generator, learned=learned, round_rate=inputs.round_rate)
        new.apply(net)
        return net, new

    def prune_level(self, net: nn.Module, mask: Mask, target: float, inputs: LevelInputs) -> tuple[nn.Module, Mask]:
        """The prune step at the start of a level. With schedule=gradual the level starts at the
        plan's initial sparsity and the fit raises it to ``target`` (:meth:`training_callbacks`),
        each step through :meth:`prune`."""
        if self.gradual_plan is None:
            return self.prune(net, mask, target, inputs)
        from prunebench.engine.gradual import GradualPruning
        from prunebench.pruning.criteria import get_criterion

        spec = self.spec
        crit = get_criterion(spec.pruning.method)
        # The level's own model (not a freshly built copy: no second initialisation per level).
        targets = [t for t in prunable_weights(net, prune_output=spec.pruning.prune_output,
                                                prune_first=spec.pruning.prune_first, prune_bias=spec.pruning.prune_bias)
                   if t.param_name in mask]
        learner = crit.learner(targets) if crit.learner is not None else None
        batches = inputs.batches() if crit.needs_data and learner is None else None
        fixed = LevelInputs(inputs.level, inputs.generator, lambda: batches or [], inputs.round_rate)

        def step(net: nn.Module, mask: Mask, target: float, learned: dict[str, torch.Tensor] | None) -> Mask:
            return self.prune(net, mask, target, fixed, learned)[1]

        self.gradual = GradualPruning(self.gradual_plan, step, learner)
        return self.prune(net, mask, self.gradual_plan.initial, inputs)

    def level_mask(self, module: Any, mask: Mask) -> Mask:
        """The level's mask after its fit: the fit's own where it moved the mask."""
        if self.gradual is not None and not self.gradual.finished:
            raise RuntimeError(f"gradual pruning stopped before its last step ({self.gradual.history[-1:]})")
        return module.mask if self.moves_mask_in_fit else mask

    # ---- files ----------------------------------------------------------------------------
    def save(self, ld: Path, net: nn.Module, mask: Mask, state_from: Path | None = None) -> None:
        """Mask, per-layer table and weights (prunebench.results.levels: only what the previous level
        does not give); ``state_from``: a file known to hold these weights, linked."""
        from prunebench.results.levels import has_level, load_level_state, save_level

        k = int(ld.name)
        previous = ld.parent / str(k - 1)
        base = k - 1 if k > 0 and has_level(previous) else None
        base_state = load_level_state(previous)[0] if base is not None else None
        save_level(ld, net.state_dict(), mask, base=base, base_state=base_state, link_from=state_from)
        write_table(ld / "layers.csv", mask.report())

    def save_dense(self, ld: Path, net: nn.Module, mask: Mask, dense: Any) -> None:
        """Level 0, the dense model: saved like an unstructured level for every structure. Its
        weights are the dense cache's: linked, not copied (a 135M model is 540 MB a copy)."""
        from prunebench.engine.dense import same_state

        final = dense.path / "final.pt"
        linked = final if final.exists() and same_state(net.state_dict(), dense.state) else None
        Structure.save(self, ld, net, mask, state_from=linked)

    def load(self, ld: Path, net: nn.Module, build_net: Callable[[], nn.Module]) -> tuple[nn.Module, Mask] | None:
        from prunebench.results.levels import has_level, load_level_into

        if not has_level(ld):
            return None
        return net, load_level_into(ld, net)

    def check_files(self, ld: Path, net: nn.Module, build_net: Callable[[], nn.Module]) -> None:
        from prunebench.engine.dense import check_loadable
        from prunebench.results.levels import has_level, load_level_into

        if has_level(ld):
            load_level_into(ld, net)
        elif (ld / "mask.pt").exists():
            Mask.load(ld / "mask.pt", net)
        else:
            check_loadable(net, ld / "state.pt", "level checkpoint")

    def cost_columns(self, net: nn.Module, large_latency: Callable[[nn.Module], float]) -> dict[str, Any]:
        return {}

    # ---- in-training schedules (the fit calls them at optimizer steps) --------------------
    def check_training(self, steps: int) -> None:
        """Preflight checks that need a level's optimizer-step count ``steps``: schedule=gradual
        builds its plan here (an impossible plan is a ConfigError before any training)."""
        if self.spec.schedule.name != "gradual":
            return
        from prunebench.engine.gradual import make_plan
        from prunebench.pruning.criteria import get_criterion

        plan = make_plan(self.spec.schedule, steps)
        if get_criterion(self.spec.pruning.method).learner is not None and plan.initial > 0:
            raise ConfigError(f"schedule.initial_sparsity={plan.initial!r} with pruning.method="
                              f"{self.spec.pruning.method!r}: learned scores start at zero, so the level cannot "
                              f"start pruned; set schedule.initial_sparsity=0")
        self.gradual_plan = plan

    def training_callbacks(self, level: int) -> list[Any]:
        """Callbacks the level's fit runs (gradual pruning; dynamic sparse training)."""
        return [self.gradual] if self.gradual is not None else []

    def level_columns(self) -> dict[str, Any]:
        """Extra row columns of the level just trained (gradual: where its ramp ended)."""
        if self.gradual is None:
            return {}
        return {"gradual_end_step": self.gradual.plan.end, "gradual_prune_steps": len(self.gradual.history)}


class Unstructured(Structure):
    name = "unstructured"


class NM(Structure):
    """N of every M consecutive input weights kept (semi-structured)."""

    name = "nm"
    supports_gradual = False

    def validate(self, net: nn.Module, targets: list[Any], example: torch.Tensor) -> None:
        if self.spec.pruning.scope == "owl":
            # N:M fixes every layer at 1 - N/M: OWL's per-layer sparsities would be ignored.
            raise ConfigError("pruning.scope='owl' gives every layer its own sparsity, but pruning.structure=nm fixes "
                              "each layer at 1 - N/M; mixed N:M per layer is not built: use pruning.scope=layer with "
                              "N:M, or OWL with pruning.structure=unstructured")
        super().validate(net, targets, example)
        from prunebench.pruning.nm import check_nm_spec

        shapes = {n: p.shape for n, p in net.named_parameters()}
        check_nm_spec(self.spec, targets, shapes)


class Channel(Structure):
    """Whole output channels removed physically (Torch-Pruning's dependency graph)."""

    name = "channel"
    enforce_mask = False  # after surgery every remaining weight is live
    supports_gradual = False

    def __init__(self, spec: RunSpec) -> None:
        super().__init__(spec)
        self.pruner: Any = None
        self.channel_ratio = 0.0

    def validate(self, net: nn.Module, targets: list[Any], example: torch.Tensor) -> None:
        if self.spec.schedule.name == "gradual":
            raise ConfigError("pruning.structure='channel' does not support schedule=gradual; use "
                              "schedule=one_shot or schedule=iterative")
        from prunebench.engine.structured import check_channel_model, check_channel_spec

        check_channel_spec(self.spec)
        # The dependency graph must be traceable and every ignored_layers pattern must match.
        check_channel_model(self.spec, net, example.cpu())

    def setup(self, dense_net: nn.Module, example: torch.Tensor) -> None:
        from prunebench.engine.structured import ChannelPruner

        self.pruner = ChannelPruner(self.spec, dense_net, example)

    def prune(self, net: nn.Module, mask: Mask, target: float, inputs: LevelInputs,
              learned: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, Mask]:
        from prunebench.pruning.structured import get_channel_criterion

        needs = get_channel_criterion(self.spec.pruning.method).needs_data
        info = self.pruner.prune(net, target, inputs.batches() if needs else [], inputs.generator)
        self.channel_ratio = float(info.get("channel_ratio", 0.0))
        return net, Mask.ones_like(net, current_targets(self.spec, net))

    def save(self, ld: Path, net: nn.Module, mask: Mask) -> None:
        from prunebench.engine.structured import save_model
        from prunebench.pruning.structured import layer_channels

        from prunebench.pruning.structured.attention import attention_modules, head_width

        save_model(net, ld / "model.pt")  # weights + architecture, weights_only loadable
        rows: list[dict[str, Any]] = [{"layer": n, "channels": c} for n, c in layer_channels(net).items()]
        rows += [{"layer": n, "heads": head_width(net, n)} for n, _, _ in attention_modules(net)]
        write_table(ld / "layers.csv", rows)

    def load(self, ld: Path, net: nn.Module, build_net: Callable[[], nn.Module]) -> tuple[nn.Module, Mask] | None:
        from prunebench.engine.structured import load_model

        if not (ld / "model.pt").exists():
            return None
        device = next(net.parameters()).device
        net = load_model(ld / "model.pt", build_net).to(device)
        return net, Mask.ones_like(net, current_targets(self.spec, net))

    def check_files(self, ld: Path, net: nn.Module, build_net: Callable[[], nn.Module]) -> None:
        if (ld / "model.pt").exists():
            from prunebench.engine.structured import load_model

            load_model(ld / "model.pt", build_net)

    def cost_columns(self, net: nn.Module, large_latency: Callable[[nn.Module], float]) -> dict[str, Any]:
        large = self.spec.metrics.latency_batch_large
        row: dict[str, Any] = {"latency_batch_large": large, "channel_ratio": self.channel_ratio}
        if self.spec.metrics.latency:
            row["latency_ms_large"] = large_latency(net)
        return row


class DynamicSparse(Structure):
    """Dynamic sparse training (static, SET, RigL): the level's mask moves at set steps of its fit.

    The level prunes to its target as an unstructured level does (criterion + allocation:
    ``pruning.method=random`` with ``scope=erk`` is RigL's random ERK start), then the fit
    drops and regrows weights per :mod:`prunebench.engine.sparse_training`, keeping every
    layer's count. "Sparse from the start" is this structure with a retrain mode that
    restarts from the initialisation (``retrain=weight_rewind``, ``rewind_step=0``).
    """

    name = "dst"
    supports_gradual = False
    moves_mask = True

    def __init__(self, spec: RunSpec) -> None:
        super().__init__(spec)
        self.callback: Any = None
        self._steps: int | None = None

    def validate(self, net: nn.Module, targets: list[Any], example: torch.Tensor) -> None:
        spec = self.spec
        if spec.schedule.name != "one_shot":
            raise ConfigError(f"pruning.structure='dst' trains one sparse level whose mask moves; it needs "
                              f"schedule=one_shot (got schedule={spec.schedule.name!r})")
        if spec.pruning.scope not in ("global", "layer", "erk"):
            raise ConfigError(f"pruning.structure='dst' keeps each layer's live count through its updates; "
                              f"pruning.scope={spec.pruning.scope!r} is not supported, use erk, layer or global")
        if spec.retrain.epochs < 1 or spec.retrain.name == "none":
            raise ConfigError(f"pruning.structure='dst' moves the mask while the level trains, so it needs a "
                              f"retraining mode that trains (got retrain={spec.retrain.name!r}, "
                              f"retrain.epochs={spec.retrain.epochs!r})")
        super().validate(net, targets, example)

    def check_training(self, steps: int) -> None:
        from prunebench.engine.sparse_training import make_dst_plan

        make_dst_plan(self.spec.pruning.structure_options, steps)
        self._steps = steps

    def training_callbacks(self, level: int) -> list[Any]:
        from prunebench.engine.sparse_training import DynamicSparseTraining, make_dst_plan

        if self._steps is None:
            raise RuntimeError("DynamicSparse.check_training was not called (Run.prepare)")
        self.callback = DynamicSparseTraining(make_dst_plan(self.spec.pruning.structure_options, self._steps),
                                              self.spec.seed, level)
        return [self.callback]

    def level_columns(self) -> dict[str, Any]:
        return self.callback.columns() if self.callback is not None else {}

    def save(self, ld: Path, net: nn.Module, mask: Mask, state_from: Path | None = None) -> None:
        super().save(ld, net, mask, state_from)
        if self.callback is not None:
            write_table(ld / "dst.csv", self.callback.history or [{"step": 0}])


STRUCTURE_CLASSES: dict[str, type[Structure]] = {"unstructured": Unstructured, "nm": NM, "channel": Channel,
                                                 "dst": DynamicSparse}


def structure_for(spec: RunSpec) -> Structure:
    return STRUCTURE_CLASSES[spec.pruning.structure](spec)


def ticket_spec(spec: RunSpec) -> RunSpec | None:
    """The lottery-ticket run a control branches from (``retrain.branch=true``), else None."""
    if not getattr(spec.retrain.options, "branch", False):
        return None
    import dataclasses

    from prunebench import catalog
    from prunebench.spec import RetrainSpec

    options = catalog.RewindOptions(rewind_step=spec.retrain.rewind_step)
    return dataclasses.replace(spec, retrain=RetrainSpec("weight_rewind", spec.retrain.epochs, None, options),
                               label=None)


class TicketBranch(Structure):
    """A control as a branch of the ticket run: level k's mask is the ticket's level-k mask.

    The ticket run (same settings, ``retrain=weight_rewind``) is run first or found
    finished; its levels are shared, not retrained. The control then re-initialises
    (``reinit``) or draws a random mask with the same per-layer sparsity (``random_mask``)
    and trains, so ticket and control differ in exactly what the paper varies.
    """

    name = "unstructured"

    def __init__(self, spec: RunSpec, ticket: RunSpec) -> None:
        super().__init__(spec)
        self.ticket = ticket

    def validate(self, net: nn.Module, targets: list[Any], example: torch.Tensor) -> None:
        if self.spec.pruning.structure != "unstructured":
            raise ConfigError(f"retrain.branch=true needs pruning.structure=unstructured (a lottery-ticket run); got "
                              f"{self.spec.pruning.structure!r}")
        if self.spec.schedule.name == "gradual":
            raise ConfigError("retrain.branch=true needs a schedule of fixed levels (one_shot or iterative)")
        super().validate(net, targets, example)

    def prune(self, net: nn.Module, mask: Mask, target: float, inputs: LevelInputs,
              learned: dict[str, torch.Tensor] | None = None) -> tuple[nn.Module, Mask]:
        from prunebench.results.store import level_dir, run_dir

        path = level_dir(run_dir(self.ticket.root, self.ticket.run_id), inputs.level) / "mask.pt"
        if not path.exists():
            raise RuntimeError(f"the ticket run has no mask for level {inputs.level} ({path})")
        new = Mask.load(path, net)
        new.apply(net)
        return net, new
