"""Typed, validated run specifications.

The composed Hydra config is converted here, once, into frozen dataclasses; library code
never sees ``DictConfig``. Conversion (:func:`from_config`) imports no torch: unknown
names, unknown keys and bad values fail within a second or two of launch, naming the key
and the value. What needs the model, the data or torch (optimizer arguments, the
accelerator, factory keyword arguments) is checked by :meth:`RunSpec.check_deep` in the
run's preflight, still before anything trains.

Run identity (:attr:`RunSpec.run_id`) hashes what determines a run's results with every
value equal to its default omitted (each options dataclass drops its defaults; data and
model keyword arguments equal to the factory's defaults are dropped), so adding a new
option with a default leaves old ids unchanged (OpenLTH's rule). Settings that change
numbers (precision, deterministic algorithms, the optimizer kernel, the intra-op thread
count, the device type, a pretrained start's file content) are part of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from prunebench import catalog
from prunebench.errors import ConfigError, check_range
from prunebench.options import Options, parse_bool, parse_float, parse_int, unknown_key
from prunebench.schedules import levels as schedule_levels

#: Bumped when the engine's semantics change so that old results must not be reused
#: (2: one seeding policy, typed options).
IDENTITY_VERSION = 2

STRUCTURES = tuple(catalog.STRUCTURES.names())
PRECISIONS = {"32-true": "32-true", "32": "32-true", "16-mixed": "16-mixed", "16": "16-mixed",
              "bf16-mixed": "bf16-mixed", "bf16": "bf16-mixed", "16-true": "16-true", "bf16-true": "bf16-true",
              "64-true": "64-true", "64": "64-true"}
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
TOP_LEVEL_KEYS = ("seed", "data", "model", "train", "pruning", "schedule", "retrain", "trainer", "metrics", "paths",
                  "study", "label", "experiment_name", "report", "optuna", "sweep", "logger", "claims",
                  "report_formats")


def _locate(path: str, key: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"{key}={path!r} cannot be imported; give a full dotted path like torch.optim.Adam") from None


@dataclass(frozen=True)
class CallSpec:
    """A ``_target_`` plus keyword arguments: built as a partial (optimizer, LR scheduler)."""

    target: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    def partial(self, key: str, **overrides: Any) -> partial[Any]:
        return partial(_locate(self.target, key), **{**self.kwargs, **overrides})

    def identity(self) -> dict[str, Any]:
        return {"_target_": self.target, **dict(self.kwargs)}

    def check(self, key: str, skip_first: int = 1) -> None:
        """Import the target and check its keyword arguments (torch-heavy; preflight)."""
        fn = _locate(self.target, f"{key}._target_")
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        valid = [n for n in list(params)[skip_first:]]
        for k in self.kwargs:
            if k not in valid:
                raise ConfigError(f"{key}.{k} is not an argument of {self.target}; valid: {', '.join(valid)}")

    @classmethod
    def parse(cls, node: Any, key: str) -> CallSpec | None:
        if node is None:
            return None
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise ConfigError(f"{key} must be a mapping with a _target_ (e.g. torch.optim.Adam); got {node!r}")
        kwargs = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
        if kwargs.get("lr") is not None:
            check_range(f"{key}.lr", parse_float(kwargs["lr"], f"{key}.lr"), 0.0, None, low_inclusive=False)
        if kwargs.get("weight_decay") is not None:
            check_range(f"{key}.weight_decay", parse_float(kwargs["weight_decay"], f"{key}.weight_decay"), 0.0, None)
        return cls(str(node["_target_"]), kwargs)

    def check_construct(self, key: str, optimizer: Any = None) -> None:
        """Build the target once on a throwaway parameter (the optimizer; a scheduler on such an
        optimizer): a missing or bad argument (StepLR without step_size) fails here, in the
        preflight, not after the dense run has trained (torch-heavy)."""
        import torch

        fn = self.partial(key)
        try:
            if optimizer is None:
                fn([torch.nn.Parameter(torch.zeros(1))])
            else:
                fn(optimizer)
        except (TypeError, ValueError, KeyError) as exc:  # a missing, unknown or bad argument
            raise ConfigError(f"{key}: {self.target}({', '.join(f'{k}={v!r}' for k, v in self.kwargs.items())}) "
                              f"cannot be built: {exc}") from None
        except Exception:  # noqa: BLE001 - needs what a throwaway parameter lacks (a device, a model): trust it
            return


def parse_callspec(value: Any, key: str) -> CallSpec | None:
    return CallSpec.parse(value, key)


@dataclass(frozen=True)
class NamedSpec:
    """A registry name plus the keyword arguments of its factory.

    ``fingerprint``: identity entries for what lives outside the package, taken when the
    config is parsed (a custom factory's file content, an image tree's content; see
    :mod:`prunebench.identity`): content, not paths, names the run.
    """

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    fingerprint: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    optimizer: CallSpec
    scheduler: CallSpec | None = None
    max_steps: int | None = None  # stop dense training after this many optimizer steps
    init_from: str | None = None  # a pretrained state dict / Lightning checkpoint to start from
    init_from_sha256: str | None = None  # its content hash, taken when the config was parsed
    select: str = "best"  # best: highest validation accuracy's weights; best_loss: lowest validation loss's; last: the final step's

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"epochs": self.epochs, "optimizer": self.optimizer.identity()}
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.identity()
        if self.max_steps is not None:
            out["max_steps"] = self.max_steps
        if self.select != "best":
            out["select"] = self.select
        if self.init_from is not None:
            out["init_from_sha256"] = self.init_from_sha256 or file_sha256(self.init_from, "train.init_from")
        return out


@dataclass(frozen=True)
class PruningSpec:
    method: str = "magnitude"
    scope: str = "global"
    structure: str = "unstructured"
    prune_output: bool = True
    prune_first: bool = True
    prune_bias: bool = False  # biases of the selected layers are prunable too (Greydanus's MNIST-1D tickets)
    method_options: Options = field(default_factory=Options)
    structure_options: Options = field(default_factory=lambda: catalog.UnstructuredOptions())

    @property
    def options(self) -> dict[str, Any]:
        """Method and structure options by key (as in the config's flat ``pruning`` node)."""
        return {**self.method_options.as_dict(), **self.structure_options.as_dict()}

    @property
    def calibration_batches(self) -> int:
        return int(getattr(self.method_options, "calibration_batches", 0))

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "scope": self.scope}
        if self.structure != "unstructured":
            out["structure"] = self.structure
        if not self.prune_output:
            out["prune_output"] = False
        if not self.prune_first:
            out["prune_first"] = False
        if self.prune_bias:
            out["prune_bias"] = True
        return out | self.method_options.identity() | self.structure_options.identity()


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = "iterative"
    target_sparsity: float = 0.9
    iterations: int = 1
    options: Options = field(default_factory=lambda: catalog.IterativeOptions())

    @property
    def mode(self) -> str:
        return str(getattr(self.options, "mode", "geometric"))

    def levels(self) -> list[float]:
        return schedule_levels(self.name, self.target_sparsity, self.iterations, self.mode)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "target_sparsity": self.target_sparsity, "iterations": self.iterations,
                **self.options.identity()}


