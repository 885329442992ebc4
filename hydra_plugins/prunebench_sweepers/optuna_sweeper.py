"""``hydra/sweeper=prunebench_optuna``: a persistent, resumable, fault-tolerant Optuna study."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class PrunebenchOptunaSweeper(Sweeper):
    """Asks a current Optuna (>= 4) for trials and runs them through the configured launcher.

    Settings come from the ``sweep`` node (``sweep=optuna_pareto`` / ``sweep=optuna_accuracy``);
    see :mod:`prunebench.sweep.driver` for the loop and :mod:`prunebench.sweep.settings`
    for the keys.
    """

    def __init__(self) -> None:
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None
        self.config: DictConfig | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.task_function = task_function
        self.config = config

    def sweep(self, arguments: list[str]) -> Any:
        from prunebench.report import write_report
        from prunebench.sweep.launch import optuna_sweep

        assert self.hydra_context is not None and self.config is not None
        return optuna_sweep(self.hydra_context, self.task_function, self.config, list(arguments), write_report)
