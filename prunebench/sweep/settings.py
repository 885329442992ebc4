"""The ``sweep:`` config node of an Optuna sweep, typed and validated.

Public keys (the contract of ``sweep=optuna_*`` presets): ``sweep.n_trials``,
``sweep.n_jobs``, ``sweep.storage``, ``sweep.study_name``; plus ``objectives``,
``directions``, ``params`` (the search space, see :mod:`prunebench.sweep.space`),
``sampler``, ``pruner``, ``seed``, ``constraints`` and ``reference_point`` (see
:mod:`prunebench.sweep.constraints`) and the fault-tolerance knobs ``max_retry``,
``heartbeat_interval``, ``grace_period``, ``max_failures``.

``n_trials`` is a TOTAL for the study, not "n more": a launch runs trials until the study
holds ``n_trials`` trials that did not fail (complete or pruned). Launching again with
the same value only finishes what an interrupted launch left; with a larger value it
runs the difference. Every worker sharing the study counts towards the same total.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError, unknown_name
from prunebench.results import schema
from prunebench.sweep.constraints import (OBJECTIVES, TEST_COLUMNS, auto_sampler,  # noqa: F401  (re-exported)
                                          parse_constraints, parse_reference_point)

LATENCY_COLUMNS = ("latency_ms", "latency_ms_large", "speedup_measured")
SAMPLERS = ("auto", "tpe", "gp", "nsga2", "random", "grid")
PRUNERS = ("none", "median", "percentile", "hyperband", "threshold")
DEFAULT_DB = "studies/optuna.db"


def default_storage(root: str | os.PathLike[str]) -> str:
    """``sqlite:///<abs root>/studies/optuna.db``: one file for every study under a root."""
    return f"sqlite:///{(Path(root) / DEFAULT_DB).resolve()}"


def _int(node: Mapping[str, Any], key: str, low: int, default: Any = None, allow_none: bool = False) -> Any:
    value = node.get(key, default)
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"sweep.{key}={value!r}: expected an integer >= {low}")
    return value


