"""Helpers shared by the grid and Optuna sweepers: preflight composition, launcher set-up."""

from __future__ import annotations

import sys
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
    return Plugins.instance().instantiate_launcher(
        hydra_context=hydra_context, task_function=task_function, config=config)


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