@dataclass(frozen=True)
class RetrainSpec:
    name: str = "finetune"
    epochs: int = 0
    scheduler: CallSpec | None = None
    options: Options = field(default_factory=lambda: catalog.FinetuneOptions())
    max_steps: int | None = None  # stop each level's retraining after this many optimizer steps

    @property
    def lr(self) -> float | None:
        return getattr(self.options, "lr", None)

    @property
    def batch_size(self) -> int | None:
        """The fine-tuning batch size (retrain=finetune; None: data.batch_size)."""
        return getattr(self.options, "batch_size", None)

    @property
    def rewind_step(self) -> int:
        return int(getattr(self.options, "rewind_step", 0))

    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "epochs": self.epochs}
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.identity()
        if self.max_steps is not None:  # only when set: earlier run ids stay as they were
            out["max_steps"] = self.max_steps
        return out | self.options.identity()


@dataclass(frozen=True)
class TrainerSpec:
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    deterministic: bool = False
    progress: bool = True
    threads: int | None = None
    steps_per_call: int = 8  # optimizer steps per Lightning training_step (bit-identical; speed only)
    fused_optimizer: bool = True  # the optimizer's fused kernel when it has one

    def identity(self) -> dict[str, Any]:
        """What changes numbers: precision, deterministic kernels, the optimizer kernel, thread
        count (reduction order) and the device type. Not: progress display, steps per call
        (bit-identical, tested), device count of a single-device run."""
        out: dict[str, Any] = {}
        if self.precision != "32-true":
            out["precision"] = self.precision
        if self.deterministic:
            out["deterministic"] = True
        if not self.fused_optimizer:
            out["fused_optimizer"] = False
        if self.threads is not None:
            out["threads"] = self.threads
        device = resolved_device(self.accelerator)
        if device != "cpu":
            out["device"] = device
        return out


