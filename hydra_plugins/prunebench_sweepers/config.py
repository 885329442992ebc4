"""Hydra config nodes of the prunebench sweepers (``hydra/sweeper=prunebench_optuna|prunebench_grid``)."""

# No `from __future__ import annotations` here: Hydra executes plugin modules before they
# are in sys.modules, and dataclasses cannot resolve string annotations then.
from dataclasses import dataclass
from typing import Dict, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class PrunebenchOptunaSweeperConf:
    """The Optuna sweeper reads its settings from the ``sweep`` node (sweep.n_trials, ...)."""

    _target_: str = "hydra_plugins.prunebench_sweepers.optuna_sweeper.PrunebenchOptunaSweeper"


@dataclass
class PrunebenchGridSweeperConf:
    """Hydra's basic sweeper options: the grid in ``params``, optional batching."""

    _target_: str = "hydra_plugins.prunebench_sweepers.grid_sweeper.PrunebenchGridSweeper"
    max_batch_size: Optional[int] = None
    params: Optional[Dict[str, str]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="prunebench_optuna", node=PrunebenchOptunaSweeperConf,
                             provider="prunebench")
ConfigStore.instance().store(group="hydra/sweeper", name="prunebench_grid", node=PrunebenchGridSweeperConf,
                             provider="prunebench")
