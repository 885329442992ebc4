"""Batches of runs: one after another, or a study's runs on a pool of worker processes.

``execute_batch`` runs prepared :class:`~prunebench.engine.loop.Run` objects. With
``jobs`` > 1 (``study.jobs``; ``auto``: the usable cores divided by ``trainer.threads``)
they go to that many worker processes:

* **Order.** A dense model that several pending runs share is trained first, by one worker
  (the dense cache's file lock already keeps two runs from training it twice; training it
  as its own task keeps the other workers from waiting on that lock). A lottery-ticket
  control (``retrain.branch=true``) starts only after its ticket run has finished.
* **Same files.** A worker executes a run exactly as the sequential loop does (same code,
  same seeding streams, same ``trainer.threads``), so rows, masks and weights are
  bit-identical to a sequential study.
* **Workers never outlive the launcher.** Workers come from a fork server that imported
  torch and the engine once, before any thread started (``forkserver``; ``spawn`` where
  there is none): never forked from the launcher, whose torch threads do not survive a
  fork. They ask the kernel to kill them when their parent dies (``PR_SET_PDEATHSIG``; the
  fork server exits when the launcher does), and exit when the pipe to the launcher closes. Ctrl-C stops them;
  a relaunch finds finished runs done and resumes the others from their last level
  (a killed run's lock names a dead pid and is broken).
* **A failing run fails alone**: its row says ``failed`` and the others go on; a worker that
  dies (out of memory) fails only the run it held, and a fresh worker takes its place.
* **Progress**: each worker reports its run's levels, epochs and steps to the launcher's
  :class:`prunebench.progress.PoolProgress`, which shows every active run.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError
from prunebench.log import log
from prunebench.spec import RunSpec, check_study_seeds, from_config

AUTO = "auto"


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask: a container or ``taskset`` may allow fewer)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not Linux
        return max(os.cpu_count() or 1, 1)


def resolve_jobs(value: Any, threads: int | None) -> int:
    """``study.jobs`` as a number of worker processes: ``auto`` = usable cores // ``trainer.threads``.

    With ``trainer.threads`` unset torch uses every core in one run, so ``auto`` is 1.
    """
    if value is None or value == AUTO:
        per_job = threads if threads else usable_cores()
        return max(usable_cores() // max(int(per_job), 1), 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"study.jobs={value!r} must be a whole number >= 1 or 'auto' (usable cores // "
                          f"trainer.threads)")
    return value


# ---- one run -------------------------------------------------------------------------------------


def execute_one(r: Any, i: int, total: int, log: Any, *, wait: bool) -> Any:
    """Run ``r`` under its run lock; None if another live process holds it and ``wait`` is false."""
    from prunebench.results.lock import LockBusy
    from prunebench.results.store import RunOutcome, is_finished, read_rows, run_lock

    spec = r.spec
    if is_finished(r.path):
        log(f"[{i}/{total}] {spec.describe()}: finished before, skipped ({spec.run_id})")
        return r.execute()

    def waiting(holder: Any) -> None:
        who = holder.describe() if holder is not None else "another process"
        log(f"[{i}/{total}] run {spec.run_id} is being trained by {who}; waiting for it")

    try:
        with run_lock(r.path, owner=f"prunebench {spec.describe()}", wait=wait, on_wait=waiting):
            if is_finished(r.path):
                log(f"[{i}/{total}] {spec.describe()}: finished by another process, skipped ({spec.run_id})")
                return r.execute()
            log(f"[{i}/{total}] {spec.describe()} -> {r.path}")
            try:
                return r.execute()
            except ConfigError:
                raise
            except Exception as exc:  # a failing run is recorded; a study goes on
                # Sweeps: a LevelHook may stop a run on purpose; its exception names the
                # status to record (prunebench.sweep.trial.LevelPruned → "pruned").
                status = str(getattr(exc, "run_status", "failed"))
                r.record_failure(status, f"{type(exc).__name__}: {exc}")
                (r.path / "error.txt").write_text(traceback.format_exc())
                return RunOutcome(spec.run_id, r.path, read_rows(r.path), False, status)
    except LockBusy as busy:
        who = busy.holder.describe() if busy.holder is not None else "another process"
        log(f"[{i}/{total}] run {spec.run_id} is being trained by {who}; deferred to the end")
        return None


def execute_sequential(runs: Sequence[Any], total: int, log: Any, progress: Any, outcomes: list[Any]) -> list[Any]:
    """The runs one after another in this process."""
    # A run another process is working on (run lock held) is deferred, not trained twice: the
    # other runs go first, then this launcher waits for it and finds it finished.
    deferred: list[tuple[int, Any]] = []
    for i, r in enumerate(runs, start=1):
        if progress is not None:
            progress.start_run(i, r.spec.run_id, levels=len(r.spec.schedule.levels()))
        outcome = execute_one(r, i, total, log, wait=False)
        if outcome is None:
            deferred.append((i, r))
        else:
            outcomes.append(outcome)
    for i, r in deferred:
        outcome = execute_one(r, i, total, log, wait=True)
        assert outcome is not None
        outcomes.append(outcome)
    return outcomes


# ---- the pool ------------------------------------------------------------------------------------


@dataclass
class Task:
    """One unit of work for a worker: train a shared dense model, or execute a run."""

    key: str
    kind: str  # "dense" | "run"
    spec: Any
    index: int  # the run's number in the batch (1-based; dense tasks: the first run that needs it)
    deps: list[str] = field(default_factory=list)
    outcome_slot: int | None = None  # position of the run's outcome in the batch's result
    mlflow_parent: str | None = None  # the MLflow run the run nests under


def plan(runs: Sequence[Any]) -> list[Task]:
    """Tasks in launch order: shared dense models, then runs; tickets before their controls.

    A run finished before is not a task (the caller reports it as skipped).
    """
    from prunebench.engine.dense import dense_dir
    from prunebench.results.store import is_finished

    def cached(spec: Any) -> bool:
        d = dense_dir(spec)
        return all((d / f).exists() for f in ("final.pt", "init.pt", "meta.json"))

    tasks: dict[str, Task] = {}
    run_tasks: list[Task] = []
    for slot, r in enumerate(runs):
        if is_finished(r.path) or f"run:{r.spec.run_id}" in tasks:
            continue
        deps = []
        if r.ticket is not None and not is_finished(r.path.parent / r.ticket.run_id):
            key = f"run:{r.ticket.run_id}"
            if key not in tasks and not any(x.spec.run_id == r.ticket.run_id for x in runs):
                tasks[key] = Task(key, "run", r.ticket, slot + 1)  # a ticket the batch does not list
                run_tasks.append(tasks[key])
            deps.append(key)
        t = Task(f"run:{r.spec.run_id}", "run", r.spec, slot + 1, deps, slot)
        tasks[t.key] = t
        run_tasks.append(t)
    # Dense models two or more pending runs need and the cache lacks: trained first.
    users: dict[str, list[Task]] = {}
    for t in run_tasks:
        if not cached(t.spec):
            users.setdefault(f"dense:{t.spec.dense_id}", []).append(t)
    dense = []
    for key, ts in users.items():
        if len(ts) >= 2:
            dense.append(Task(key, "dense", ts[0].spec, ts[0].index))
            for t in ts:
                t.deps.append(key)
    # Tickets' runs first among the runs (their controls wait for them).
    needed = {d for t in run_tasks for d in t.deps if d.startswith("run:")}
    order = {t.key: n for n, t in enumerate(run_tasks)}
    run_tasks.sort(key=lambda t: (t.key not in needed, order[t.key]))
    return dense + run_tasks


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphan worker after a kill -9)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: the pipe's EOF still ends an idle worker
        pass


class RemoteProgress:
    """The worker side of the progress display: :class:`prunebench.progress.Progress`'s calls, sent
    to the launcher over the worker's pipe (steps batched, at most a few messages a second)."""

    def __init__(self, send: Callable[[Any], None], key: str, clock: Callable[[], float] | None = None) -> None:
        import time

        self.send, self.key = send, key
        self.clock = clock or time.monotonic
        self._steps = 0
        self._next = 0.0

    def _emit(self, method: str, *args: Any) -> None:
        self.send(("progress", self.key, method, args))

    def _flush_steps(self) -> None:
        if self._steps:
            self._emit("on_step", self._steps)
            self._steps = 0

    def start_run(self, index: int, run_id: str = "", levels: int = 0) -> None:
        self._emit("start_run", index, run_id, levels)

    def start_level(self, level: int, epochs: int = 0, steps_per_epoch: int = 0) -> None:
        self._flush_steps()
        self._emit("start_level", level, epochs, steps_per_epoch)

    def start_fit(self, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        self._emit("start_fit", epochs, steps_per_epoch)

    def on_step(self, n: int = 1) -> None:
        self._steps += n
        now = self.clock()
        if now >= self._next:
            self._next = now + 0.5
            self._flush_steps()

    def end_fit(self) -> None:
        self._flush_steps()
        self._emit("end_fit")

    def on_epoch(self, epoch: int, val_acc: float | None = None) -> None:
        self._flush_steps()
        self._emit("on_epoch", epoch, val_acc)

    def end_level(self, row: Any = None) -> None:
        self._flush_steps()
        keep = ("val_acc", "sparsity", "test_acc")
        self._emit("end_level", {k: row[k] for k in keep if row and k in row})

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        pass


def _worker(conn: Any, threads: int | None, objects: list[tuple[str, Any, Any]], want_progress: bool) -> None:
    """A worker process: execute the tasks the launcher sends until the pipe closes."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the launcher's to handle: it stops us
    import torch

    if threads:
        torch.set_num_threads(threads)
    # Everything a task needs, imported now (the launcher is still preflighting), not at the first task.
    import prunebench.engine.dense  # noqa: F401
    import prunebench.engine.loop  # noqa: F401
    from prunebench.objects import register_objects

    register_objects(objects)

    def log(msg: str) -> None:
        conn.send(("log", msg))

    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            msg = None  # the launcher is gone
        if msg is None:
            # Nothing is left unsaved (every results file is written atomically): exit now rather
            # than tear torch and Lightning down, which takes seconds on a busy machine.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
        task, total = msg
        progress = RemoteProgress(conn.send, task.key) if want_progress else None
        try:
            result = _execute_task(task, total, log, progress)
        except BaseException as exc:  # noqa: BLE001 - reported to the launcher, the worker goes on
            result = ("error", f"{type(exc).__name__}: {exc}", traceback.format_exc())
        conn.send(("done", task.key, result))


def _execute_task(task: Task, total: int, log: Any, progress: Any) -> Any:
    from prunebench.engine.loop import Run

    r = Run(task.spec, log, progress=progress, mlflow_parent=task.mlflow_parent)
    if task.kind == "dense":
        from prunebench.engine.dense import train_dense

        if progress is not None:
            progress.start_run(task.index, f"dense {task.spec.dense_id}", levels=0)
        r.prepare()
        train_dense(task.spec, r.dm, r.build_net, log)
        return ("ok", None)
    if progress is not None:
        progress.start_run(task.index, task.spec.run_id, levels=len(task.spec.schedule.levels()))
    from prunebench.results.store import is_finished

    if not is_finished(r.path):
        r.prepare()
    try:
        outcome = execute_one(r, task.index, total, log, wait=True)
    except ConfigError as exc:  # found only now (the preflight passed): this run fails, alone
        outcome = _failed(r, f"ConfigError: {exc}")
    return ("outcome", outcome)


def _failed(r: Any, reason: str) -> Any:
    """Record run ``r`` as failed (its own row says why) and return its outcome."""
    from prunebench.results.store import RunOutcome, read_rows

    try:
        r.record_failure("failed", reason)
        rows = read_rows(r.path)
    except Exception:  # noqa: BLE001 - its folder is unusable: the outcome still says failed
        import pandas as pd

        rows = pd.DataFrame()
    return RunOutcome(r.spec.run_id, r.path, rows, False, "failed")


class Pool:
    """``n`` worker processes (forkserver, else spawn), each with a pipe to the launcher."""

    def __init__(self, n: int, threads: int | None, objects: list[tuple[str, Any, Any]], want_progress: bool) -> None:
        import multiprocessing as mp

        # forkserver: one process imports torch and the engine once (before any thread starts) and
        # forks the workers from that; fork in a process that has run torch is not safe.
        if "forkserver" in mp.get_all_start_methods():
            self.ctx = mp.get_context("forkserver")
            self.ctx.set_forkserver_preload(["prunebench.engine.loop", "prunebench.engine.dense", "prunebench.api"])
        else:
            self.ctx = mp.get_context("spawn")
        self.args = (threads, objects, want_progress)
        self.closed = False
        self.workers: list[tuple[Any, Any]] = []  # (process, connection)
        for _ in range(n):
            self.workers.append(self._start())

    def _start(self) -> tuple[Any, Any]:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(target=_worker, args=(child, *self.args), daemon=True, name="prunebench-worker")
        proc.start()
        child.close()
        return proc, parent

    def replace(self, i: int) -> None:
        proc, conn = self.workers[i]
        conn.close()
        proc.join(timeout=5)
        self.workers[i] = self._start()

    def close(self, kill: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        for proc, conn in self.workers:
            if not kill:
                try:
                    conn.send(None)
                except (OSError, BrokenPipeError):
                    pass
            conn.close()
        for proc, _ in self.workers:
            if kill and proc.is_alive():
                proc.kill()
            proc.join(timeout=5)  # an idle worker exits at once (os._exit); a stuck one is ended
            if proc.is_alive():
                proc.kill()
                proc.join()


def execute_parallel(runs: Sequence[Any], jobs: int, log: Any, progress: Any,
                     objects: list[tuple[str, Any, Any]] | None = None, mlflow_parent: str | None = None,
                     pool: Pool | None = None) -> list[Any]:
    """The unfinished runs on ``jobs`` worker processes (module docstring); outcomes in batch order.

    ``pool``: workers started earlier (the launcher starts them before its preflight, so
    that their imports overlap it); closed here.
    """
    from multiprocessing.connection import wait

    from prunebench.results.store import RunOutcome, is_finished, read_rows

    total = len(runs)
    outcomes: list[Any] = [None] * total
    for slot, r in enumerate(runs):
        if is_finished(r.path):
            log(f"[{slot + 1}/{total}] {r.spec.describe()}: finished before, skipped ({r.spec.run_id})")
            outcomes[slot] = RunOutcome(r.spec.run_id, r.path, read_rows(r.path), True, "ok")
    tasks = plan(runs)
    for t in tasks:
        t.mlflow_parent = mlflow_parent
    by_run = {r.spec.run_id: r for r in runs}
    pending = list(tasks)
    finished: set[str] = set()
    threads = runs[0].spec.trainer.threads if runs else None
    if pool is None:
        pool = Pool(min(jobs, max(len(tasks), 1)), threads, objects or [], progress is not None)
    busy: dict[int, Task] = {}
    clean = False
    try:
        while pending or busy:
            for i in range(len(pool.workers)):
                if i in busy:
                    continue
                ready = next((t for t in pending if all(d in finished for d in t.deps)), None)
                if ready is None:
                    break
                pending.remove(ready)
                busy[i] = ready
                pool.workers[i][1].send((ready, total))
            if not busy:  # nothing can start: a dependency is missing (cannot happen with plan())
                raise RuntimeError(f"no task can start: {[t.key for t in pending]}")
            conns = {pool.workers[i][1]: i for i in busy}
            sentinels = {pool.workers[i][0].sentinel: i for i in busy}
            for ready in wait(list(conns) + list(sentinels), timeout=1.0):
                i = conns.get(ready, sentinels.get(ready))
                if i not in busy:
                    continue
                task = busy[i]
                conn = pool.workers[i][1]
                try:
                    while conn.poll():
                        msg = conn.recv()
                        if msg[0] == "log":
                            log(msg[1])
                        elif msg[0] == "progress" and progress is not None:
                            progress.update(msg[1], msg[2], msg[3])
                        elif msg[0] == "done":
                            _finish(task, msg[2], by_run, outcomes, log, progress)
                            finished.add(task.key)
                            del busy[i]
                            break
                except (EOFError, OSError):
                    pass
                if i in busy and not pool.workers[i][0].is_alive() and not conn.poll():
                    # The worker died (killed, out of memory): its task fails alone; a new worker goes on.
                    code = pool.workers[i][0].exitcode
                    _finish(task, ("error", f"worker process died (exit code {code})", ""), by_run, outcomes, log,
                            progress)
                    finished.add(task.key)
                    del busy[i]
                    pool.replace(i)
        clean = True
    finally:
        pool.close(kill=not clean)
    for slot, r in enumerate(runs):  # a run listed twice: its second place finds it finished
        if outcomes[slot] is None and is_finished(r.path):
            outcomes[slot] = RunOutcome(r.spec.run_id, r.path, read_rows(r.path), True, "ok")
    return [o for o in outcomes if o is not None]


def _finish(task: Task, result: Any, by_run: dict[str, Any], outcomes: list[Any], log: Any, progress: Any) -> None:
    kind = result[0]
    if progress is not None:
        progress.update(task.key, "finish", ())
    if kind == "error":
        log(f"{task.key} failed in its worker: {result[1]}")
        if task.kind == "run" and task.outcome_slot is not None:
            outcomes[task.outcome_slot] = _failed(by_run[task.spec.run_id], result[1])
        return
    if kind == "outcome" and task.outcome_slot is not None:
        outcomes[task.outcome_slot] = result[1]


# ---- a batch of runs: a study's variants x seeds, run with every one checked first ----------
# (the CLI, the Python API and the sweeps call these; they used to live in the CLI)


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
    pending = {s.run_id for s, p in zip(specs, paths, strict=True) if not is_finished(p)}
    parallel = jobs > 1 and on_level is None and len(pending) > 1
    objects: list[Any] = []
    if parallel:
        import pickle

        from prunebench.objects import registered_objects

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
    pool = Pool(min(jobs, len(pending)), specs[0].trainer.threads, objects,
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
            return execute_parallel(runs, jobs, log, progress, objects, mlflow_parent, pool=pool)
        return execute_sequential(runs, total, log, progress, outcomes)
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
