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

import json
from collections.abc import Mapping, Sequence
from typing import Any

from prunebench.errors import ConfigError
from prunebench.objects import (  # noqa: F401  (re-exported: the API's object registration)
    register_data_object,
    register_model_object,
    register_objects,
    registered_objects,
)

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
