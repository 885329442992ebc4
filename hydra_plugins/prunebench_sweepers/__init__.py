"""prunebench's Hydra sweepers, discovered by Hydra under the ``hydra_plugins`` namespace.

* ``hydra/sweeper=prunebench_optuna`` — a persistent Optuna (>= 4) study (``sweep=optuna_*``).
* ``hydra/sweeper=prunebench_grid`` — Hydra's grid, validated up front and fault-tolerant
  (``sweep=grid_*``).

The modules here only register configs and define the plugin classes (Hydra requires
plugin classes to live under ``hydra_plugins``); the work is in :mod:`prunebench.sweep`,
imported lazily so that plugin discovery stays fast for every ``prunebench`` call.
"""
