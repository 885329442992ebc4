"""The Python API: prune your own model, on your own data, from a notebook or a script.

    import prunebench
    df = prunebench.run(model=my_net, data=my_datamodule, root="outputs",
                        schedule="iterative", **{"schedule.target_sparsity": 0.9, "train.epochs": 0})
    df = prunebench.study({"one_shot": ["schedule=one_shot"], "imp": ["schedule=iterative"]},
                          model="lenet_300_100", data="mnist", seeds=[0, 1, 2])

Everything goes through the same composition and validation as the command line (the
packaged Hydra configs, typed options, the preflight of every run before the first
trains) and writes the same run folders, so ``prunebench-report``, sweeps and notebooks
see API runs like any other. Keys are given as override strings (``"retrain=lr_rewind"``)
or keyword arguments (``schedule__target_sparsity=0.9`` or ``**{"schedule.target_sparsity":
0.9}``); a keyword whose key is a config group (``schedule="one_shot"``) selects the group.

``model`` and ``data`` take a registry name (``"lenet_300_100"``, ``"mnist"``) or an
object: an ``nn.Module`` (its architecture and current weights start the run, so with
``train.epochs=0`` level 0 is that model's own accuracy) and a LightningDataModule or
prunebench data module. Objects are named by their content (architecture + weights; the
data module's class and its ``data_name``) so relaunching with the same objects reuses the
finished runs.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

from prunebench.errors import ConfigError

#: Objects registered in this process as (kind, object, data_name): a study's worker processes
#: register them again (same content, same names) before running (prunebench.engine.batch).
_OBJECTS: dict[str, tuple[str, Any, Any]] = {}


def registered_objects(names: Any = None) -> list[tuple[str, Any, Any]]:
    """The model and data objects registered in this process (those named in ``names``, if given)."""
    return [v for k, v in _OBJECTS.items() if names is None or k in names]


def register_objects(objects: Sequence[tuple[str, Any, Any]]) -> None:
    """Register objects another process registered (:func:`registered_objects`)."""
    for kind, obj, data_name in objects:
        if kind == "model":
            register_model_object(obj)
        else:
            register_data_object(obj, data_name)


GROUPS = ("data", "model", "pruning", "schedule", "retrain", "trainer", "experiment", "sweep", "paths", "logger")


def _value(v: Any) -> str:
    """A Python value as a Hydra override value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_value(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v) if any(c in v for c in " ,[]{}()=:'\"") else v
    return repr(v)


def overrides_of(overrides: Sequence[str], keys: Mapping[str, Any]) -> list[str]:
    """Override strings from positional strings and keyword arguments (``a__b`` means ``a.b``)."""
    out = [str(o) for o in overrides]
    for k, v in keys.items():
        key = k.replace("__", ".")
        out.append(f"{key}={_value(v)}")
    return out


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()[:12]


def register_model_object(module: Any) -> str:
    """Register an ``nn.Module`` as a model (a fresh copy per run); return its registry name.

    The name carries a hash of the architecture and the weights, so a changed model is a
    new run and the same one is found again.
    """
    import torch

    from prunebench import catalog
    from prunebench.models.base import MODELS, register_model
    from prunebench.models.external import check_io

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
    cls = type(module).__name__
    name = f"object_{cls.lower()}_{_digest(repr(module).encode(), buf.getvalue())}"
    if name not in MODELS:
        snapshot = copy.deepcopy(module).cpu()
        _OBJECTS[name] = ("model", snapshot, None)

        def factory(input_shape: Sequence[int], num_classes: int) -> Any:
            net = copy.deepcopy(snapshot)
            check_io(net, input_shape, num_classes, f"model={cls} (the object passed to prunebench.run)")
            return net

        catalog.MODELS.add(name, help=f"the {cls} object passed to prunebench.run")
        register_model(name)(factory)
    return name


def register_data_object(dm: Any, data_name: str | None = None) -> str:
    """Register a data module object; return its registry name.

    A prunebench TensorDataModule is named by its tensors' content; any other data module
    needs ``data_name`` (its content cannot be fingerprinted cheaply): runs on different
    data must not share ids.
    """
    from prunebench import catalog
    from prunebench.data import DATASETS
    from prunebench.data.base import TensorDataModule

    cls = type(dm).__name__
    if data_name is None:
        if not isinstance(dm, TensorDataModule):
            raise ConfigError(f"data={cls} object: give data_name='<a name for this data>' so that runs on "
                              f"different data do not share run ids (a {cls} cannot be fingerprinted)")
        dm.prepare_data()
        dm.setup("fit")
        import torch

        parts = []
        for t in (dm.x_train, dm.y_train, dm.x_val, dm.y_val, dm.x_test, dm.y_test):
            buf = io.BytesIO()
            torch.save(t.detach().cpu(), buf)
            parts.append(buf.getvalue())
        data_name = _digest(cls.encode(), *parts)
    name = f"object_{cls.lower()}_{data_name}"
    if name not in DATASETS:
        _OBJECTS[name] = ("data", dm, data_name if not isinstance(dm, TensorDataModule) else None)
        def factory(seed: int = 0, root: Any = None) -> Any:
            if isinstance(dm, TensorDataModule):
                own = copy.copy(dm)
                own.seed = seed
                return own
            from prunebench.data.custom import LoaderDataModule

            return LoaderDataModule(dm, target=f"<{cls} object>", seed=seed, key="data")

        factory.name = name  # type: ignore[attr-defined]
        catalog.DATASETS.add(name, help=f"the {cls} object passed to prunebench.run")
        DATASETS.register(name)(factory)  # type: ignore[arg-type]
    return name