def resolved_device(accelerator: str) -> str:
    """The device type a run uses ('cpu', 'cuda', 'mps'); imports torch only for 'auto'."""
    if accelerator == "cpu":
        return "cpu"
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "mps":
        return "mps"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


LOGGERS = ("none", "csv", "tensorboard", "mlflow")
LOGGER_KEYS = ("name", "save_dir", "experiment_name", "tracking_uri")


def parse_logger(node: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``logger`` node (``logger=csv|tensorboard|mlflow``; not part of run identity)."""
    cfg = dict(node or {"name": "none"})
    name = cfg.get("name") or "none"
    if name not in LOGGERS:
        from prunebench.errors import unknown_name

        raise unknown_name("logger", name, LOGGERS)
    _only(cfg, "logger", list(LOGGER_KEYS))
    save_dir = cfg.get("save_dir")
    if save_dir is not None and Path(str(save_dir)).expanduser().exists() and not Path(str(save_dir)).expanduser().is_dir():
        raise ConfigError(f"logger.save_dir={str(save_dir)!r} is a file, not a folder; give a folder for the logs")
    return cfg | {"name": str(name)}


LATENCY_MODES = ("eager", "deploy")  # prunebench.metrics.LATENCY_MODES (kept torch-free here)


@dataclass(frozen=True)
class MetricsSpec:
    latency: bool = True
    latency_batch: int = 1
    latency_batch_large: int = 64
    latency_warmup: int = 3
    latency_repeats: int = 20
    #: eager: the model as trained; deploy: as it would ship (BatchNorm folded, channels-last,
    #: inference mode; ONNX Runtime / torch.compile when asked and faster), dense and pruned alike
    latency_mode: str = "eager"
    latency_onnxruntime: bool = False
    latency_compile: bool = False
    #: time masked Linear layers in CSR beside dense at the large batch (speedup_measured_sparse)
    sparse_kernels: bool = False


@dataclass(frozen=True)
class RunSpec:
    seed: int
    data: NamedSpec
    model: NamedSpec
    train: TrainSpec
    pruning: PruningSpec
    schedule: ScheduleSpec
    retrain: RetrainSpec
    trainer: TrainerSpec = TrainerSpec()
    metrics: MetricsSpec = MetricsSpec()
    root: str = "outputs"
    data_dir: str = "data"
    experiment: str | None = None
    label: str | None = None
    trial: int | None = None  # Optuna trial number (not part of identity)
    study: str | None = None  # Optuna study name (not part of identity)
    logger: Mapping[str, Any] = field(default_factory=lambda: {"name": "none"})  # where per-epoch metrics go

    # ---- identity -------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What determines this run's results, with default values omitted."""
        out = self.dense_identity() | {
            "pruning": self.pruning.identity(),
            "schedule": self.schedule.identity(),
            "retrain": self.retrain.identity(),
        }
        return out

    def dense_identity(self) -> dict[str, Any]:
        """What determines the dense (unpruned, trained) model this run starts from."""
        out = {
            "v": IDENTITY_VERSION,
            "seed": self.seed,
            "data": _named_identity(self.data, "data"),
            "model": _named_identity(self.model, "model"),
            "train": self.train.identity(),
        }
        trainer = self.trainer.identity()
        if trainer:
            out["trainer"] = trainer
        return out

    @property
    def run_id(self) -> str:
        return content_hash(self.identity())

    @property
    def dense_id(self) -> str:
        return content_hash(self.dense_identity())

    def describe(self) -> str:
        from prunebench.identity import display_name

        s = self.schedule
        data, model = display_name("data", self.data.name, self.data.kwargs), display_name("model", self.model.name,
                                                                                           self.model.kwargs)
        return (
            f"{data}/{model} {self.pruning.method}/{self.pruning.scope}/{self.pruning.structure} "
            f"{s.name}({s.target_sparsity:g}, n={s.iterations}) retrain={self.retrain.name} seed={self.seed}"
        )

    def curve_label(self) -> str:
        if self.label:
            return self.label
        parts = [self.pruning.method, self.schedule.name, self.retrain.name]
        if self.pruning.structure != "unstructured":
            parts.append(self.pruning.structure)
        if self.pruning.structure == "dst":  # static / set / rigl are different curves
            parts.append(str(getattr(self.pruning.structure_options, "update", "")))
        return "/".join(parts)

    def check_deep(self) -> None:
        """The checks that import torch: optimizer and scheduler arguments, the accelerator."""
        from prunebench.models import check_model_keys

        check_model_keys(self.model.name, self.model.kwargs)
        self.train.optimizer.check("train.optimizer")
        if self.train.scheduler is not None:
            self.train.scheduler.check("train.scheduler")
        if self.retrain.scheduler is not None:
            self.retrain.scheduler.check("retrain.scheduler")
        import torch

        self.train.optimizer.check_construct("train.optimizer")
        opt = None
        if self.train.scheduler or self.retrain.scheduler:
            try:
                opt = self.train.optimizer.partial("train.optimizer")([torch.nn.Parameter(torch.zeros(1))])
            except Exception:  # noqa: BLE001 - see check_construct: then the schedulers are not dry-built
                pass
        for key, sched in (("train.scheduler", self.train.scheduler), ("retrain.scheduler", self.retrain.scheduler)):
            if sched is not None and opt is not None:
                sched.check_construct(key, opt)
        device = resolved_device(self.trainer.accelerator)

        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"trainer.accelerator={self.trainer.accelerator!r} needs a CUDA GPU and none is "
                              f"visible; use trainer=cpu (or trainer.accelerator=auto)")
        if device == "mps" and not torch.backends.mps.is_available():
            raise ConfigError("trainer.accelerator='mps' needs Apple's MPS backend, which is not available here")
        if self.trainer.precision in ("16-mixed", "16-true") and device == "cpu":
            raise ConfigError(f"trainer.precision={self.trainer.precision!r} is not supported on the CPU; "
                              f"use 32-true or bf16-mixed")


