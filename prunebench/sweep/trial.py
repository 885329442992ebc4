"""Job side of an Optuna sweep: one trial = one prunebench run.

The sweeper launches each trial as a Hydra job with ``optuna={study_name, number,
trial_id}``. The job (``prunebench.cli.run_config`` → :func:`run_trial`):

* keeps the trial alive with heartbeats (a killed job's trial goes stale, is marked
  failed by the next launch and retried there);
* reports each finished level's objective to the trial as an intermediate value
  (step = level) and stops the run when the study's pruner says so (status ``pruned``);
* tells the study the outcome itself: COMPLETE with the final level's validation
  metrics, PRUNED, or FAIL with the run's status (``failed`` / ``diverged``) and reason
  as trial user attributes. Doing this in the job (not in the sweeper) means a result is
  recorded even if the sweeper process dies while its jobs run on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from prunebench.errors import ConfigError
from prunebench.results.store import DONE, read_rows, run_dir, run_lock
from prunebench.spec import RunSpec
from prunebench.sweep.settings import OBJECTIVES, SweepSettings, finite

#: Row columns copied to the trial's user attributes (test accuracy is shown, never optimised).
ATTR_COLUMNS = (*OBJECTIVES, "test_acc", "target_sparsity", "level")


class LevelPruned(optuna.TrialPruned):
    """Raised from the level hook when the pruner stops a trial; recorded as status ``pruned``."""

    run_status = "pruned"  # read by prunebench.engine.batch.execute_specs


from prunebench.log import log as _log  # noqa: E402


class TrialLink:
    """One running trial of a stored study, seen from the job that runs it."""

    def __init__(self, settings: SweepSettings, storage: Any, study: optuna.Study, trial_id: int,
                 log: Callable[[str], None] = _log) -> None:
        self.settings = settings
        self.storage = storage
        self.study = study
        self.trial_id = trial_id
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.trial = optuna.trial.Trial(study, trial_id)
        self.log = log
        self.last_level = 0
        self._reported: set[int] = set()

    @classmethod
    def open(cls, settings: SweepSettings, node: Mapping[str, Any], log: Callable[[str], None] = _log) -> TrialLink:
        """Attach to trial ``node['trial_id']`` of study ``node['study_name']``."""
        for key in ("study_name", "trial_id"):
            if node.get(key) is None:
                raise ConfigError(f"optuna.{key} is missing: trials are launched by the sweeper "
                                  f"(sweep=optuna_pareto / sweep=optuna_accuracy)")
        storage = settings.make_storage(stale_retry=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # The sampler is never used here (the sweeper samples): a RandomSampler keeps
            # constructing the Trial object cheap. The pruner must be the study's own.
            study = optuna.load_study(study_name=str(node["study_name"]), storage=storage,
                                      sampler=optuna.samplers.RandomSampler(), pruner=settings.make_pruner())
        return cls(settings, storage, study, int(node["trial_id"]), log)

    @property
    def running(self) -> bool:
        return self.storage.get_trial(self.trial_id).state == optuna.trial.TrialState.RUNNING

    @contextlib.contextmanager
    def heartbeat(self) -> Iterator[None]:
        """Record a heartbeat now and every ``heartbeat_interval`` seconds while the block runs."""
        storage, trial_id = self.storage, self.trial_id
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.settings.heartbeat_interval):
                with contextlib.suppress(Exception):  # a missed beat is retried next interval
                    storage.record_heartbeat(trial_id)

        storage.record_heartbeat(trial_id)
        thread = threading.Thread(target=beat, name=f"heartbeat-trial-{self.trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    # ---- intermediate values and pruning -------------------------------------------------
    def report(self, level: int, row: Mapping[str, Any]) -> None:
        metric = self.settings.report_metric
        if metric is None or level in self._reported:
            return
        value = row.get(metric)
        if finite(value):
            self.trial.report(float(value), step=int(level))
            self._reported.add(int(level))

    def report_rows(self, rows: pd.DataFrame) -> None:
        """Report levels finished before this job started (a resumed or skipped run)."""
        ok = rows[rows["status"].fillna("ok") == "ok"] if len(rows) else rows
        for _, row in ok.sort_values("level").iterrows():
            self.report(int(row["level"]), row.to_dict())

    def on_level(self, level: int, row: dict[str, Any]) -> None:
        """LevelHook: report the level; raise LevelPruned if the pruner stops the trial."""
        self.report(level, row)
        metric = self.settings.report_metric
        # Pruning after the last level saves nothing: let the trial complete.
        if metric is not None and level < self.last_level and self.trial.should_prune():
            raise LevelPruned(f"pruned by the {self.settings.pruner} pruner after level {level} "
                              f"({metric}={row.get(metric)})")

    # ---- outcome -------------------------------------------------------------------------
    def set_attrs(self, attrs: Mapping[str, Any]) -> None:
        for k, v in attrs.items():
            if v is None or (isinstance(v, float) and not finite(v)):
                continue
            self.trial.set_user_attr(k, v.item() if hasattr(v, "item") else v)

    def fail(self, status: str, reason: str, run_id: str | None = None) -> None:
        """Tell the study the trial failed (``status``: failed / diverged) with its reason."""
        self.set_attrs({"status": status, "error": reason[:2000], "run_id": run_id})
        self.study.tell(self.trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        self.log(f"trial {self.trial.number} {status}: {reason}")

    def finish(self, run_path: Path) -> dict[str, float] | None:
        """Tell the study what the run's rows say; return the final validation metrics."""
        rows = read_rows(run_path)
        run_id = run_path.name
        if not len(rows):
            self.fail("failed", "the run recorded no rows", run_id)
            return None
        status = rows["status"].fillna("ok")
        bad = rows[status != "ok"].sort_values("level")
        final = rows.sort_values("level").iloc[-1].to_dict()
        if (status == "pruned").any():
            row = bad[bad["status"] == "pruned"].iloc[-1]
            self.set_attrs({"status": "pruned", "error": row.get("error"), "run_id": run_id})
            self.study.tell(self.trial.number, state=optuna.trial.TrialState.PRUNED, skip_if_finished=True)
            self.log(f"trial {self.trial.number} pruned: {row.get('error')}")
            return None
        if len(bad):
            row = bad.iloc[-1]
            self.fail(str(row["status"]), str(row.get("error") or "see error.txt in the run folder"), run_id)
            return None
        if not (run_path / DONE).exists():
            self.fail("failed", "the run stopped before its last level", run_id)
            return None
        values = [final.get(o) for o in self.settings.objectives]
        missing = [o for o, v in zip(self.settings.objectives, values) if not finite(v)]
        if missing:
            self.fail("failed", f"objective(s) {missing} have no finite value in the final row "
                                f"(latency objectives need metrics.latency=true)", run_id)
            return None
        metrics = {c: float(final[c]) for c in ATTR_COLUMNS if c in final and finite(final[c])}
        feasible = self.set_constraints(final, run_id)
        if feasible is None:
            return None
        self.set_attrs({"status": "ok", "run_id": run_id, **metrics})
        self.study.tell(self.trial.number, values=[float(v) for v in values], skip_if_finished=True)
        shown = ", ".join(f"{o}={float(v):.4g}" for o, v in zip(self.settings.objectives, values))
        note = "" if not self.settings.constraints else (" feasible" if feasible else " INFEASIBLE")
        self.log(f"trial {self.trial.number} complete: {shown}{note} (run {run_id})")
        return {c: v for c, v in metrics.items() if c in OBJECTIVES}


    def set_constraints(self, final: Mapping[str, Any], run_id: str) -> bool | None:
        """Optuna 5's per-trial constraints from the final row (``sweep.constraints``).

        Returns whether the trial is feasible (True when there are no constraints), or None
        after failing the trial because a constrained column has no value.
        """
        from prunebench.sweep.constraints import evaluate

        if not self.settings.constraints:
            return True
        try:
            violations = evaluate(self.settings.constraints, final)
        except ValueError as exc:
            self.fail("failed", f"{exc} (latency constraints need metrics.latency=true)", run_id)
            return None
        for expression, value in violations.items():
            self.trial.set_constraint(expression, value)
        feasible = all(v <= 0 for v in violations.values())
        self.set_attrs({"feasible": feasible, "constraints": violations})
        return feasible


