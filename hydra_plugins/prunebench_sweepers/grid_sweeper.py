"""``hydra/sweeper=prunebench_grid``: Hydra's grid sweep, validated up front and fault-tolerant."""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class PrunebenchGridSweeper(BasicSweeper):
    """BasicSweeper semantics (``a=1,2 b=x,y`` → 4 jobs) plus:

    every job's config is validated before the first one trains; a failing job is listed
    at the end instead of ending the sweep; ``sweep.n_jobs`` sets the launcher's
    parallelism; the report is written when all jobs are done.
    """

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from prunebench.sweep.common import make_launcher, sweep_value

        self.hydra_context = hydra_context
        self.config = config
        self.launcher = make_launcher(hydra_context, task_function, config, sweep_value(config, "n_jobs"))

    def sweep(self, arguments: list[str]) -> Any:
        from prunebench.report import write_report
        from prunebench.sweep.launch import grid_sweep

        return grid_sweep(self, list(arguments), write_report)
