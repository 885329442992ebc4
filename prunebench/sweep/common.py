"""Helpers shared by the grid and Optuna sweepers: preflight composition, launcher set-up."""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from prunebench.errors import ConfigError
from prunebench.spec import RunSpec, from_config


from prunebench.log import log  # noqa: E402,F401  (the one logger; re-exported for the sweepers)


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain containers, without the ``hydra`` node.

    The hydra node is dropped before resolving: ``hydra.sweep.subdir`` may refer to keys
    (``optuna.number``) that only a launched job has.
    """
    body = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    out = OmegaConf.to_container(body, resolve=True, throw_on_missing=True)
    assert isinstance(out, dict)
    return out


def _hydra_message(exc: BaseException) -> str:
    """Hydra's composition errors span several lines; keep them readable on one."""
    text = str(exc).split("Config search path:")[0]
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    cause = exc.__cause__
    if cause is not None and "not in struct" in str(cause):
        # "Could not override 'schedule.foo'" alone does not say why: the key does not exist.
        lines.append(str(cause).strip().splitlines()[0] + " (no such key in the config)")
    return " ".join(lines)[:600] or type(exc).__name__


def compose_spec(config_loader: Any, master: DictConfig, overrides: Sequence[str]) -> tuple[DictConfig, RunSpec]:
    """Compose one job's config exactly as the launcher will and convert it to a RunSpec.

    Raises ConfigError for an unknown key, an unknown group option or an invalid value.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = config_loader.load_sweep_config(master, list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(_hydra_message(exc)) from None
    try:
        spec = from_config(plain_config(cfg))
    except (OmegaConfBaseException, KeyError) as exc:
        raise ConfigError(_hydra_message(exc)) from None
    return cfg, spec


def make_launcher(hydra_context: Any, task_function: Any, config: DictConfig, n_jobs: int | None) -> Any:
    """Instantiate the configured launcher, running ``n_jobs`` jobs at a time where it can.

    ``sweep.n_jobs`` is the one knob for parallelism: it sets joblib's ``n_jobs`` or
    submitit's ``array_parallelism``; the basic launcher runs jobs one after another.
    """
    from hydra.core.plugins import Plugins

    if n_jobs is not None:
        launcher = config.hydra.launcher
        with read_write(config.hydra), open_dict(config.hydra):
            if "n_jobs" in launcher:
                launcher.n_jobs = n_jobs
            if "array_parallelism" in launcher:
                launcher.array_parallelism = n_jobs
    if "joblib" in str(config.hydra.launcher.get("_target_", "")):
        # Pool workers outlive a SIGKILLed sweeper (training on for many minutes): each job
        # watches the sweeper and ends its worker when it is gone.
        task_function = DiesWithParent(task_function)
    return Plugins.instance().instantiate_launcher(
        hydra_context=hydra_context, task_function=task_function, config=config)


_WATCH: dict[str, threading.Thread] = {}


def watch_parent(parent_pid: int, interval: float = 0.5, say: Callable[[str], None] | None = None) -> None:
    """In a pool worker: SIGKILL this process once ``parent_pid`` is gone (idempotent).

    A daemon thread polls the parent: dead, or this process re-parented (its parent pid
    changed). SIGKILL is safe here: every results file is written atomically, the run
    lock of a dead pid is stale at once, and the trial's heartbeat stops, so a relaunch
    retries it. (``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when the *thread* that
    spawned the worker exits, which for a pool's respawned workers is not the sweeper.)
    """
    if "thread" in _WATCH:
        return
    start_ppid = os.getppid()

    def gone() -> bool:
        if os.getppid() != start_ppid:
            return True
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def run() -> None:
        while not gone():
            time.sleep(interval)
        (say or log)(f"sweep process {parent_pid} is gone: stopping worker {os.getpid()} and its job")
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=run, name="prunebench-parent-watch", daemon=True)
    _WATCH["thread"] = thread
    thread.start()


class DiesWithParent:
    """A Hydra task function that, run in another process on this host, dies with the sweeper.

    Picklable (joblib/loky ships it to its workers); in the sweeper's own process (the
    basic launcher) it only calls through.
    """

    def __init__(self, task_function: Callable[..., Any], interval: float = 0.5) -> None:
        functools.update_wrapper(self, task_function)
        self.task_function = task_function
        self.parent_pid, self.host, self.interval = os.getpid(), socket.gethostname(), interval

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if os.getpid() != self.parent_pid and socket.gethostname() == self.host:
            watch_parent(self.parent_pid, self.interval)
        return self.task_function(*args, **kwargs)


def job_error(ret: Any) -> str | None:
    """The failure of one Hydra JobReturn as text, or None if the job completed."""
    from hydra.core.utils import JobStatus

    if getattr(ret, "status", None) != JobStatus.FAILED:
        return None
    try:
        ret.return_value  # re-raises the job's exception
    except BaseException as exc:  # noqa: BLE001 - any job failure becomes a message
        return f"{type(exc).__name__}: {exc}"
    return "job failed"


@contextmanager
def clean_errors() -> Iterator[None]:
    """Bad input ends a sweep with one line and exit status 2 (as for a single run)."""
    try:
        yield
    except ConfigError as exc:
        log(f"error: {exc}")
        sys.exit(2)


def sweep_value(config: DictConfig, key: str, default: Any = None) -> Any:
    node = config.get("sweep")
    if node is None:
        return default
    value = node.get(key, default)
    return default if value is None else value


Logger = Callable[[str], None]