def run_trial(cfg: Mapping[str, Any], build_specs: Callable[[], Sequence[RunSpec]],
              execute: Callable[..., Any], log: Callable[[str], None] = _log) -> dict[str, float] | None:
    """Run the one run of an Optuna trial (``cfg["optuna"]`` set) and tell the study its outcome.

    ``cfg`` is the job's composed config as plain containers (Hydra stays in the CLI).

    Never raises for a failing run: the trial is told FAIL with the reason and the sweep
    goes on. Bad input that the sweeper's preflight missed is a failed trial too.
    """
    node = dict(cfg["optuna"])
    settings = SweepSettings.from_config(cfg.get("sweep"), cfg["paths"]["root"])
    if node.get("storage"):
        settings = dataclasses.replace(settings, storage=str(node["storage"]))
    link = TrialLink.open(settings, node, log)
    if not link.running:
        log(f"trial {link.trial.number} is no longer running in study {settings.study_name!r}; nothing to do")
        return None
    with link.heartbeat():
        try:
            specs = list(build_specs())
            if len(specs) != 1:
                raise ConfigError(f"an Optuna trial runs exactly one run, this config describes {len(specs)} "
                                  f"(drop experiment=/study= from the sweep)")
            spec = specs[0]
            path = run_dir(spec.root, spec.run_id)
            link.last_level = len(spec.schedule.levels())
            link.set_attrs({"run_id": spec.run_id})
            # Two trials that sample the same point share one run folder: take turns (the
            # run lock is the loop's own: nested in this process, a wait across processes).
            with run_lock(path, owner=f"optuna trial {link.trial.number} of {settings.study_name}", wait=True,
                          on_wait=lambda h: log(f"trial {link.trial.number}: run {spec.run_id} is in use by "
                                                f"{h.describe() if h else 'another process'}; waiting")):
                link.report_rows(read_rows(path))
                execute([spec], on_level=link.on_level)
                return link.finish(path)
        except Exception as exc:  # bad input or a crash outside the run: a failed trial, not a dead sweep
            link.fail("failed", f"{type(exc).__name__}: {exc}")
            return None