def content_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


_FILE_HASHES: dict[tuple[str, float, int], str] = {}


def file_sha256(path: str, key: str) -> str:
    """Content hash of a file (cached by path, mtime and size); ConfigError if it is missing."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise ConfigError(f"{key}={path!r}: no such file") from None
    if not p.is_file():
        raise ConfigError(f"{key}={path!r} is not a file")
    cache_key = (str(p.resolve()), st.st_mtime, st.st_size)
    if cache_key not in _FILE_HASHES:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[cache_key] = h.hexdigest()[:16]
    return _FILE_HASHES[cache_key]


def _factory_defaults(kind: str, name: str) -> dict[str, Any]:
    """The defaults a run's ``data``/``model`` keys are compared with (equal: left out of identity).

    For a built-in entry, its packaged config ``conf/<kind>/<name>.yaml`` (read without
    torch, so a relaunch can find finished runs without importing it; a unit test holds
    each file equal to its factory's keyword defaults); otherwise the factory's signature.
    """
    from prunebench.paths import group_file

    path = group_file(kind, name)
    if path is not None and name not in ("custom", "torchvision", "imagefolder"):
        import yaml

        node = yaml.safe_load(path.read_text()) or {}
        return {k: v for k, v in node.items() if k not in ("name", "defaults")
                and not (isinstance(v, str) and "${" in v)}
    try:
        if kind == "model":
            from prunebench.models import MODELS

            fn = MODELS.get(name)
        else:
            from prunebench.data import DATASETS

            fn = DATASETS.get(name)
        sig = inspect.signature(fn)
    except (ConfigError, TypeError, ValueError, ImportError):
        return {}
    return {p.name: p.default for p in sig.parameters.values() if p.default is not inspect.Parameter.empty}


# Keys that do not change results: where data lives on disk, how it is downloaded.
_NON_IDENTITY_DATA_KEYS = {"root", "download", "eval_batch_size", "checksum"}


def _named_identity(spec: NamedSpec, kind: str) -> dict[str, Any]:
    defaults = _factory_defaults(kind, spec.name)
    kwargs = {
        k: _plain(v)
        for k, v in spec.kwargs.items()
        if not (kind == "data" and k in _NON_IDENTITY_DATA_KEYS) and not (k in defaults and _eq(defaults[k], v))
    }
    return {"name": spec.name, **kwargs, **spec.fingerprint}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


# ---- conversion from a plain (resolved) config mapping ---------------------------------


def _node(cfg: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    node = cfg.get(key)
    if not isinstance(node, Mapping):
        raise ConfigError(f"config key {key!r} is missing or not a mapping")
    return node


def _only(node: Mapping[str, Any], path: str, valid: list[str], what: str = "") -> None:
    for k in node:
        if k not in valid:
            raise unknown_key(path, k, sorted(valid), what)


def _int(node: Mapping[str, Any], key: str, path: str, *, low: int | None = None, default: Any = ...) -> Any:
    if node.get(key) is None:
        if default is ...:
            raise ConfigError(f"{path}.{key} is missing")
        return default
    value = parse_int(node[key], f"{path}.{key}")
    if low is not None and value < low:
        raise ConfigError(f"{path}.{key}={value!r} is out of range; expected an integer >= {low}")
    return value


def _bool(node: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
    value = node.get(key)
    return default if value is None else parse_bool(value, f"{path}.{key}")


def _str(node: Mapping[str, Any], key: str, path: str, default: str) -> str:
    value = node.get(key, default)
    if value is None:
        return default
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise ConfigError(f"{path}.{key}={value!r} must be a string")
    return str(value)


def _choice(node: Mapping[str, Any], key: str, path: str, valid: tuple[str, ...], default: str) -> str:
    value = node.get(key)
    if value is None:
        return default
    if value not in valid:
        from prunebench.errors import unknown_name

        raise unknown_name(f"{path}.{key}", value, valid)
    return str(value)


def _options(cls: type[Options], node: Mapping[str, Any], path: str, what: str) -> Options:
    return cls.parse({k: v for k, v in node.items() if k in cls.keys()}, path, what=what)


def parse_named(node: Mapping[str, Any], kind: str) -> NamedSpec:
    """A model or data set: its name, its factory's keyword arguments, and their fingerprint.

    A user's factory (``target``) is made absolute so that workers started elsewhere find
    it; its file content, or an image folder's content, joins the identity.
    """
    from prunebench.identity import data_identity, model_identity
    from prunebench.imports import absolute_target

    cat = catalog.MODELS if kind == "model" else catalog.DATASETS
    name = cat.check(node.get("name"))
    kwargs = {k: v for k, v in node.items() if k != "name"}
    if kind == "model":
        for key in ("num_classes", "input_shape"):
            if key in kwargs:
                raise ConfigError(f"model.{key} cannot be set: it comes from the data set (a factory with a "
                                  f"parameter named {key} receives it)")
    if name == "custom":
        if not kwargs.get("target"):
            raise ConfigError(f"{kind}=custom needs {kind}.target=<module or file.py>:<factory>")
        kwargs["target"] = absolute_target(str(kwargs["target"]), f"{kind}.target")
    if name == "imagefolder" and kwargs.get("root") is not None:
        kwargs["root"] = str(Path(str(kwargs["root"])).expanduser().absolute())
    fingerprint = model_identity(name, kwargs) if kind == "model" else data_identity(name, kwargs)
    return NamedSpec(name, kwargs, fingerprint)


PRUNING_COMMON = ["method", "scope", "structure", "prune_output", "prune_first", "prune_bias"]
#: Criteria that can score a bias (Wanda needs input norms per weight; SynFlow and movement score weights only).
BIAS_CRITERIA = ("magnitude", "random", "snip", "taylor")


def parse_pruning(p: Mapping[str, Any]) -> PruningSpec:
    structure = catalog.STRUCTURES.check(p.get("structure", "unstructured"))
    method = p.get("method")
    scope = p.get("scope", "global")
    if structure == "channel":
        method_cls = catalog.CHANNEL_CRITERIA.options(method)
        if scope not in catalog.CHANNEL_SCOPES:
            from prunebench.errors import unknown_name

            raise unknown_name("pruning.scope", scope, catalog.CHANNEL_SCOPES)
    else:
        method_cls = catalog.CRITERIA.options(method)
        if scope not in catalog.SCOPES:
            from prunebench.errors import unknown_name

            raise unknown_name("pruning.scope", scope, catalog.SCOPES)
    structure_cls = catalog.STRUCTURES.options(structure)
    if "calibration_batches" in p and "calibration_batches" not in method_cls.keys():
        # A study may set it for its data-driven variants (wanda, sparsegpt, ...); a method that
        # sees no data does not read it, so it is dropped (not in identity, not recorded).
        _int(p, "calibration_batches", "pruning", low=1, default=None)
        p = {k: v for k, v in p.items() if k != "calibration_batches"}
    valid = PRUNING_COMMON + method_cls.keys() + structure_cls.keys()
    if p.get("prune_bias") is True and (structure != "unstructured" or method not in BIAS_CRITERIA):
        raise ConfigError(f"pruning.prune_bias=true needs pruning.structure=unstructured and a criterion that can "
                          f"score a bias ({', '.join(BIAS_CRITERIA)}); got structure={structure!r}, "
                          f"method={method!r}")
    _only(p, "pruning", valid, f"pruning.method={method!r} with pruning.structure={structure!r}")
    return PruningSpec(
        method=str(method),
        scope=str(scope),
        structure=structure,
        prune_output=_bool(p, "prune_output", "pruning", default=True),
        prune_first=_bool(p, "prune_first", "pruning", default=True),
        prune_bias=_bool(p, "prune_bias", "pruning", default=False),
        method_options=_options(method_cls, p, "pruning", f"pruning.method={method!r}"),
        structure_options=_options(structure_cls, p, "pruning", f"pruning.structure={structure!r}"),
    )


#: More levels than this is no schedule (each is a prune-and-retrain step); the preflight also
#: checks that every level removes at least one of the model's prunable weights.
MAX_ITERATIONS = 1000


def parse_schedule(s: Mapping[str, Any]) -> ScheduleSpec:
    name = catalog.SCHEDULES.check(s.get("name"))
    cls = catalog.SCHEDULES.options(name)
    _only(s, "schedule", ["name", "target_sparsity", "iterations", *cls.keys()], f"schedule={name!r}")
    target = check_range("schedule.target_sparsity", parse_float(s.get("target_sparsity"), "schedule.target_sparsity"),
                         0.0, 1.0)
    iterations = _int(s, "iterations", "schedule", low=1)
    if iterations > MAX_ITERATIONS:  # before levels() lists them all; the model-specific bound is in the preflight
        raise ConfigError(f"schedule.iterations={iterations} is out of range; expected an integer in [1, "
                          f"{MAX_ITERATIONS}] (each level is a prune-and-retrain step)")
    schedule = ScheduleSpec(name=name, target_sparsity=target, iterations=iterations,
                            options=_options(cls, s, "schedule", f"schedule={name!r}"))
    if isinstance(schedule.options, catalog.GradualOptions) and schedule.options.initial_sparsity > target:
        raise ConfigError(f"schedule.initial_sparsity={schedule.options.initial_sparsity!r} is above "
                          f"schedule.target_sparsity={target!r}")
    schedule.levels()  # validates name/iterations combinations
    return schedule


def parse_retrain(r: Mapping[str, Any]) -> RetrainSpec:
    name = catalog.RETRAIN_MODES.check(r.get("name"))
    cls = catalog.RETRAIN_MODES.options(name)
    common = ["name", "epochs", "max_steps"] + (["scheduler"] if name not in catalog.DENSE_SCHEDULE_MODES else [])
    valid = common + cls.keys()
    for k, v in r.items():
        if k not in valid:
            if k in ("lr", "scheduler") and name in catalog.DENSE_SCHEDULE_MODES:
                if v is None:
                    continue  # an unset key the mode does not read
                raise ConfigError(f"retrain.{k}={v!r} has no effect with retrain={name!r}, which retrains with the "
                                  f"dense run's optimizer and LR schedule (train.optimizer / train.scheduler); "
                                  f"remove it, or use retrain=finetune")
            raise unknown_key("retrain", k, sorted(valid), f"retrain={name!r}")
    epochs = _int(r, "epochs", "retrain", low=0, default=0)
    max_steps = _int(r, "max_steps", "retrain", low=1, default=None)
    if name == "none":
        for k in ("epochs", "scheduler", "max_steps"):
            if r.get(k):  # as retrain.lr with rewinding: an option the mode ignores is an error, not a no-op
                raise ConfigError(f"retrain.{k}={r[k]!r} has no effect with retrain='none', which does not retrain; "
                                  f"remove it (retrain.{k}={0 if k == 'epochs' else 'null'}), or use retrain=finetune")
    elif max_steps is not None and epochs == 0:
        raise ConfigError(f"retrain.max_steps={max_steps!r} caps retraining that retrain.epochs=0 turns off; "
                          f"set retrain.epochs >= 1 (max_steps then ends it early) or remove retrain.max_steps")
    return RetrainSpec(name=name, epochs=epochs, max_steps=max_steps,
                       scheduler=CallSpec.parse(r.get("scheduler"), "retrain.scheduler"),
                       options=_options(cls, r, "retrain", f"retrain={name!r}"))


def parse_trainer(tr: Mapping[str, Any]) -> TrainerSpec:
    keys = [f.name for f in dataclasses.fields(TrainerSpec)]
    _only(tr, "trainer", keys)
    accelerator = _str(tr, "accelerator", "trainer", "auto")
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"trainer.accelerator={accelerator!r} is not supported; valid: {', '.join(ACCELERATORS)}")
    precision = _str(tr, "precision", "trainer", "32-true")
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision!r} is not a known precision; valid: "
                          f"{', '.join(sorted(set(PRECISIONS.values())))}")
    devices = _int(tr, "devices", "trainer", low=1, default=1)
    if devices != 1:
        raise ConfigError(f"trainer.devices={devices!r}: a run trains on one device; parallelise across runs "
                          f"(sweep.n_jobs, the SLURM launcher) instead")
    return TrainerSpec(
        accelerator=accelerator,
        devices=devices,
        precision=PRECISIONS[precision],
        deterministic=_bool(tr, "deterministic", "trainer", default=False),
        progress=_bool(tr, "progress", "trainer", default=True),
        threads=_int(tr, "threads", "trainer", low=1, default=None),
        steps_per_call=_int(tr, "steps_per_call", "trainer", low=1, default=8),
        fused_optimizer=_bool(tr, "fused_optimizer", "trainer", default=True),
    )


def parse_metrics(me: Mapping[str, Any]) -> MetricsSpec:
    _only(me, "metrics", [f.name for f in dataclasses.fields(MetricsSpec)])
    return MetricsSpec(
        latency=_bool(me, "latency", "metrics", default=True),
        latency_batch=_int(me, "latency_batch", "metrics", low=1, default=1),
        latency_batch_large=_int(me, "latency_batch_large", "metrics", low=1, default=64),
        latency_warmup=_int(me, "latency_warmup", "metrics", low=0, default=3),
        latency_repeats=_int(me, "latency_repeats", "metrics", low=1, default=20),
        latency_mode=_choice(me, "latency_mode", "metrics", LATENCY_MODES, "eager"),
        latency_onnxruntime=_bool(me, "latency_onnxruntime", "metrics", default=False),
        latency_compile=_bool(me, "latency_compile", "metrics", default=False),
        sparse_kernels=_bool(me, "sparse_kernels", "metrics", default=False),
    )


def parse_train(t: Mapping[str, Any]) -> TrainSpec:
    _only(t, "train", ["epochs", "max_steps", "optimizer", "scheduler", "init_from", "select"])
    optimizer = CallSpec.parse(t.get("optimizer"), "train.optimizer")
    if optimizer is None:
        raise ConfigError("train.optimizer is missing; e.g. train.optimizer._target_=torch.optim.Adam")
    init_from = t.get("init_from")
    if init_from is not None:
        if not isinstance(init_from, str):
            raise ConfigError(f"train.init_from={init_from!r} must be a file path")
    return TrainSpec(
        epochs=_int(t, "epochs", "train", low=0),
        optimizer=optimizer,
        scheduler=CallSpec.parse(t.get("scheduler"), "train.scheduler"),
        max_steps=_int(t, "max_steps", "train", low=1, default=None),
        init_from=init_from,
        init_from_sha256=None if init_from is None else file_sha256(init_from, "train.init_from"),
        select=_choice(t, "select", "train", ("best", "best_loss", "last"), "best"),
    )


SEED_LIMIT = 2**32  # numpy's and torch's generators take seeds below this


def check_seed(value: Any, key: str = "seed") -> int:
    """``value`` as a seed in [0, 2**32); ConfigError naming ``key`` otherwise."""
    if value is None:
        raise ConfigError(f"{key} is missing")
    seed = parse_int(value, key)
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{key}={seed!r} is out of range; expected an integer in [0, 2**32 = {SEED_LIMIT})")
    return seed


def check_study_seeds(seeds: Any, key: str = "study.seeds") -> list[int]:
    """A study's seeds: a non-empty list of distinct seeds in range (an empty list is not "seed 0")."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (list, tuple)):
        raise ConfigError(f"{key}={seeds!r} must be a list of seeds, e.g. {key}=[0,1,2]")
    if not seeds:
        raise ConfigError(f"{key}=[] is empty; give at least one seed (e.g. {key}=[0]) or remove the key")
    out = [check_seed(s, f"{key}[{i}]") for i, s in enumerate(seeds)]
    if len(set(out)) != len(out):
        raise ConfigError(f"{key}={list(seeds)!r} repeats a seed")
    return out


def check_data_ranges(kwargs: Mapping[str, Any], val_split: bool = True, select: Any = "best") -> None:
    """Sizes of the data node that need no data to check: batch sizes >= 1, a validation split
    (selection and every level's val_acc need one) where validation is carved off the training
    data (``val_split``; not for a data set with validation data of its own, whose packaged
    ``val_size`` is 0). ``val_size=0`` is allowed with ``train.select=last`` (``select``), which
    selects nothing: every training example trains, as in a paper that holds none out."""
    for k in ("batch_size", "eval_batch_size"):
        if kwargs.get(k) is not None:
            value = parse_int(kwargs[k], f"data.{k}")
            if value < 1:
                raise ConfigError(f"data.{k}={value!r} is out of range; expected an integer >= 1")
    if "val_size" in kwargs and val_split:
        value = kwargs["val_size"]
        num = parse_float(value, "data.val_size") if value is not None else 0.0
        if num < 0 or (num == 0 and select != "last"):
            raise ConfigError(f"data.val_size={value!r}: the validation split cannot be empty with "
                              f"train.select={select!r}; selection (train.select, early stopping, sweep objectives) "
                              f"and every level's val_acc use it. Give a count (e.g. 5000) or a fraction in (0, 1), "
                              f"or data.val_size=0 with train.select=last (no selection; val_acc is then NaN)")


def check_model_ranges(kwargs: Mapping[str, Any]) -> None:
    """Layer sizes of the model node: ``widths`` a non-empty list of positive integers; ``width``,
    ``channels`` and ``width_mult`` positive."""
    if "widths" in kwargs:
        widths = kwargs["widths"]
        if isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)) or not widths:
            raise ConfigError(f"model.widths={widths!r} must be a non-empty list of layer widths, e.g. [100, 100]")
        for i, w in enumerate(widths):
            if isinstance(w, bool) or not isinstance(w, int) or w < 1:
                raise ConfigError(f"model.widths={list(widths)!r}: entry {i} is {w!r}; every width must be an "
                                  f"integer >= 1")
    for k in ("width", "channels"):
        if k in kwargs and kwargs[k] is not None:
            if parse_int(kwargs[k], f"model.{k}") < 1:
                raise ConfigError(f"model.{k}={kwargs[k]!r} is out of range; expected an integer >= 1")
    if kwargs.get("width_mult") is not None:
        check_range("model.width_mult", parse_float(kwargs["width_mult"], "model.width_mult"), 0.0, None,
                    low_inclusive=False)


