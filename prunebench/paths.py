"""Checks on where results go, without heavy imports (the CLI runs them before Hydra starts)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from prunebench.errors import ConfigError

_SOURCE_CONF = Path(__file__).resolve().parent.parent / "conf"


def conf_dir() -> str:
    """The configs: $PRUNEBENCH_CONF, else the source tree's top-level conf/ (a checkout or an
    editable install), else the copy shipped inside the wheel (``pkg://prunebench.conf``)."""
    return os.environ.get("PRUNEBENCH_CONF") or (
        str(_SOURCE_CONF) if (_SOURCE_CONF / "config.yaml").is_file() else "pkg://prunebench.conf")


def group_file(group: str, name: str) -> Path | None:
    """``conf/<group>/<name>.yaml`` wherever the configs live (None if there is none)."""
    where = conf_dir()
    if where.startswith("pkg://"):
        from importlib import resources

        try:
            path = Path(str(resources.files("prunebench.conf") / group / f"{name}.yaml"))
        except (ModuleNotFoundError, TypeError):
            return None
    else:
        path = Path(where) / group / f"{name}.yaml"
    return path if path.is_file() else None


#: The longest file name most file systems take (bytes).
NAME_MAX = 255


def check_root_name(root: object, key: str = "paths.root") -> str:
    """``root`` as a folder name that can be made: not empty, no component longer than NAME_MAX."""
    text = "" if root is None else str(root)
    if not text.strip():
        raise ConfigError(f"{key}={text!r} is empty; give a folder for the results (default: outputs)")
    for part in Path(text).parts:
        if len(part.encode()) > NAME_MAX:
            raise ConfigError(f"{key}={text[:40]!r}... has a name of {len(part.encode())} bytes; the file system "
                              f"takes at most {NAME_MAX} per folder name")
    return text


def check_writable_root(root: str | os.PathLike[str], key: str = "paths.root") -> Path:
    """Raise ConfigError unless results can be written under ``root`` (made if missing).

    Checks, without leaving anything behind: ``root`` is not a file; its nearest existing
    folder (``root`` itself, or the parent it would be made in) accepts a new entry; the
    folders prunebench writes into (runs/, cache/, studies/, locks/), where they exist,
    are writable folders. Returns ``root`` as an absolute path.
    """
    check_root_name(root, key)
    path = Path(root).expanduser().absolute()
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise ConfigError(f"{key}={str(root)!r} cannot be made: {probe} is a file, not a folder")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{key}={str(root)!r} is a file, not a folder; give a folder for the results")
    targets = [probe] + [path / sub for sub in ("runs", "cache", "studies", "locks") if (path / sub).exists()]
    for target in targets:
        what = "" if target in (path, probe) else f" ({target.name}/ inside it)"
        if not target.is_dir():
            raise ConfigError(f"{key}={str(root)!r}: {target} is a file, not a folder{what}")
        try:  # a real write: permission bits lie for root and on read-only mounts
            tempfile.TemporaryDirectory(prefix=".prunebench-probe-", dir=target).cleanup()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            where = "" if target == path else f" ({target} cannot take new entries)"
            raise ConfigError(f"{key}={str(root)!r} is not writable{where}{what}: {reason}; "
                              f"choose another {key} or fix its permissions") from None
    return path
