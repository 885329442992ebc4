"""What the Hydra sweeper plugins do (hydra_plugins/prunebench_sweepers keeps only the classes).

* :func:`optuna_sweep` — ``sweep=optuna_*``: a persistent Optuna study (see driver.py).
* :func:`grid_sweep` — ``sweep=grid_*``: Hydra's cartesian product, but every job's config
  is validated before the first one trains, a failing job does not end the sweep, runs
  finished before are counted up front (and skipped), and the report is written at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from prunebench.errors import ConfigError
from prunebench.results.store import is_finished, read_rows, run_dir
from prunebench.results.validate import ResultsError
from prunebench.sweep.common import clean_errors, compose_spec, job_error, log, make_launcher, plain_config


#: Writes the report of a results root (the plugins pass prunebench.report.write_report: the
#: sweep layer sits below the report and does not import it).
ReportWriter = Callable[[str], Any]


def _report(config: DictConfig, write_report: ReportWriter | None) -> None:
    if not config.get("report", True) or write_report is None:
        return
    try:
        write_report(str(config.paths.root))
    except Exception as exc:  # noqa: BLE001 - a figure failing must not fail a finished sweep
        log(f"report failed: {type(exc).__name__}: {exc}")


def optuna_sweep(hydra_context: Any, task_function: Any, config: DictConfig, arguments: list[str],
                 write_report: ReportWriter | None = None) -> Any:
    """Validate, then run the Optuna study of ``config.sweep`` until it holds ``n_trials`` trials."""
    from prunebench.sweep.driver import StudyDriver, preflight
    from prunebench.sweep.settings import SweepSettings
    from prunebench.sweep.space import parse_space

    with clean_errors():
        plain = plain_config(config)
        settings = SweepSettings.from_config(plain.get("sweep"), plain["paths"]["root"])
        space = parse_space(settings.params, arguments)
        if not space.params:
            raise ConfigError("the search space is empty: give sweep.params or command-line sweeps such as "
                              "'retrain.lr=tag(log,interval(1e-4,1e-2))'")
        def trial_spec(overrides: list[str]) -> Any:
            cfg, spec = compose_spec(hydra_context.config_loader, config, overrides)
            if cfg.get("study"):
                raise ConfigError("a trial is one run, but this config is an in-process study "
                                  "(experiment=... with study:); drop the experiment or set study=null")
            return spec

        n = preflight(settings, space, trial_spec)
        log(f"search space ok ({n} corner config(s) validated): "
            + "; ".join(f"{p.name}={p.expression}" for p in space.params))
        launcher = make_launcher(hydra_context, task_function, config, settings.n_jobs)
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        driver = StudyDriver(settings, space, lambda batch, idx: launcher.launch(batch, initial_job_idx=idx), log)
        driver.open_study()
    summary = driver.run()
    _report(config, write_report)
    return summary


def grid_sweep(sweeper: Any, arguments: list[str], write_report: ReportWriter | None = None) -> list[Any]:
    """Hydra's grid (``hydra.sweeper.params`` × command-line sweeps), fault-tolerant and preflighted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    config: DictConfig = sweeper.config
    loader = sweeper.hydra_context.config_loader
    with clean_errors():
        parser = OverridesParser.create(config_loader=loader)
        lines = [f"{k}={v}" for k, v in (sweeper.params or {}).items()] + list(arguments)
        overrides = parser.parse_overrides(lines)
        batches = sweeper.split_arguments(overrides, sweeper.max_batch_size)
        jobs = [job for batch in batches for job in batch]
        # Preflight: every job's config must compose and validate before anything trains.
        errors, run_ids, todo = [], [], []
        for job in jobs:
            try:
                cfg, spec = compose_spec(loader, config, job)
            except ConfigError as exc:
                errors.append(f"[{' '.join(job)}] {exc}")
                continue
            if cfg.get("study"):
                todo.append(job)  # an in-process study expands into its runs inside the job
                continue
            # Jobs that differ only in keys outside the run's identity are one run: launch it once.
            path = run_dir(spec.root, spec.run_id)
            finished = is_finished(path)  # a finished run whose rows are lost is launched again
            if finished:
                try:  # a finished run counts only if its results read back sound
                    read_rows(path)
                except ResultsError as exc:
                    errors.append(f"[{' '.join(job)}] {exc}")
                    continue
            if spec.run_id not in run_ids and not finished:
                todo.append(job)
            run_ids.append(spec.run_id)
        if errors:
            more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
            raise ConfigError(f"{len(errors)} of {len(jobs)} grid job(s) are invalid, nothing was run: "
                              + "; ".join(errors[:3]) + more)
        # Runs are content-addressed: a finished one is not even launched (no process, no
        # cluster job); an interrupted one is launched and resumes from its last level.
        log(f"grid: {len(jobs)} job(s), {len(set(run_ids))} distinct run(s), "
            f"{len(jobs) - len(todo)} finished before or duplicate (not launched), {len(todo)} to run")
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    size = sweeper.max_batch_size or max(len(todo), 1)
    returns: list[Any] = []
    failed: list[str] = []
    for start in range(0, len(todo), size):
        batch = todo[start:start + size]
        results = sweeper.launcher.launch(batch, initial_job_idx=start)
        returns.append(results)
        for job, r in zip(batch, results):
            err = job_error(r)
            if err:  # recorded and reported; the other jobs go on
                failed.append(f"[{' '.join(job)}] {err}")
    log(f"grid: {len(todo)} job(s) run, {len(failed)} failed" + ("".join(f"\n  {f}" for f in failed)))
    _report(config, write_report)
    if failed:  # recorded in the runs' rows; the launch still says so (exit status 1)
        import sys

        sys.exit(1)
    return returns


