"""Sweeps: Hydra grid sweeps and persistent Optuna studies over prunebench runs.

The Hydra sweeper plugins (``hydra_plugins/prunebench_sweepers``) are thin; the work is here:

* :mod:`~prunebench.sweep.settings` — the ``sweep:`` node (n_trials, n_jobs, storage,
  study_name, objectives, sampler, pruner, fault tolerance), validated;
* :mod:`~prunebench.sweep.space` — search spaces in Hydra's sweep syntax → Optuna distributions;
* :mod:`~prunebench.sweep.driver` — the ask / launch / reconcile loop over a stored study;
* :mod:`~prunebench.sweep.trial` — the job side: heartbeats, per-level reports, pruning, tell;
* :mod:`~prunebench.sweep.launch` — the two sweeps as the plugins call them;
* :mod:`~prunebench.sweep.locks` — file and database locks.
"""