def _compose(overrides: Sequence[str]) -> Any:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from prunebench.compose import compose, unknown_key_message

    try:
        return compose(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        from prunebench.sweep.common import _hydra_message

        raise ConfigError(unknown_key_message(overrides) or _hydra_message(exc)) from None


def _specs(overrides: Sequence[str], model: Any, data: Any, data_name: str | None,
           variants: Mapping[str, Sequence[str]] | None, seeds: Sequence[int] | None) -> list[Any]:
    from prunebench.spec import from_config
    from prunebench.sweep.common import plain_config

    base = list(overrides)
    model_name = data_name_ = None
    if model is not None and not isinstance(model, str):
        model_name = register_model_object(model)
    elif isinstance(model, str):
        base.insert(0, f"model={model}")
    if data is not None and not isinstance(data, str):
        data_name_ = register_data_object(data, data_name)
    elif isinstance(data, str):
        base.insert(0, f"data={data}")

    def one(extra: Sequence[str]) -> Any:
        plain = plain_config(_compose([*base, *extra]))
        if model_name is not None:
            plain["model"] = {"name": model_name}
        if data_name_ is not None:
            plain["data"] = {"name": data_name_}
        if plain.get("study") and not extra:
            raise ConfigError("this config is a study (experiment=... with study:); use prunebench.study or "
                              "prunebench.experiment")
        plain["study"] = None
        return from_config(plain)

    if variants is None:
        return [one([])]
    if seeds is not None:
        from prunebench.spec import check_study_seeds

        seeds = check_study_seeds(list(seeds), "seeds")
    specs = []
    for label, ov in variants.items():
        for seed in (seeds if seeds is not None else [0, 1, 2]):
            try:
                specs.append(one([*ov, f"seed={seed}", f"label={_value(label)}"]))
            except ConfigError as exc:
                raise ConfigError(f"study variant {label!r}: {exc}") from None
    return specs


def _execute(specs: Sequence[Any], log: Any, report: bool, jobs: Any = 1) -> Any:
    import pandas as pd

    from prunebench.engine.batch import execute_specs
    from prunebench.engine.batch import resolve_jobs
    from prunebench.log import log as default_log

    n = resolve_jobs(jobs, specs[0].trainer.threads if specs else None)
    outcomes = execute_specs(specs, log=log or default_log, jobs=n)
    frames = [o.rows for o in outcomes if o.rows is not None and len(o.rows)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if report and specs:
        from prunebench.report import write_report

        write_report(specs[0].root, log=log)
    return df


def run(*overrides: str, model: Any = None, data: Any = None, data_name: str | None = None, root: str | None = None,
        log: Any = None, report: bool = False, **keys: Any) -> Any:
    """One run (validated first, skipped if finished, resumed if interrupted); its rows as a DataFrame."""
    ov = overrides_of(overrides, keys)
    if root is not None:
        ov.append(f"paths.root={_value(str(root))}")
    return _execute(_specs(ov, model, data, data_name, None, None), log, report)


def study(variants: Mapping[str, Sequence[str]], *overrides: str, seeds: Sequence[int] = (0, 1, 2), model: Any = None,
          data: Any = None, data_name: str | None = None, root: str | None = None, log: Any = None,
          report: bool = True, jobs: int | str = "auto", **keys: Any) -> Any:
    """Every variant (a list of override strings, labelled by its key) for every seed; all rows.

    Every run is checked before the first one trains, as in a CLI study. ``jobs``: worker
    processes (``auto``: usable cores // ``trainer.threads``; results are the same files).
    """
    ov = overrides_of(overrides, keys)
    if root is not None:
        ov.append(f"paths.root={_value(str(root))}")
    if not variants:
        raise ConfigError("prunebench.study needs at least one variant, e.g. {'one_shot': ['schedule=one_shot']}")
    return _execute(_specs(ov, model, data, data_name, variants, list(seeds)), log, report, jobs)


def experiment(name: str, *overrides: str, root: str | None = None, log: Any = None, report: bool = True,
               **keys: Any) -> Any:
    """A packaged study (``experiment=<name>``, e.g. ``quickstart``), as the CLI runs it."""
    ov = [f"experiment={name}", *overrides_of(overrides, keys)]
    if root is not None:
        ov.append(f"paths.root={_value(str(root))}")
    cfg = _compose(ov)
    study_node = cfg.get("study")
    if not study_node:
        return run(*ov, log=log, report=report)
    variants = {k: list(v) for k, v in study_node.get("variants", {}).items()}
    raw = study_node.get("seeds")  # absent: the config's seed; [] is an error, never silently seed 0
    from prunebench.spec import check_study_seeds

    seeds = [cfg.seed] if raw is None else check_study_seeds(list(raw) if not isinstance(raw, str) else raw)
    return study(variants, *ov, seeds=seeds, log=log, report=report, jobs=study_node.get("jobs", "auto"))