@dataclass(frozen=True)
class SweepSettings:
    """What an Optuna sweep (and each of its trials) needs to know."""

    study_name: str
    storage: str
    n_trials: int
    n_jobs: int = 1
    objectives: tuple[str, ...] = ("val_acc",)
    directions: tuple[str, ...] = ("maximize",)
    params: Mapping[str, Any] = field(default_factory=dict)
    sampler: str = "auto"
    sampler_kwargs: Mapping[str, Any] = field(default_factory=dict)
    pruner: str = "none"
    pruner_kwargs: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    max_retry: int = 1
    heartbeat_interval: int = 30
    grace_period: int | None = None
    max_failures: int | None = None
    #: Whether make_storage may create the SQLite file's folder: only for the default
    #: storage or a file under paths.root (set by from_config; not a sweep key).
    create_storage_dir: bool = field(default=False, repr=False, compare=False)
    constraints: tuple[Any, ...] = ()  # prunebench.sweep.constraints.Constraint
    reference_point: tuple[float, ...] | None = None

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def report_metric(self) -> str | None:
        """The metric reported per level (single objective only: Optuna prunes only those)."""
        return None if self.multi_objective else self.objectives[0]

    @property
    def sampler_name(self) -> str:
        """The sampler as configured; ``auto`` is resolved against the space by :meth:`resolve_sampler`."""
        return self.sampler

    def resolve_sampler(self, space: Any = None) -> tuple[str, str]:
        """(sampler name, why): ``auto`` becomes gp, tpe or nsga2 (see constraints.auto_sampler)."""
        if self.sampler != "auto":
            return self.sampler, "sweep.sampler"
        name, why = auto_sampler(space, len(self.objectives), self.n_trials)
        return name, f"auto: {why}"

    @property
    def is_sqlite(self) -> bool:
        return self.storage.startswith("sqlite")

    @classmethod
    def from_config(cls, sweep: Mapping[str, Any] | None, root: str | os.PathLike[str]) -> SweepSettings:
        """Validate the ``sweep`` node (plain containers); ConfigError names the bad key."""
        if not sweep:
            raise ConfigError("no sweep settings: select a preset such as sweep=optuna_pareto or sweep=optuna_accuracy")
        s = dict(sweep)
        name = s.get("study_name")
        if not name or not isinstance(name, str):
            raise ConfigError(f"sweep.study_name={name!r}: give the study a name")
        if not re.fullmatch(r"[\w.\-]+", name):
            raise ConfigError(f"sweep.study_name={name!r}: use letters, digits, '.', '-' and '_' only")
        storage = s.get("storage") or default_storage(root)
        if "://" not in str(storage):
            raise ConfigError(f"sweep.storage={redact(str(storage))!r}: expected a database URL such as "
                              f"sqlite:///path/optuna.db or postgresql://user@host/db")
        password = _password(str(storage))
        if password and "@" in password:  # a driver would split it there and print the rest as a host name
            raise ConfigError(f"sweep.storage={redact(str(storage))}: the password holds an unencoded '@'; "
                              f"percent-encode it as %40 (better: set the URL in PRUNEBENCH_STORAGE)")
        create_dir = check_storage_folder(str(storage), root, default=not s.get("storage"))
        objectives = s.get("objectives") or ["val_acc"]
        if isinstance(objectives, str):
            objectives = [objectives]
        objectives = tuple(str(o) for o in objectives)
        for o in objectives:
            check_objective(o)
        if len(set(objectives)) != len(objectives):
            raise ConfigError(f"sweep.objectives={list(objectives)}: repeated objective")
        directions = s.get("directions")
        if directions is None:
            directions = tuple(OBJECTIVES[o] for o in objectives)
        else:
            directions = tuple([directions] if isinstance(directions, str) else directions)
            if len(directions) != len(objectives):
                raise ConfigError(f"sweep.directions={list(directions)} must give one direction per objective "
                                  f"{list(objectives)} (or be null for the natural ones)")
            for d in directions:
                if d not in ("maximize", "minimize"):
                    raise ConfigError(f"sweep.directions: {d!r} is not 'maximize' or 'minimize'")
        sampler = str(s.get("sampler") or "auto")
        if sampler not in SAMPLERS:
            raise unknown_name("sweep.sampler", sampler, SAMPLERS)
        pruner = str(s.get("pruner") or "none")
        if pruner not in PRUNERS:
            raise unknown_name("sweep.pruner", pruner, PRUNERS)
        if pruner != "none" and len(objectives) > 1:
            raise ConfigError(f"sweep.pruner={pruner!r} needs a single objective: Optuna cannot prune "
                              f"multi-objective trials (objectives {list(objectives)}); set sweep.pruner=null")
        seed = s.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ConfigError(f"sweep.seed={seed!r}: expected an integer or null")
        constraints = parse_constraints(s.get("constraints"))
        reference_point = parse_reference_point(s.get("reference_point"), objectives)
        out = cls(
            study_name=name,
            storage=str(storage),
            n_trials=_int(s, "n_trials", 1),
            n_jobs=_int(s, "n_jobs", 1, 1),
            objectives=objectives,
            directions=directions,
            params=dict(s.get("params") or {}),
            sampler=sampler,
            sampler_kwargs=dict(s.get("sampler_kwargs") or {}),
            pruner=pruner,
            pruner_kwargs=dict(s.get("pruner_kwargs") or {}),
            seed=seed,
            max_retry=_int(s, "max_retry", 0, 1),
            heartbeat_interval=_int(s, "heartbeat_interval", 1, 30),
            grace_period=_int(s, "grace_period", 1, None, allow_none=True),
            max_failures=_int(s, "max_failures", 1, None, allow_none=True),
            create_storage_dir=create_dir,
            constraints=constraints,
            reference_point=reference_point,
        )
        if out.grace_period is not None and out.grace_period <= out.heartbeat_interval:
            raise ConfigError(f"sweep.grace_period={out.grace_period} must exceed "
                              f"sweep.heartbeat_interval={out.heartbeat_interval}")
        known = {f for f in cls.__dataclass_fields__ if f != "create_storage_dir"} | {"n_trials"}
        extra = sorted(set(s) - known)
        if extra:
            raise ConfigError(f"unknown sweep key(s) {extra}; valid: {', '.join(sorted(known))}")
        return out

    # ---- Optuna objects ---------------------------------------------------------------
    def make_storage(self, stale_retry: bool = True) -> Any:
        """An RDBStorage with heartbeats; stale trials are retried up to ``max_retry`` times."""
        import warnings

        import optuna

        if self.is_sqlite:
            path = self.storage.split("sqlite:///", 1)[-1]
            if path and path != ":memory:" and not Path(path).parent.is_dir():
                if not self.create_storage_dir:
                    raise ConfigError(f"sweep.storage={redact(self.storage)!r}: the folder {Path(path).parent} does not "
                                      f"exist; create it, or put the database under paths.root")
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # Several processes write one SQLite file: wait for the lock instead of failing.
            engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 120}}
        else:
            engine_kwargs = {"pool_pre_ping": True}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            callback = None
            if stale_retry and self.max_retry > 0:
                callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)
            for attempt in range(4):
                try:
                    return optuna.storages.RDBStorage(
                        self.storage, engine_kwargs=engine_kwargs, heartbeat_interval=self.heartbeat_interval,
                        grace_period=self.grace_period, heartbeat_stale_trial_callback=callback)
                except ImportError as exc:
                    raise ConfigError(f"sweep.storage={redact(self.storage)}: database driver missing "
                                      f"({redact_text(str(exc), self.storage)}); "
                                      f"for postgresql:// pip install 'psycopg[binary]'") from None
                except Exception as exc:  # unreachable server, bad credentials, bad URL
                    # Workers that start together race to create Optuna's tables in a new
                    # database ("duplicate key"): the loser finds them on the next attempt.
                    if attempt < 3:
                        time.sleep(0.5 + attempt)
                        continue
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise ConfigError(f"sweep.storage={redact(self.storage)}: cannot open "
                                      f"({redact_text(first, self.storage)})") from None
        raise AssertionError("unreachable")

    def make_sampler(self, space: Any = None, offset: int = 0) -> Any:
        """The sampler; a set seed is shifted by ``offset`` so a relaunch draws new points."""
        import optuna

        seed = None if self.seed is None else self.seed + offset
        kw = dict(self.sampler_kwargs)
        name, _ = self.resolve_sampler(space)
        try:
            if name == "gp":
                # Optuna's GP sampler (torch + scipy); constraints come from the trials
                # themselves (Trial.set_constraint), not a constraints_func.
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.samplers.GPSampler(seed=seed, **kw)
            if name == "tpe":
                return optuna.samplers.TPESampler(seed=seed, **kw)
            if name == "nsga2":
                return optuna.samplers.NSGAIISampler(seed=seed, **kw)
            if name == "random":
                return optuna.samplers.RandomSampler(seed=seed, **kw)
            if name == "grid":
                if space is None:
                    raise ConfigError("sweep.sampler=grid needs the search space")
                return optuna.samplers.GridSampler(space.grid(), seed=seed, **kw)
        except TypeError as exc:
            raise ConfigError(f"sweep.sampler_kwargs={kw}: {exc}") from None
        except ValueError as exc:
            raise ConfigError(f"sweep.sampler={name!r}: {exc}") from None
        raise unknown_name("sweep.sampler", name, SAMPLERS)

    def make_pruner(self) -> Any:
        import optuna

        kw = dict(self.pruner_kwargs)
        try:
            if self.pruner == "median":
                return optuna.pruners.MedianPruner(**{"n_startup_trials": 4, "n_warmup_steps": 1, **kw})
            if self.pruner == "percentile":
                return optuna.pruners.PercentilePruner(**{"percentile": 25.0, "n_startup_trials": 4,
                                                          "n_warmup_steps": 1, **kw})
            if self.pruner == "hyperband":
                return optuna.pruners.HyperbandPruner(**{"min_resource": 1, **kw})
            if self.pruner == "threshold":  # e.g. pruner_kwargs: {lower: 0.5}: stop below 50% val_acc
                return optuna.pruners.ThresholdPruner(**{"n_warmup_steps": 1, **kw})
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"sweep.pruner_kwargs={kw}: {exc}") from None
        return optuna.pruners.NopPruner()


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL (absolute, or relative to the cwd); None otherwise."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("sqlite:///", 1)[-1] if "sqlite:///" in url else ""
    path = path.split("?", 1)[0]
    return None if not path or path == ":memory:" else Path(path)