def from_config(cfg: Mapping[str, Any]) -> RunSpec:
    """Validate a resolved config (plain dicts) and build the RunSpec. Imports no torch.

    Raises ConfigError naming the key and value for anything invalid, including unknown
    keys at any level and unknown model / data / method / schedule / retrain names
    (listing the valid ones).
    """
    _only(cfg, "config", list(TOP_LEVEL_KEYS))
    seed = check_seed(cfg.get("seed"), "seed")

    data = parse_named(_node(cfg, "data"), "data")
    select = (cfg.get("train") or {}).get("select", "best")  # train is parsed below; val_size=0 needs select=last
    check_data_ranges(data.kwargs, val_split=_factory_defaults("data", data.name).get("val_size") != 0, select=select)
    model = parse_named(_node(cfg, "model"), "model")
    check_model_ranges(model.kwargs)

    paths = cfg.get("paths") or {}
    _only(paths, "paths", ["root", "data_dir"])
    from prunebench.paths import check_root_name

    check_root_name(paths.get("root", "outputs"), "paths.root")
    optuna = cfg.get("optuna") or {}
    label = cfg.get("label")
    if label is not None and not isinstance(label, str):
        raise ConfigError(f"label={label!r} must be a string")
    experiment = cfg.get("experiment_name")
    if experiment is not None:  # it names ROOT/claims/<experiment_name>.json: one plain file name
        from prunebench.results.names import check_file_name

        check_file_name(str(experiment), "experiment_name")
    report = cfg.get("report", True)
    if report is not None:
        parse_bool(report, "report")
    if cfg.get("report_formats") is not None:
        from prunebench.formats import check_formats  # a leaf module: no matplotlib or pandas

        check_formats(cfg["report_formats"])
    return RunSpec(
        seed=seed,
        data=data,
        model=model,
        train=parse_train(_node(cfg, "train")),
        pruning=parse_pruning(_node(cfg, "pruning")),
        schedule=parse_schedule(_node(cfg, "schedule")),
        retrain=parse_retrain(_node(cfg, "retrain")),
        trainer=parse_trainer(cfg.get("trainer") or {}),
        metrics=parse_metrics(cfg.get("metrics") or {}),
        root=str(paths.get("root", "outputs")),
        data_dir=str(paths.get("data_dir", "data")),
        experiment=cfg.get("experiment_name"),
        label=label,
        trial=optuna.get("number"),
        study=optuna.get("study_name"),
        logger=parse_logger(cfg.get("logger")),
    )
