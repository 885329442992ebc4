"""The Optuna sweep: a persistent study driven through a Hydra launcher.

Flow of one launch (one "worker"; several may share a study, on several machines):

1. Preflight, before any trial: the ``sweep`` settings, the search space, every corner
   of the space composed and validated as a run, the objectives, the storage.
2. Open (or continue) the study in ``sweep.storage`` (SQLite under ``paths.root`` by
   default). Objectives and directions must match a continued study.
3. Loop: under a lock held in the study's database, fail stale trials (their heartbeat
   stopped: a killed launch), count the trials that did not fail, and ask for as many as
   are missing to reach ``sweep.n_trials`` (at most ``sweep.n_jobs`` at a time; retried
   trials waiting in the queue first). Launch them as Hydra jobs; each job reports its
   levels, may be pruned, and tells the study its outcome. A job that died without
   telling is marked failed here. When nothing is missing but other workers' trials
   still run, wait for them (a stale one is failed and retried after ``grace_period``).
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from prunebench.errors import ConfigError
from prunebench.sweep.locks import study_lock
from prunebench.sweep.settings import LATENCY_COLUMNS, SweepSettings, redact
from prunebench.sweep.space import SearchSpace, format_value

Launch = Callable[[list[list[str]], int], Sequence[Any]]
Logger = Callable[[str], None]
FINISHED_OK = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class SweepSummary:
    study_name: str
    storage: str
    launched: int = 0
    states: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.states.items())) or "no trials"
        return (f"study {self.study_name!r} ({redact(self.storage)}): {states}; "
                f"{self.launched} trial(s) launched by this process")


class _Heartbeats:
    """Heartbeats for the trials this process has asked for and not yet seen finish.

    The job heartbeats its trial too; this covers the seconds before it starts (process
    spawn, imports) and jobs that queue on a cluster.
    """

    def __init__(self, storage: Any, interval: int) -> None:
        self.storage, self.interval = storage, interval
        self.ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sweep-heartbeats", daemon=True)
        self._thread.start()

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self.ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self.ids.discard(trial_id)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                ids = list(self.ids)
            for tid in ids:
                try:
                    self.storage.record_heartbeat(tid)
                except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _has_heartbeat(storage: Any, trial_id: int) -> bool:
    """Whether ``trial_id`` has a heartbeat row (Optuna's RDB storage; any other: assume not)."""
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        backend = getattr(storage, "_backend", storage)  # optuna's cache wrapper, if any
        with _create_scoped_session(backend.scoped_session) as session:
            return models.TrialHeartbeatModel.where_trial_id(trial_id, session) is not None
    except Exception:  # noqa: BLE001 - another storage or Optuna version: one extra beat is harmless
        return False


class StudyDriver:
    """Ask, launch, reconcile until the study holds ``n_trials`` trials that did not fail."""

    def __init__(self, settings: SweepSettings, space: SearchSpace, launch: Launch, log: Logger,
                 poll_seconds: float | None = None) -> None:
        self.s = settings
        self.space = space
        self.launch = launch
        self.log = log
        self.poll = poll_seconds if poll_seconds is not None else min(settings.heartbeat_interval, 5)
        self.storage = settings.make_storage()
        self.study: optuna.Study | None = None
        self._running_elsewhere = 0
        self._adopted: set[int] = set()  # RUNNING trials of others already checked for a heartbeat
        self.total = settings.n_trials
        if settings.sampler_name == "grid":
            grid = space.grid()
            size = 1
            for values in grid.values():
                size *= len(values)
            if size < self.total:
                self.log(f"grid sampler: the grid has {size} point(s); n_trials={self.total} capped at {size}")
                self.total = size

    # ---- study ---------------------------------------------------------------------------
    def open_study(self) -> optuna.Study:
        s = self.s
        with study_lock(self.storage, s.storage, s.study_name), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.create_study(storage=self.storage, study_name=s.study_name, directions=list(s.directions),
                                        pruner=s.make_pruner(), load_if_exists=True)
            have = [d.name.lower() for d in study.directions]
            if have != list(s.directions):
                raise ConfigError(f"study {s.study_name!r} in {redact(s.storage)} was created with directions "
                                  f"{have}; this sweep asks for {list(s.directions)} (objectives "
                                  f"{list(s.objectives)}): choose another sweep.study_name")
            names = study.metric_names
            if names is None:
                study.set_metric_names(list(s.objectives))
            elif list(names) != list(s.objectives):
                raise ConfigError(f"study {s.study_name!r} optimises {list(names)}; this sweep asks for "
                                  f"{list(s.objectives)}: choose another sweep.study_name")
            self._record_study_attrs(study)
            space = {p.name: p.expression for p in self.space.params}
            before = study.user_attrs.get("search_space")
            if before is None:
                study.set_user_attr("search_space", space)
                study.set_user_attr("objectives", list(s.objectives))
            elif before != space:
                self.log(f"note: the search space differs from the one study {s.study_name!r} began with "
                         f"({before}); Optuna keeps both kinds of trials")
            n_existing = len(study.get_trials(deepcopy=False))
        # A fixed seed is shifted by the trials already there, so a relaunch draws new points.
        study.sampler = s.make_sampler(self.space, offset=n_existing)
        self.study = study
        return study

    def _record_study_attrs(self, study: optuna.Study) -> None:
        """Constraints and reference point as study attributes: the report and the dashboard read them."""
        s = self.s
        if s.constraints:
            study.set_user_attr("constraints", [c.expression for c in s.constraints])
        if s.reference_point is not None:
            study.set_user_attr("reference_point", list(s.reference_point))

    # ---- loop ----------------------------------------------------------------------------
    def _ask(self, study: optuna.Study, beats: _Heartbeats) -> list[optuna.Trial]:
        """Under the study lock: fail stale trials, then ask for what the budget still allows."""
        with study_lock(self.storage, self.s.storage, self.s.study_name), warnings.catch_warnings():
            # Heartbeats with ask/tell are what this driver is for: silence Optuna's notes.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            self._adopt_silent(trials, beats)
            counts = Counter(t.state for t in trials)
            held = sum(counts[st] for st in (*FINISHED_OK, TrialState.RUNNING, TrialState.WAITING))
            if self.s.sampler_name == "grid":
                # A grid point is tried once: a failed one (not queued for retry) is done too,
                # else an exhausted grid would redraw it until max_failures.
                retried = {t.system_attrs.get("failed_trial") for t in trials}
                held += sum(t.state == TrialState.FAIL and t.number not in retried for t in trials)
            want = max(self.total - held, 0) + counts[TrialState.WAITING]
            asked = []
            for _ in range(min(self.s.n_jobs, want)):
                trial = study.ask(fixed_distributions=self.space.distributions)
                beats.add(trial._trial_id)  # at once: a trial without any heartbeat never goes stale
                asked.append(trial)
            self._running_elsewhere = counts[TrialState.RUNNING]
            return asked

    def _adopt_silent(self, trials: Sequence[optuna.trial.FrozenTrial], beats: _Heartbeats) -> None:
        """Give a RUNNING trial that never beat one heartbeat, so that it can go stale.

        A launch killed between ``study.ask`` and its first heartbeat leaves a RUNNING trial
        with no heartbeat row, which Optuna never judges stale: every later launch would wait
        for it forever. One beat recorded here starts its clock; a live owner keeps beating
        it, a dead one's trial is failed (and retried) ``grace_period`` later.
        """
        for t in trials:
            if t.state != TrialState.RUNNING or t._trial_id in beats.ids or t._trial_id in self._adopted:
                continue
            self._adopted.add(t._trial_id)
            if not _has_heartbeat(self.storage, t._trial_id):
                self.storage.record_heartbeat(t._trial_id)
                self.log(f"trial {t.number} is running without a heartbeat (a launch killed as it began?): "
                         f"failed and retried if it stays silent for {self.s.grace_period or 2 * self.s.heartbeat_interval}s")

    def trial_overrides(self, trial: optuna.Trial) -> list[str]:
        node = (f"optuna={{study_name:{format_value(self.s.study_name)},number:{trial.number},"
                f"trial_id:{trial._trial_id}")
        if self.s.is_sqlite:  # an absolute path, no secret: pin it (a job's cwd may differ)
            node += f",storage:{format_value(self.s.storage)}"
        return [*self.space.overrides(trial.params), node + "}"]

    def run(self) -> SweepSummary:
        study = self.study or self.open_study()
        s = self.s
        summary = SweepSummary(s.study_name, s.storage)
        self.log(f"study {s.study_name!r} in {redact(s.storage)}: {len(study.trials)} trial(s) so far; "
                 f"running until {self.total} have not failed (sweep.n_trials is a total), "
                 f"{s.n_jobs} at a time; objectives {list(s.objectives)} {list(s.directions)}; "
                 f"sampler {'%s (%s)' % s.resolve_sampler(self.space)}, pruner {s.pruner}"
                 + (f"; constraints {[c.expression for c in s.constraints]}" if s.constraints else ""))
        beats = _Heartbeats(self.storage, s.heartbeat_interval)
        failures, job_idx, waited = 0, 0, False
        max_failures = s.max_failures if s.max_failures is not None else max(self.total, 1)
        try:
            while True:
                asked = self._ask(study, beats) if failures < max_failures else []
                if not asked:
                    if failures >= max_failures:
                        self.log(f"stopping: {failures} trial(s) failed in this launch (sweep.max_failures={max_failures})")
                        break
                    if self._running_elsewhere == 0:
                        break
                    if not waited:
                        grace = s.grace_period or 2 * s.heartbeat_interval
                        self.log(f"waiting for {self._running_elsewhere} trial(s) running elsewhere (other workers, or "
                                 f"left by a killed launch: failed and retried once silent for {grace}s)")
                        waited = True
                    time.sleep(self.poll)
                    continue
                waited = False
                batch = [self.trial_overrides(t) for t in asked]
                for t, ov in zip(asked, batch):
                    shown = ", ".join(f"{k}={format_value(v)}" for k, v in t.params.items())
                    self.log(f"trial {t.number}: {shown}")
                try:
                    results: Sequence[Any] = self.launch(batch, job_idx)
                except Exception as exc:  # noqa: BLE001 - e.g. a joblib worker killed by the OOM killer
                    self.log(f"launcher failed: {type(exc).__name__}: {exc}")
                    results = [exc] * len(asked)
                job_idx += len(asked)
                summary.launched += len(asked)
                failures += self._reconcile(study, asked, results, beats)
        finally:
            beats.close()
        summary.states = dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))
        self.log(summary.line())
        self._log_best(study)
        return summary

    def _reconcile(self, study: optuna.Study, asked: list[optuna.Trial], results: Sequence[Any],
                   beats: _Heartbeats) -> int:
        """Mark trials whose job ended without telling the study as failed; count failures."""
        from prunebench.sweep.common import job_error

        failures = 0
        by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
        for trial, ret in zip(asked, results):
            beats.discard(trial._trial_id)
            frozen = by_number.get(trial.number)
            if frozen is not None and frozen.state == TrialState.RUNNING:
                reason = (f"{type(ret).__name__}: {ret}" if isinstance(ret, BaseException) else job_error(ret)) \
                    or "the job ended without telling the study"
                self.storage.set_trial_user_attr(trial._trial_id, "status", "failed")
                self.storage.set_trial_user_attr(trial._trial_id, "error", reason[:2000])
                study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
                self.log(f"trial {trial.number} failed: {reason}")
                failures += 1
            elif frozen is not None and frozen.state == TrialState.FAIL:
                failures += 1
        return failures

    def _log_best(self, study: optuna.Study) -> None:
        from prunebench.sweep.constraints import best_feasible

        done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not done:
            return
        best = best_feasible(done, self.s.directions)
        what = "feasible " if self.s.constraints else ""
        if self.s.constraints:
            self.log(f"constraints {[c.expression for c in self.s.constraints]}: "
                     f"{sum(t.user_attrs.get('feasible', True) is not False for t in done)} of {len(done)} "
                     f"complete trial(s) feasible")
        if not best:
            self.log("no feasible complete trial")
        elif self.s.multi_objective:
            self.log(f"Pareto front{' (feasible trials)' if what else ''}: {len(best)} trial(s): " + "; ".join(
                f"#{t.number} " + ", ".join(f"{o}={v:.4g}" for o, v in zip(self.s.objectives, t.values))
                for t in sorted(best, key=lambda t: t.values[0])))
        else:
            b = best[0]
            self.log(f"best {what}trial #{b.number}: {self.s.objectives[0]}={b.value:.4g} params {b.params}")


def preflight(settings: SweepSettings, space: SearchSpace, validate: Callable[[list[str]], Any]) -> int:
    """Validate everything a trial will need before the first one runs; return corners checked.

    ``validate(overrides)`` composes one trial's config and returns its RunSpec (raising
    ConfigError for unknown keys, unknown options or bad values).
    """
    settings.make_sampler(space)  # bad sampler/pruner kwargs or a continuous grid fail here
    settings.make_pruner()
    corners = space.corners()
    for corner in corners:
        overrides = space.overrides(corner)
        try:
            spec = validate(overrides)
        except ConfigError as exc:
            where = ", ".join(f"{k}={format_value(v)}" for k, v in corner.items()) or "fixed overrides"
            raise ConfigError(f"search space at ({where}): {exc}") from None
        latency = [o for o in settings.objectives if o in LATENCY_COLUMNS]
        if latency and not spec.metrics.latency:
            raise ConfigError(f"sweep.objectives {latency} need measured latency, but metrics.latency=false")
        latency_c = [c.expression for c in settings.constraints if c.column in LATENCY_COLUMNS]
        if latency_c and not spec.metrics.latency:
            raise ConfigError(f"sweep.constraints {latency_c} need measured latency, but metrics.latency=false")
    return len(corners)