def check_storage_folder(url: str, root: str | os.PathLike[str], default: bool = False) -> bool:
    """Whether the SQLite file's folder may be created; ConfigError if it is missing and may not.

    Folders are made only for the default storage or for a file under ``paths.root``: a
    typo such as ``sqlite:////nonexistent/dir/x.db`` must not create ``/nonexistent/dir``.
    """
    db = sqlite_file(url)
    if db is None or db.parent.is_dir():
        return False
    if db.parent.exists():
        raise ConfigError(f"sweep.storage={redact(url)!r}: {db.parent} is not a folder")
    if default:
        return True
    try:
        db.resolve().relative_to(Path(root).resolve())
    except ValueError:
        raise ConfigError(f"sweep.storage={redact(url)!r}: the folder {db.parent} does not exist (only folders under "
                          f"paths.root={str(root)!r} are created for the study); create it first or fix the "
                          f"path") from None
    return True


def check_objective(name: str) -> None:
    """Raise ConfigError unless ``name`` is a validation/cost column of the results table."""
    if name in TEST_COLUMNS:
        raise ConfigError(f"sweep.objectives: {name!r} is a test metric; objectives are validation metrics "
                          f"(selection never looks at the test set). Valid: {', '.join(OBJECTIVES)}")
    if name not in OBJECTIVES:
        kind = "not an objective" if name in schema.COLUMNS else "not a results column"
        raise ConfigError(f"sweep.objectives: {name!r} is {kind}; valid: {', '.join(OBJECTIVES)}")


def finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


#: Query parameters that carry a secret (``?password=...``), matched case-insensitively.
_SECRET_PARAMS = re.compile(r"([?&;](?:password|passwd|pwd|pass|secret|token|access_token|api_key|apikey)=)[^&;#]*",
                            re.IGNORECASE)


def _password(url: str) -> str | None:
    """The password in a URL's user-info (``scheme://user:password@host``), as written."""
    _, sep, rest = url.partition("://")
    if not sep:
        return None
    head = rest.split("?", 1)[0]
    # The user-info ends at the *last* '@' of the part before the query: a password with an
    # unencoded '@' (or '/') stays whole. No ':' before it: no password (sqlite:////a@b.db).
    at = head.rfind("@")
    if at < 0 or ":" not in head[:at]:
        return None
    return head[:at].split(":", 1)[1]


def redact(url: str) -> str:
    """A storage URL without its secrets, for messages: the user-info's password (even one
    holding an unencoded '@') and ``password=``/``pwd=``-style query parameters become ``***``."""
    url = str(url)
    if "://" not in url and "@" in url:  # not a URL we can take apart: show none of what might be a secret
        return url.split(":", 1)[0] + ":***"
    password = _password(url)
    if password:
        scheme, _, rest = url.partition("://")
        user = rest.split(":", 1)[0]
        url = f"{scheme}://{user}:***{rest[len(user) + 1 + len(password):]}"
    return _SECRET_PARAMS.sub(r"\1***", url)


def redact_text(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with ``url`` and its secrets redacted wherever they appear."""
    text = str(text).replace(str(url), redact(url))
    password = _password(str(url))
    if password and len(password) >= 3:
        text = text.replace(password, "***")
    for m in _SECRET_PARAMS.finditer(str(url)):
        value = str(url)[m.end(1):m.end()]
        if len(value) >= 3:
            text = text.replace(value, "***")
    return text


