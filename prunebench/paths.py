"""Checks on where results go, without heavy imports (the CLI runs them before Hydra starts)."""

from __future__ import annotations

import os
from pathlib import Path


def check_writable_root(root: str | os.PathLike[str]) -> None:
    """ConfigError naming ``paths.root`` unless results can be written under it."""
    from prunebench.errors import ConfigError

    p = Path(root)
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"paths.root={str(root)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"paths.root={str(root)!r}: {str(probe)!r} is not writable")
    for sub in ("runs", "cache"):
        q = p / sub
        if q.exists() and (not q.is_dir() or not os.access(q, os.W_OK | os.X_OK)):
            raise ConfigError(f"paths.root={str(root)!r}: {str(q)!r} is not a writable folder")
