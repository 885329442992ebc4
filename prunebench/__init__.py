"""prunebench: accuracy versus sparsity, measured.

The Python API (``prunebench.run``, ``prunebench.study``, ``prunebench.experiment``) and the
export helpers load lazily, so ``import prunebench`` stays cheap (the command line checks a
config before torch is imported).
"""

from __future__ import annotations

from typing import Any

from prunebench.errors import ConfigError

__all__ = ["ConfigError", "best_level", "experiment", "export", "load", "load_exported", "run", "study"]

_LAZY = {
    "run": "prunebench.api", "study": "prunebench.api", "experiment": "prunebench.api",
    "export": "prunebench.export", "best_level": "prunebench.export", "load_exported": "prunebench.export",
    "load": "prunebench.results.store",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'prunebench' has no attribute {name!r}")
