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

import sys
import time
from collections.abc import Sequence
from typing import Any

from prunebench.errors import ConfigError
from prunebench.log import log
from prunebench.compose import CONF_DIR, unknown_key_message
from prunebench.engine.batch import execute_specs, expand_study, summarise
from prunebench.spec import from_config


#: Set once the task function runs: a SystemExit(1) before it is Hydra rejecting the command line.
_STARTED = False


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
