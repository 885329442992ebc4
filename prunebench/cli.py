"""Command line: ``prunebench [hydra overrides]`` (also ``python -m prunebench``).

``prunebench experiment=quickstart`` runs the main job (one-shot vs iterative magnitude
pruning on MNIST-1D, 3 seeds) and writes the report; ``prunebench`` alone runs the one
default run of ``conf/config.yaml``. Hydra stops here: the composed config becomes typed
RunSpecs (prunebench.spec) and nothing below this module sees a DictConfig.

Exit status: 0 when every run finished (``ok`` or ``diverged``, which is a result and is
recorded as such); 1 when a run failed (its row says ``failed``; the summary counts it);
2 for bad input (an unknown key, name or group option, a value out of range, missing or
corrupt files), reported before anything trains.

``prunebench describe GROUP/NAME`` prints the typed options of one entry.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError
from prunebench.log import log
from prunebench.paths import conf_dir
from prunebench.spec import RunSpec, check_study_seeds, from_config

# The configs: $PRUNEBENCH_CONF, else the source tree's top-level conf/ (a checkout or an
# editable install), else the copy shipped inside the wheel as the package prunebench.conf.
CONF_DIR = conf_dir()

#: Set once the task function runs: a SystemExit(1) before it is Hydra rejecting the command line.
_STARTED = False


def expand_study(cfg: Any, task_overrides: Sequence[str]) -> list[RunSpec]:
    """One RunSpec per (variant, seed) of ``cfg.study``, composed like the command line would."""
    from hydra import compose
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from prunebench.sweep.common import plain_config

    study = cfg.study
    raw = study.get("seeds")  # absent: the config's seed; [] is an error, never silently seed 0
    seeds = [cfg.seed] if raw is None else check_study_seeds(list(raw) if hasattr(raw, "__len__") and
                                                             not isinstance(raw, str) else raw)
    variants: Mapping[str, Sequence[str]] = study.get("variants") or {"default": []}
    base = [o for o in task_overrides if not o.startswith("seed=")]
    specs = []
    for name, overrides in variants.items():
        for seed in seeds:
            try:
                sub = compose(config_name="config", overrides=[*base, *list(overrides), f"seed={seed}", "study=null"])
                specs.append(from_config(plain_config(sub)))
            except ConfigError as exc:
                raise ConfigError(f"study variant {name!r}: {exc}") from exc
            except (HydraException, OmegaConfBaseException) as exc:  # bad override in the variant
                raise ConfigError(f"study variant {name!r} {list(overrides)}: {exc}") from exc
    return specs


def execute_specs(specs: Sequence[RunSpec], log: Any = log, on_level: Any = None, progress: Any = None,
                  mlflow_parent: str | None = None, jobs: int = 1) -> list[Any]:
    """Run specs (every one validated before the first trains); failures are recorded, not raised.

    ``jobs`` > 1 runs them on that many worker processes (``prunebench.engine.batch``; a
    study's ``study.jobs``); with an ``on_level`` hook (sweeps) they run in this process.
    ``progress``: a :class:`prunebench.progress.Progress` (made here when the runs ask for one
    with ``trainer.progress``); ``mlflow_parent``: the MLflow run the runs nest under.
    """
    from prunebench.results.store import DONE, RunOutcome, is_finished, lost_results, read_rows, run_dir

    outcomes: list[RunOutcome] = []
    total = len(specs)
    paths = [run_dir(spec.root, spec.run_id) for spec in specs]
    if all(is_finished(p) for p in paths):
        # Nothing to do: every run is finished. Found without importing torch or Lightning
        # (identity is computed from the typed spec and the packaged configs).
        for i, (spec, path) in enumerate(zip(specs, paths, strict=True), start=1):
            log(f"[{i}/{total}] {spec.describe()}: finished before, skipped ({spec.run_id})")
            outcomes.append(RunOutcome(spec.run_id, path, read_rows(path), True, "ok"))
        return outcomes
    from prunebench.engine import batch

    pending = {s.run_id for s, p in zip(specs, paths, strict=True) if not is_finished(p)}
    parallel = jobs > 1 and on_level is None and len(pending) > 1
    objects: list[Any] = []
    if parallel:
        import pickle

        from prunebench.api import registered_objects

        objects = registered_objects({n for s in specs for n in (s.model.name, s.data.name)})
        try:
            blob = pickle.dumps(objects)
            # A class or function defined in a notebook or script (``__main__``) pickles by
            # reference, but a worker's ``__main__`` is another module: it could not load it.
            if b"__main__" in blob:
                raise pickle.PicklingError("it refers to classes or functions defined in __main__ (a notebook or "
                                           "script); define them in an importable module to use workers")
        except Exception as exc:  # noqa: BLE001 - any pickling failure
            parallel = False
            log(f"study.jobs={jobs}: the model or data object cannot be sent to worker processes "
                f"({type(exc).__name__}: {exc}); the runs go one after another")
    own_progress = progress is None and bool(specs) and specs[0].trainer.progress
    # The workers start first: their imports (torch, Lightning) overlap this process's own and
    # the preflight below.
    pool = batch.Pool(min(jobs, len(pending)), specs[0].trainer.threads, objects,
                      bool(own_progress) or progress is not None) if parallel else None
    try:
        from prunebench.engine.loop import Run

        if own_progress:
            from prunebench.progress import PoolProgress, Progress

            progress = PoolProgress(total_runs=total) if parallel else Progress(total_runs=total)
        if mlflow_parent is None and specs and specs[0].logger.get("name") == "mlflow" and total > 1:
            from prunebench.loggers import mlflow_parent_run

            mlflow_parent = mlflow_parent_run(specs[0].logger, specs[0].experiment or "study",
                                              Path(specs[0].root) / "logs" / "mlflow")
        runs = [Run(spec, log, on_level, progress=None if parallel else progress, mlflow_parent=mlflow_parent)
                for spec in specs]
        # Preflight every run before the first one trains: a bad variant (missing data, corrupt
        # checkpoint, invalid combination, optimizer argument, damaged results of a finished run)
        # must not surface an hour in.
        prepared: set[str] = set()
        for r in runs:
            lost = lost_results(r.path)
            if lost is not None and r.spec.run_id not in prepared:  # never silent: named, then redone
                log(f"warning: run {r.spec.run_id} is marked finished (DONE) but {lost}: it will be redone from "
                    f"its last intact level")
                r.prepare()
                prepared.add(r.spec.run_id)
            elif (r.path / DONE).exists():
                read_rows(r.path)  # a finished run's rows must be sound to be reused
            elif r.spec.run_id not in prepared:
                r.prepare()
                prepared.add(r.spec.run_id)
        if pool is not None:
            return batch.execute_parallel(runs, jobs, log, progress, objects, mlflow_parent, pool=pool)
        return batch.execute_sequential(runs, total, log, progress, outcomes)
    finally:
        if pool is not None:
            pool.close(kill=True)  # after a failed preflight (execute_parallel closed it otherwise)
        if own_progress and progress is not None:
            progress.close()


def summarise(outcomes: Sequence[Any], seconds: float) -> tuple[str, int]:
    """The closing line and the exit status of a batch of runs."""
    trained = sum(not o.skipped for o in outcomes)
    by_status: dict[str, int] = {}
    for o in outcomes:
        by_status[o.status] = by_status.get(o.status, 0) + 1
    failed = by_status.get("failed", 0)
    extra = "".join(f", {n} {s}" for s, n in sorted(by_status.items()) if s != "ok")
    line = (f"{len(outcomes)} run(s): {trained} trained, {len(outcomes) - trained} skipped{extra}; "
            f"{seconds:.1f}s")
    return line, 1 if failed else 0


def run_config(cfg: Any) -> float | dict[str, float] | None:
    """Run what ``cfg`` describes (one run or a study); return the objective for sweepers.

    A trial of an Optuna sweep (``cfg.optuna`` set by the sweeper) returns the final
    level's validation metrics by name and tells its study the outcome itself.
    """
    from hydra.core.hydra_config import HydraConfig

    from prunebench.sweep.common import plain_config

    if cfg.get("optuna"):
        from prunebench.sweep.trial import run_trial

        return run_trial(plain_config(cfg), lambda: [from_config(plain_config(cfg))], execute_specs)

    try:
        hc = HydraConfig.get()
        task_overrides = list(hc.overrides.task)
        multirun = str(hc.mode) == "RunMode.MULTIRUN"
    except ValueError:
        task_overrides, multirun = [], False
    start = time.perf_counter()
    specs = expand_study(cfg, task_overrides) if cfg.get("study") else [from_config(plain_config(cfg))]
    if cfg.get("experiment_name") and cfg.get("claims"):
        # The claims this experiment reproduces, snapshotted beside its runs for the report.
        from prunebench import claims

        claims.write_claims(specs[0].root, str(cfg.experiment_name), plain_config(cfg).get("claims"))
    jobs = 1
    if cfg.get("study"):
        from prunebench.engine.batch import resolve_jobs

        jobs = resolve_jobs(cfg.study.get("jobs", "auto"), specs[0].trainer.threads)
    outcomes = execute_specs(specs, jobs=jobs)
    line, status = summarise(outcomes, time.perf_counter() - start)
    log(line)
    if cfg.get("report", True) and not multirun:
        from prunebench.report import write_report

        write_report(specs[0].root, formats=list(cfg.get("report_formats") or ["png"]))
    if status:
        if multirun:  # the sweeper counts this job as failed (its rows say why) and exits 1 at the end
            raise RuntimeError(line)
        sys.exit(status)
    last = outcomes[-1].rows if outcomes else None
    if last is None or not len(last):
        return None
    val = last["val_acc"].iloc[-1]
    return None if val != val else float(val)


def _task(cfg: Any) -> float | dict[str, float] | None:
    global _STARTED
    _STARTED = True
    try:
        return run_config(cfg)
    except ConfigError as exc:
        # Bad input: one clear line, no traceback, exit status 2 (before anything trained).
        log(f"error: {exc}")
        sys.exit(2)


def compose(overrides: Sequence[str]) -> Any:
    """The config composed from ``overrides`` (Hydra's compose API on prunebench's configs)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    init = (initialize_config_module(config_module="prunebench.conf", version_base="1.3")
            if CONF_DIR.startswith("pkg://") else initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"))
    with init:
        return hydra_compose(config_name="config", overrides=list(overrides))


def unknown_key_message(overrides: Sequence[str]) -> str | None:
    """Our message for an override of a key the config does not have (Hydra's suggests a ``+``,
    which would only add a key the typed options then reject): the key and the valid ones."""
    plain = [o for o in overrides if "=" in o and not o.startswith(("+", "~", "-")) and "/" not in o.split("=")[0]]
    for o in plain:
        key = o.split("=", 1)[0]
        if key.startswith("hydra.") or "." not in key and key in ("data", "model", "pruning", "schedule", "retrain",
                                                                      "trainer", "paths", "experiment", "sweep"):
            continue
        try:
            cfg = compose([x for x in overrides if x != o])
        except Exception:  # noqa: BLE001 - another override is at fault; try the next
            continue
        node: Any = cfg
        parts = key.split(".")
        for i, part in enumerate(parts):
            if not hasattr(node, "keys") or part not in node:
                parent = ".".join(parts[:i])
                valid = sorted(str(k) for k in node.keys()) if hasattr(node, "keys") else []
                where = f" of {parent}" if parent else ""
                return f"{key} is not a config key; valid keys{where}: {', '.join(valid)}"
            node = node[part]
    return None


def parse_overrides(args: Sequence[str]) -> list[str]:
    """Parse the command-line overrides with Hydra's grammar before Hydra runs; return every
    ``paths.root`` value (each value of a ``-m`` sweep). ConfigError, one line with a hint, for
    an override Hydra cannot parse (an unquoted unicode or special character) or one without
    a key (``=0.5``)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    roots: list[str] = []
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue  # flags (-m, --cfg job, -cn NAME) and their values
        shown = arg
        if "://" in arg:  # a storage URL: never print its password
            from prunebench.sweep.settings import redact

            shown = redact(arg)
        try:
            override = parser.parse_overrides([arg])[0]
        except HydraException as exc:
            what = str(exc).strip().splitlines()[0].split(":")[0] if str(exc).strip() else type(exc).__name__
            key, _, value = arg.partition("=")
            example = f"'{key}=\"{value}\"'" if "://" not in arg else f"'{key}=\"...\"'"
            raise ConfigError(f"cannot parse the override {shown!r} ({what}); quote the value for Hydra, as in "
                              f"{example}") from None
        if not override.key_or_group:
            raise ConfigError(f"the override {shown!r} has no key before '='; write key=value, e.g. "
                              f"schedule.target_sparsity{shown}")
        if override.key_or_group == "paths.root":
            if override.is_sweep_override():
                roots += [str(v) for v in override.sweep_string_iterator()]
            else:
                roots.append(str(override.value()) if override.value() is not None else "")
    return roots


def describe_main(args: Sequence[str]) -> int:
    from prunebench import catalog

    if len(args) != 1 or "/" not in args[0]:
        groups = ", ".join(f"{g}/<name>" for g in catalog.GROUPS)
        log(f"usage: prunebench describe GROUP/NAME  (GROUP/NAME one of: {groups})")
        return 2
    group, name = args[0].split("/", 1)
    try:
        print(catalog.describe(group, name))
    except ConfigError as exc:
        log(f"error: {exc}")
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    import hydra

    global _STARTED
    _STARTED = False
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    if sys.argv[1:2] == ["describe"]:
        sys.exit(describe_main(sys.argv[2:]))
    try:
        # Hydra's own parse errors come as a traceback or a bare "LexerNoViableAltException";
        # and Hydra creates its log folder under paths.root (with -m too) before our code runs.
        roots = parse_overrides(sys.argv[1:])
        if roots:
            from prunebench.paths import check_writable_root

            for root in roots:
                check_writable_root(root)
    except ConfigError as exc:
        log(f"error: {exc}")
        sys.exit(2)
    entry = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")(_task)
    try:
        entry()
    except SystemExit as exc:
        # Hydra reports a bad command line (unknown group option, parse error) and exits 1
        # before our task runs: that is bad input, status 2 as documented.
        if exc.code == 1 and not _STARTED:
            message = unknown_key_message(sys.argv[1:])
            if message:
                log(f"error: {message}")
            sys.exit(2)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
