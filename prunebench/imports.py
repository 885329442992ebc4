"""Import a user's callable from ``package.module:name`` or ``path/to/file.py:name``.

Used by ``model=custom model.target=...`` and ``data=custom data.target=...``. A file
target is imported under a private module name derived from its absolute path (two files
called ``model.py`` do not collide); its folder joins ``sys.path`` so that it can import
its sibling modules, as it would when run as a script.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError

HINT = "give package.module:callable (importable) or path/to/file.py:callable"


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's content, read in chunks (large checkpoints stream)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def split_target(target: Any, key: str) -> tuple[str, str, bool]:
    """``(module_or_file, attribute, is_file)`` of a target string; ConfigError if malformed."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{key}={target!r} must name a callable; {HINT}")
    target = target.strip()
    if target.endswith(".py") and ":" not in target.replace(":\\", ""):
        raise ConfigError(f"{key}={target!r} names a file but no callable in it: add ':<function>' "
                          f"(e.g. {key}={target}:make_net)")
    if ":" in target and not (len(target) > 1 and target[1] == ":" and target.count(":") == 1):  # not C:\...
        where, _, attr = target.rpartition(":")
    else:  # dotted form package.module.callable
        where, _, attr = target.rpartition(".")
        if where.endswith(".py") or not where:
            raise ConfigError(f"{key}={target!r} must name a callable; {HINT}")
    is_file = where.endswith(".py") or "/" in where or os.sep in where
    if not where or not attr:
        raise ConfigError(f"{key}={target!r} must name a callable; {HINT}")
    return where, attr, is_file


def _import_file(path: Path, key: str, target: str) -> Any:
    if not path.is_file():
        raise ConfigError(f"{key}={target!r}: file {str(path)!r} not found (relative paths start at the current "
                          f"directory {os.getcwd()!r})")
    name = f"prunebench_user.{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{key}={target!r}: {str(path)!r} cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))  # its own sibling imports (kept: factories may import lazily)
    sys.modules[name] = module  # before exec: dataclasses and pickling look the module up
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"{key}={target!r}: importing {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_callable(target: Any, key: str) -> Callable[..., Any]:
    """The callable named by ``target``; ConfigError naming ``key`` if it cannot be found."""
    where, attr, is_file = split_target(target, key)
    if is_file:
        module = _import_file(Path(where).expanduser().resolve(), key, target)
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ConfigError(f"{key}={target!r}: cannot import module {where!r} ({exc}); {HINT}") from exc
        except Exception as exc:
            raise ConfigError(f"{key}={target!r}: importing {where!r} failed: {type(exc).__name__}: {exc}") from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ConfigError(f"{key}={target!r}: {where!r} has no attribute {attr!r}; its callables: "
                              f"{', '.join(public) or 'none'}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}={target!r} is a {type(obj).__name__}, not a callable")
    return obj


def source_file(target: str, key: str) -> Path | None:
    """The file that defines ``target``'s callable (None for built-ins / C extensions)."""
    where, _, is_file = split_target(target, key)
    if is_file:
        return Path(where).expanduser().resolve()
    try:
        fn = load_callable(target, key)
        src = inspect.getsourcefile(inspect.unwrap(fn))
    except (TypeError, ConfigError):
        return None
    return Path(src) if src else None


def target_identity(target: str, key: str) -> dict[str, Any]:
    """What identifies a user's callable in a run id: its name and its source file's content.

    A file target is named by its file name, not its path (moving the project keeps the
    ids); the sha256 of the defining file makes an edited model or data module a new run.
    """
    where, attr, is_file = split_target(target, key)
    name = f"{Path(where).name}:{attr}" if is_file else f"{where}:{attr}"
    src = source_file(target, key)
    out: dict[str, Any] = {"target": name}
    if src is not None and src.is_file():
        out["source_sha256"] = file_sha256(src)
    return out


def call_with_accepted(fn: Callable[..., Any], offered: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` plus those of ``offered`` that ``fn`` has a parameter for (and ``given`` lacks)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return dict(given)
    # Only parameters named so: a **kwargs factory may forward them where they do not fit.
    extra = {k: v for k, v in offered.items() if k not in given and k in params}
    return {**extra, **given}


def absolute_target(target: str, key: str) -> str:
    """``target`` with a file path made absolute (from the current directory), so that
    launcher workers started elsewhere find the same file; module targets unchanged."""
    where, attr, is_file = split_target(target, key)
    return f"{Path(where).expanduser().resolve()}:{attr}" if is_file else target
