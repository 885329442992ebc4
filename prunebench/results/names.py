"""Names that become paths, checked before anything is read or written.

A run id names a folder under ``ROOT/runs``; an experiment name a file under
``ROOT/claims``; ``prunebench-export --out`` a file the user chose. Each is checked here so
that no value can reach outside the folder it belongs to (``../``, an absolute path, a
trailing ``/``) and so that a bad one is a one-line error naming the key and the value.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from prunebench.errors import ConfigError

#: A run id: the first 12 hex digits of a sha256 (prunebench.spec.content_hash).
RUN_ID = re.compile(r"[0-9a-f]{12}")
_PREFIX = re.compile(r"[0-9a-f]{1,12}")
#: The longest file name most file systems take (bytes).
NAME_MAX = 255


def resolve_run_id(root: str | os.PathLike[str], run_id: object, key: str = "--run") -> str:
    """The full id of the run under ``root`` that ``run_id`` names: 12 hex digits, or an
    unambiguous prefix of one (or, exactly, the plain name of a folder under ``ROOT/runs``
    made by hand). ConfigError for anything else (a path, ``..``, a trailing
    ``/``), for no such run, for an ambiguous prefix, and for a finished run whose results
    are lost (:func:`prunebench.results.store.lost_results`)."""
    from prunebench.results.store import lost_message, lost_results, runs_dir

    if not isinstance(run_id, str) or not _plain_name(run_id):
        raise ConfigError(f"{key}={run_id!r} is not a run id: expected 12 hex digits (0-9, a-f) or a prefix of one, "
                          f"the name of a folder under {os.path.join(str(root), 'runs')}, not a path")
    base = runs_dir(root)
    known = sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    matches = [n for n in known if RUN_ID.fullmatch(n) and n.startswith(run_id)] if _PREFIX.fullmatch(run_id) else []
    if not matches and run_id in known:
        matches = [run_id]  # a folder of another name made by hand (tests, imported tables): exact match only
    if not matches:
        shown = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
        raise ConfigError(f"{key}={run_id!r} is not a run under {str(root)!r}; runs: {shown or 'none'}")
    if len(matches) > 1:
        raise ConfigError(f"{key}={run_id!r} is ambiguous: {len(matches)} runs start with it "
                          f"({', '.join(matches[:10])}); give more digits")
    path = base / matches[0]
    lost = lost_results(path)
    if lost is not None:
        raise ConfigError(lost_message(path, lost))
    return matches[0]


def _plain_name(value: str) -> bool:
    return bool(value) and not any(c in value for c in "/\\\0") and value not in (".", "..") and value == value.strip()


def check_file_name(value: object, key: str) -> str:
    """``value`` as one file name (no folder part, not ``.``/``..``, not too long); ConfigError otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}={value!r} must be a non-empty name")
    if "/" in value or "\\" in value or "\0" in value or value in (".", "..") or value != value.strip():
        raise ConfigError(f"{key}={value!r} must be a plain name (it becomes a file name): no '/', '\\', "
                          f"leading or trailing spaces, '.' or '..'")
    if len(value.encode()) > NAME_MAX - 10:  # room for a suffix such as .json
        raise ConfigError(f"{key}={value[:40]!r}... is {len(value.encode())} bytes long; a name that becomes a "
                          f"file name must be under {NAME_MAX - 10}")
    return value


def check_out_file(out: str | os.PathLike[str], key: str = "--out") -> Path:
    """``out`` as a file that can be written: not a folder, its folder creatable and writable.

    Creates nothing; ConfigError (one line, naming ``key`` and the value) otherwise.
    """
    path = Path(out).expanduser()
    for part in path.absolute().parts:  # first: stat() itself fails on a name too long
        if len(part.encode()) > NAME_MAX:
            raise ConfigError(f"{key}={str(out)[:60]!r}...: a path component is {len(part.encode())} bytes long "
                              f"(the limit is {NAME_MAX})")
    if str(out).endswith(("/", os.sep)) or path.is_dir():
        raise ConfigError(f"{key}={str(out)!r} is a folder; give a file path (e.g. {os.path.join(str(out), 'model.pt')})")
    probe = path.absolute().parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={str(out)!r} cannot be written: {probe} is a file, not a folder")
    try:  # a real write: permission bits lie for root and on read-only mounts
        tempfile.TemporaryDirectory(prefix=".prunebench-probe-", dir=probe).cleanup()
    except OSError as exc:
        raise ConfigError(f"{key}={str(out)!r} cannot be written: {probe} is not writable "
                          f"({exc.strerror or type(exc).__name__})") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{key}={str(out)!r} cannot be written: the file is read-only")
    return path
