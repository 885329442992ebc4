"""Command line: ``prunebench [hydra overrides]`` (also ``python -m prunebench``).

With no arguments it runs the quickstart study (``experiment=quickstart``): the classic
one-shot vs iterative magnitude pruning comparison on MNIST-1D, then writes the report.
Hydra stops here: the composed config becomes typed RunSpecs (prunebench.spec) and
nothing below this module sees a DictConfig.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from prunebench.errors import ConfigError
from prunebench.spec import RunSpec, from_config

# The configs: $PRUNEBENCH_CONF, else the source tree's top-level conf/ (a checkout or an
# editable install), else the copy shipped inside the wheel as the package prunebench.conf.
_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"
CONF_DIR = os.environ.get("PRUNEBENCH_CONF") or (
    str(_SOURCE_CONF) if (_SOURCE_CONF / "config.yaml").is_file() else "pkg://prunebench.conf")
QUICKSTART = "experiment=quickstart"


def _plain(cfg: DictConfig) -> dict[str, Any]:
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    return container


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def expand_study(cfg: DictConfig, task_overrides: Sequence[str]) -> list[RunSpec]:
    """One RunSpec per (variant, seed) of ``cfg.study``, composed like the command line would."""
    from hydra import compose

    study = cfg.study
    seeds = list(study.get("seeds") or [cfg.seed])
    variants: Mapping[str, Sequence[str]] = study.get("variants") or {"default": []}
    base = [o for o in task_overrides if not o.startswith("seed=")]
    specs = []
    for name, overrides in variants.items():
        for seed in seeds:
            try:
                sub = compose(config_name="config", overrides=[*base, *list(overrides), f"seed={seed}", "study=null"])
                specs.append(from_config(_plain(sub)))
            except ConfigError as exc:
                raise ConfigError(f"study variant {name!r}: {exc}") from exc
            except (HydraException, OmegaConfBaseException) as exc:  # bad override in the variant
                raise ConfigError(f"study variant {name!r} {list(overrides)}: {exc}") from exc
    return specs


def execute_specs(specs: Sequence[RunSpec], log: Any = _log, on_level: Any = None) -> list[Any]:
    """Run specs in order (validating each before it trains); failures are recorded, not raised."""
    from prunebench.engine.loop import Run, RunOutcome

    outcomes: list[RunOutcome] = []
    total = len(specs)
    if total > 1:
        # Preflight every run of a study before the first one trains: a bad variant (missing
        # data, corrupt checkpoint, invalid combination) must not surface an hour in.
        for spec in specs:
            r = Run(spec, log, on_level)
            if not (r.path / "DONE").exists():
                r.prepare()
    for i, spec in enumerate(specs, start=1):
        r = Run(spec, log, on_level)
        if (r.path / "DONE").exists():
            log(f"[{i}/{total}] {spec.describe()}: finished before, skipped ({spec.run_id})")
            outcomes.append(r.execute())
            continue
        log(f"[{i}/{total}] {spec.describe()} -> {r.path}")
        r.prepare()  # bad input raises here, before anything trains
        try:
            outcomes.append(r.execute())
        except ConfigError:
            raise
        except Exception as exc:  # a failing run is recorded; a sweep goes on
            # Sweeps (issue 6): a LevelHook may stop a run on purpose; its exception names the
            # status to record (prunebench.sweep.trial.LevelPruned → "pruned").
            status = str(getattr(exc, "run_status", "failed"))
            r._record_failure(status, f"{type(exc).__name__}: {exc}")
            (r.path / "error.txt").write_text(traceback.format_exc())
            log(f"run {spec.run_id} {status}: {exc}")
    return outcomes


def write_report(root: str) -> None:
    try:
        from prunebench.report import build_report
    except ImportError:  # pragma: no cover - report module is part of the package
        return
    result = build_report(root)
    out = getattr(result, "out", Path(root) / "report")
    _log(f"report: {out}")


def run_config(cfg: DictConfig) -> float | dict[str, float] | None:
    """Run what ``cfg`` describes (one run or a study); return the objective for sweepers.

    A trial of an Optuna sweep (``cfg.optuna`` set by the sweeper) returns the final
    level's validation metrics by name and tells its study the outcome itself.
    """
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("optuna"):
        # Sweeps (issue 6): report levels to the trial, honour its pruner, tell the study.
        from prunebench.sweep.trial import run_trial

        return run_trial(cfg, lambda: [from_config(_plain(cfg))], execute_specs)

    try:
        hc = HydraConfig.get()
        task_overrides = list(hc.overrides.task)
        multirun = str(hc.mode) == "RunMode.MULTIRUN"
    except ValueError:
        task_overrides, multirun = [], False
    start = time.perf_counter()
    if cfg.get("study"):
        specs = expand_study(cfg, task_overrides)
    else:
        specs = [from_config(_plain(cfg))]
    outcomes = execute_specs(specs)
    trained = sum(not o.skipped for o in outcomes)
    _log(f"{len(outcomes)} run(s), {trained} trained, {len(outcomes) - trained} skipped, "
         f"{time.perf_counter() - start:.1f}s")
    if cfg.get("report", True) and not multirun:
        write_report(specs[0].root)
    last = outcomes[-1].rows if outcomes else None
    if last is None or not len(last):
        return None
    val = last["val_acc"].iloc[-1]
    return None if val != val else float(val)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float | dict[str, float] | None:
    try:
        return run_config(cfg)
    except ConfigError as exc:
        # Bad input: one clear line, no traceback, exit status 2 (before anything trained).
        _log(f"error: {exc}")
        sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    if len(sys.argv) == 1:
        _log("prunebench: no overrides given, running the quickstart study (experiment=quickstart)")
        sys.argv.append(QUICKSTART)
    _hydra_main()


if __name__ == "__main__":  # pragma: no cover
    main()
