"""Run-identity entries for what lives outside the package: a user's model or data factory,
an image folder, a pretrained file. Content, not paths: the same bytes elsewhere are the
same run (cached), edited bytes are a new run.

The spec merges these into ``identity()`` (see each function for where); keys that are
plain config values (``model.arch``, ``data.dataset``, kwargs) stay as they are.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prunebench.errors import ConfigError
from prunebench.imports import target_identity

__all__ = ["data_identity", "display_name", "init_identity", "model_identity", "tree_sha256"]


def init_identity(path: str | os.PathLike[str], key: str = "train.init_from") -> dict[str, str]:
    """``{"sha256": ...}`` of a pretrained file (see :func:`prunebench.checkpoints.init_identity`)."""
    from prunebench.checkpoints import init_identity as _init_identity

    return _init_identity(path, key)


def tree_sha256(root: str | os.PathLike[str], suffixes: tuple[str, ...]) -> str:
    """sha256 over the relative paths and contents of the files under ``root`` with these
    suffixes (sorted: independent of listing order and of where the tree lives)."""
    root = Path(root)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.suffix.lower() in suffixes):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def model_identity(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Replacement entries for ``model`` identity.

    ``custom``: ``target`` becomes ``"<file name or module>:<callable>"`` plus
    ``source_sha256`` (the defining file's content). Others: ``{}`` (nothing to add).
    """
    if name == "custom" and kwargs.get("target") is not None:
        return target_identity(str(kwargs["target"]), "model.target")
    return {}


def data_identity(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Replacement entries for ``data`` identity (``root`` is not an identity key).

    ``custom``: as for models (``data.target``). ``imagefolder``: ``files_sha256`` of the
    image tree under ``data.root`` (which images, their split folders and their bytes).
    ``torchvision`` and the built-ins: ``{}`` (the class name and keys identify them).
    """
    if name == "custom" and kwargs.get("target") is not None:
        return target_identity(str(kwargs["target"]), "data.target")
    if name == "imagefolder":
        from prunebench.data.imagefolder import IMG_EXTENSIONS

        root = kwargs.get("root")
        if root is None or not Path(root).is_dir():
            raise ConfigError(f"data.root={root!r} is not a folder")
        return {"files_sha256": tree_sha256(root, IMG_EXTENSIONS)}
    return {}


def display_name(kind: str, name: str, kwargs: Mapping[str, Any]) -> str:
    """A short name for tables and plots: ``resnet18`` for ``model=torchvision``, the
    callable's name for ``custom``, the class or folder name for ``data=torchvision`` /
    ``imagefolder``; the registry name otherwise."""
    if name == "torchvision":
        value = kwargs.get("arch" if kind == "model" else "dataset")
        return str(value) if value else name
    if name == "custom" and kwargs.get("target"):
        return str(kwargs["target"]).replace(":", ".").rsplit(".", 1)[-1]
    if name == "imagefolder" and kwargs.get("root"):
        return Path(str(kwargs["root"])).name or name
    return name
