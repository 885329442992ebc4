"""Typed, validated run specifications.

The composed Hydra config is converted here, once, into frozen dataclasses; library code
never sees ``DictConfig``. Validation happens at conversion time, so bad input fails
with a message naming the key and value *before* any data is loaded or model trained.

Run identity (:meth:`RunSpec.run_id`) hashes what determines a run's results with every
value that equals its default omitted, so adding a new option with a default leaves the
ids of old runs unchanged (OpenLTH's rule).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from prunebench.errors import ConfigError, check_range, unknown_name

STRUCTURES = ("unstructured", "channel", "nm")


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

    @classmethod
    def parse(cls, node: Mapping[str, Any] | None, key: str) -> CallSpec | None:
        if node is None:
            return None
        if not isinstance(node, Mapping) or "_target_" not in node:
            raise ConfigError(f"{key} must be a mapping with a _target_ (e.g. torch.optim.Adam); got {node!r}")
        kwargs = {k: v for k, v in node.items() if k not in ("_target_", "_partial_")}
        spec = cls(str(node["_target_"]), kwargs)
        _locate(spec.target, f"{key}._target_")
        if "lr" in kwargs and kwargs["lr"] is not None:
            check_range(f"{key}.lr", float(kwargs["lr"]), 0.0, None, low_inclusive=False)
        return spec


@dataclass(frozen=True)
class NamedSpec:
    """A registry name plus the keyword arguments of its factory."""

    name: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec:
    epochs: int
    optimizer: CallSpec
    scheduler: CallSpec | None = None
    max_steps: int | None = None  # stop dense training after this many optimizer steps


@dataclass(frozen=True)
class PruningSpec:
    method: str = "magnitude"
    scope: str = "global"
    structure: str = "unstructured"
    prune_output: bool = True
    prune_first: bool = True
    calibration_batches: int = 8
    options: Mapping[str, Any] = field(default_factory=dict)  # method-specific keys


@dataclass(frozen=True)
class ScheduleSpec:
    name: str = "iterative"
    target_sparsity: float = 0.9
    iterations: int = 1
    mode: str = "geometric"
    options: Mapping[str, Any] = field(default_factory=dict)

    def levels(self) -> list[float]:
        from prunebench.pruning.schedules import levels

        return levels(self.name, self.target_sparsity, self.iterations, self.mode)


@dataclass(frozen=True)
class RetrainSpec:
    name: str = "finetune"
    epochs: int = 0
    lr: float | None = None
    scheduler: CallSpec | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainerSpec:
    accelerator: str = "auto"
    devices: int = 1
    precision: str = "32-true"
    deterministic: bool = False
    progress: bool = True
    threads: int | None = None
    steps_per_call: int = 8  # optimizer steps per Lightning training_step (speed only)
    fused_optimizer: bool = True  # the optimizer's fused kernel when it has one (speed only)


@dataclass(frozen=True)
class MetricsSpec:
    latency: bool = True
    latency_batch: int = 1
    latency_batch_large: int = 64
    latency_warmup: int = 3
    latency_repeats: int = 20


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

    # ---- identity -------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What determines this run's results, with default values omitted."""
        return {
            "seed": self.seed,
            "data": _named_identity(self.data, "data"),
            "model": _named_identity(self.model, "model"),
            "train": _dc_identity(self.train),
            "pruning": _dc_identity(self.pruning),
            "schedule": _dc_identity(self.schedule),
            "retrain": _dc_identity(self.retrain),
        }

    def dense_identity(self) -> dict[str, Any]:
        """What determines the dense (unpruned, trained) model this run starts from."""
        ident = self.identity()
        return {k: ident[k] for k in ("seed", "data", "model", "train")}

    @property
    def run_id(self) -> str:
        return content_hash(self.identity())

    @property
    def dense_id(self) -> str:
        return content_hash(self.dense_identity())

    def describe(self) -> str:
        s = self.schedule
        return (
            f"{self.data.name}/{self.model.name} {self.pruning.method}/{self.pruning.scope}/{self.pruning.structure} "
            f"{s.name}({s.target_sparsity:g}, n={s.iterations}) retrain={self.retrain.name} seed={self.seed}"
        )

    def curve_label(self) -> str:
        if self.label:
            return self.label
        parts = [self.pruning.method, self.schedule.name, self.retrain.name]
        if self.pruning.structure != "unstructured":
            parts.append(self.pruning.structure)
        return "/".join(parts)


def content_hash(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _dc_identity(value)
    if isinstance(value, CallSpec):
        return value.identity()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return value  # keep as float: 1.0 and 1 hash alike through json anyway
    return value


def _dc_identity(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, CallSpec):
            out[f.name] = value.identity()
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        )
        if isinstance(value, Mapping) and not value:
            continue
        if default is not dataclasses.MISSING and value == default:
            continue
        out[f.name] = _plain(value)
    return out


def _factory_defaults(kind: str, name: str) -> dict[str, Any]:
    """Defaults declared by the factory behind a registry name (omitted from identity)."""
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
_NON_IDENTITY_DATA_KEYS = {"root", "download", "eval_batch_size"}


def _named_identity(spec: NamedSpec, kind: str) -> dict[str, Any]:
    defaults = _factory_defaults(kind, spec.name)
    kwargs = {
        k: _plain(v)
        for k, v in spec.kwargs.items()
        if not (kind == "data" and k in _NON_IDENTITY_DATA_KEYS) and not (k in defaults and _eq(defaults[k], v))
    }
    return {"name": spec.name, **kwargs}


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return bool(a == b)


# ---- conversion from a plain (resolved) config mapping ---------------------------------


def _int(node: Mapping[str, Any], key: str, path: str, *, low: int | None = None, default: Any = ...) -> Any:
    if key not in node or node[key] is None:
        if default is ...:
            raise ConfigError(f"{path}.{key} is missing")
        return default
    value = node[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
        raise ConfigError(f"{path}.{key}={value!r} must be an integer")
    value = int(value)
    if low is not None and value < low:
        raise ConfigError(f"{path}.{key}={value!r} is out of range; expected an integer >= {low}")
    return value


def _bool(node: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
    value = node.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}={value!r} must be true or false")
    return value


def _float(node: Mapping[str, Any], key: str, path: str) -> float:
    value = node.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{path}.{key}={value!r} must be a number")
    if math.isnan(float(value)):
        raise ConfigError(f"{path}.{key}={value!r} is out of range")
    return float(value)


def _rest(node: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in node.items() if k not in known}


def from_config(cfg: Mapping[str, Any]) -> RunSpec:
    """Validate a resolved config (plain dicts) and build the RunSpec.

    Raises ConfigError naming the key and value for anything invalid, including unknown
    model / data / method / schedule / retrain names (listing the valid ones).
    """
    from prunebench.data import DATASETS
    from prunebench.engine.retrain import RETRAIN_MODES
    from prunebench.models import MODELS
    from prunebench.pruning.allocation import ALLOCATIONS
    from prunebench.pruning.criteria import CRITERIA
    from prunebench.pruning.schedules import SCHEDULES

    for key in ("data", "model", "train", "pruning", "schedule", "retrain"):
        if not isinstance(cfg.get(key), Mapping):
            raise ConfigError(f"config key {key!r} is missing or not a mapping")

    seed = _int(cfg, "seed", "config", low=0)

    d = cfg["data"]
    DATASETS.get(d.get("name"))
    data = NamedSpec(d["name"], _rest(d, {"name"}))

    m = cfg["model"]
    MODELS.get(m.get("name"))
    model = NamedSpec(m["name"], _rest(m, {"name"}))

    t = cfg["train"]
    optimizer = CallSpec.parse(t.get("optimizer"), "train.optimizer")
    assert optimizer is not None
    train = TrainSpec(
        epochs=_int(t, "epochs", "train", low=0),
        optimizer=optimizer,
        scheduler=CallSpec.parse(t.get("scheduler"), "train.scheduler"),
        max_steps=_int(t, "max_steps", "train", low=1, default=None),
    )

    p = cfg["pruning"]
    scope = p.get("scope", "global")
    structure = p.get("structure", "unstructured")
    if structure not in STRUCTURES:
        raise ConfigError(f"pruning.structure={structure!r} is not a known name; valid: {', '.join(STRUCTURES)}")
    if structure == "channel":
        # Channel criteria (l1, l2, bn_scale, taylor, random) score filters, not weights.
        from prunebench.pruning.structured import CHANNEL_CRITERIA, SCOPES

        CHANNEL_CRITERIA.get(p.get("method"))
        if scope not in SCOPES:
            raise unknown_name("pruning.scope", scope, SCOPES)
    else:
        CRITERIA.get(p.get("method"))
        ALLOCATIONS.get(scope)
    known_p = {"method", "scope", "structure", "prune_output", "prune_first", "calibration_batches"}
    pruning = PruningSpec(
        method=p["method"],
        scope=scope,
        structure=structure,
        prune_output=bool(p.get("prune_output", True)),
        prune_first=bool(p.get("prune_first", True)),
        calibration_batches=_int(p, "calibration_batches", "pruning", low=1, default=8),
        options=_rest(p, known_p),
    )

    s = cfg["schedule"]
    SCHEDULES.get(s.get("name"))
    schedule = ScheduleSpec(
        name=s["name"],
        target_sparsity=check_range("schedule.target_sparsity", _float(s, "target_sparsity", "schedule"), 0.0, 1.0),
        iterations=_int(s, "iterations", "schedule", low=1),
        mode=s.get("mode", "geometric"),
        options=_rest(s, {"name", "target_sparsity", "iterations", "mode"}),
    )
    schedule.levels()  # validates name/mode/iterations combinations

    r = cfg["retrain"]
    RETRAIN_MODES.get(r.get("name"))
    lr = r.get("lr")
    if lr is not None:
        lr = check_range("retrain.lr", _float(r, "lr", "retrain"), 0.0, None, low_inclusive=False)
    retrain = RetrainSpec(
        name=r["name"],
        epochs=_int(r, "epochs", "retrain", low=0, default=0),
        lr=lr,
        scheduler=CallSpec.parse(r.get("scheduler"), "retrain.scheduler"),
        options=_rest(r, {"name", "epochs", "lr", "scheduler"}),
    )

    tr = cfg.get("trainer") or {}
    trainer = TrainerSpec(
        accelerator=str(tr.get("accelerator", "auto")),
        devices=_int(tr, "devices", "trainer", low=1, default=1),
        precision=str(tr.get("precision", "32-true")),
        deterministic=bool(tr.get("deterministic", False)),
        progress=bool(tr.get("progress", True)),
        threads=_int(tr, "threads", "trainer", low=1, default=None),
        steps_per_call=_int(tr, "steps_per_call", "trainer", low=1, default=8),
        fused_optimizer=_bool(tr, "fused_optimizer", "trainer", default=True),
    )
    me = cfg.get("metrics") or {}
    metrics = MetricsSpec(
        latency=bool(me.get("latency", True)),
        latency_batch=_int(me, "latency_batch", "metrics", low=1, default=1),
        latency_batch_large=_int(me, "latency_batch_large", "metrics", low=1, default=64),
        latency_warmup=_int(me, "latency_warmup", "metrics", low=0, default=3),
        latency_repeats=_int(me, "latency_repeats", "metrics", low=1, default=20),
    )
    paths = cfg.get("paths") or {}
    return RunSpec(
        seed=seed,
        data=data,
        model=model,
        train=train,
        pruning=pruning,
        schedule=schedule,
        retrain=retrain,
        trainer=trainer,
        metrics=metrics,
        root=str(paths.get("root", "outputs")),
        data_dir=str(paths.get("data_dir", "data")),
        experiment=cfg.get("experiment_name"),
        label=cfg.get("label"),
        trial=(cfg.get("optuna") or {}).get("number"),
        study=(cfg.get("optuna") or {}).get("study_name"),
    )
