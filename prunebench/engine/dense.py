"""Dense training, cached by the content hash of what determines it.

Every run that needs the same dense model (same data, model, dense training and seed)
shares one cache entry under ``<root>/cache/dense/<dense_id>/``. A file lock serialises
concurrent runs: the first trains, the others wait and then load. Files are written
atomically, so a killed trainer leaves no half-written checkpoint behind.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunebench import seeding
from prunebench.engine.fit import device_of, fit
from prunebench.engine.module import Classifier, clone_state
from prunebench.errors import CorruptFileError
from prunebench.results.store import (
    atomic_link,
    atomic_write_bytes,
    atomic_write_text,
    file_lock,
    load_failure,
    write_table,
)
from prunebench.spec import RunSpec


def save_state(path: Path, state: dict[str, torch.Tensor]) -> None:
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two state dicts hold the same tensors (compared on the CPU)."""
    return a.keys() == b.keys() and all(torch.equal(a[k].detach().cpu(), b[k].detach().cpu()) for k in a)


def load_state(path: Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Load a state dict with ``weights_only=True``; garbage raises CorruptFileError naming the file."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise TypeError("not a dict of tensors")
        return state
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{what} {path} is corrupt: {load_failure(path, exc)}; delete it to recompute it") from None


def check_loadable(net: nn.Module, path: Path, what: str) -> None:
    """Raise CorruptFileError now if ``path`` exists but cannot load into ``net``."""
    if not path.exists():
        return
    state = load_state(path, what)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptFileError(f"{what} {path} does not fit the model ({str(exc).splitlines()[0]}); delete it") from exc


def load_pretrained(net: nn.Module, path: str) -> None:
    """Load ``train.init_from`` into ``net`` (a state dict, weights_only); ConfigError if it does not fit."""
    from prunebench.checkpoints import load_init

    load_init(net, path)


@dataclass
class DenseModel:
    dense_id: str
    path: Path
    state: dict[str, torch.Tensor]  # trained weights (best validation epoch)
    init_state: dict[str, torch.Tensor]
    meta: dict[str, Any]
    rewind_state: Callable[[int], dict[str, torch.Tensor]]


def dense_dir(spec: RunSpec) -> Path:
    return Path(spec.root) / "cache" / "dense" / spec.dense_id


def train_dense(
    spec: RunSpec,
    datamodule: Any,
    build_net: Callable[[], nn.Module],
    log: Callable[[str], None] = print,
    progress: Any = None,
) -> DenseModel:
    """Return the trained dense model for ``spec``, training it once if no cache entry exists."""
    path = dense_dir(spec)
    device = device_of(spec.trainer)

    def rewind_state(step: int) -> dict[str, torch.Tensor]:
        """Weights after ``step`` optimizer steps of the dense run (replayed deterministically)."""
        if step == 0:
            return load_state(path / "init.pt", "dense init checkpoint")
        file = path / f"rewind_{step}.pt"
        with file_lock(path.with_suffix(".lock")):
            if file.exists():
                return load_state(file, "rewind checkpoint")
            net = build_net()
            net.load_state_dict(load_state(path / "init.pt", "dense init checkpoint"))
            module = Classifier(net.to(device), spec.train.optimizer.partial("train.optimizer"),
                                spec.train.scheduler.partial("train.scheduler") if spec.train.scheduler else None,
                                select="last")
            with seeding.scoped(spec.seed, "train", 0):  # the dense run's own stream: an exact replay
                fit(module, datamodule, spec.trainer, epochs=spec.train.epochs, max_steps=step)
            state = clone_state(module.net)
            save_state(file, state)
            return state

    with file_lock(path.with_suffix(".lock")):
        final, init, meta_file = path / "final.pt", path / "init.pt", path / "meta.json"
        if final.exists() and init.exists() and meta_file.exists():
            try:
                meta = json.loads(meta_file.read_text())
            except json.JSONDecodeError as exc:
                raise CorruptFileError(f"dense cache file {meta_file} is corrupt ({exc}); delete {path}") from exc
            state = load_state(final, "dense checkpoint")
            return DenseModel(spec.dense_id, path, state, load_state(init, "dense init checkpoint"), meta | {"cached": True}, rewind_state)

        net = build_net().to(device)
        if spec.train.init_from is not None:
            load_pretrained(net, spec.train.init_from)
        init_state = clone_state(net)
        save_state(init, init_state)
        what = (f"evaluating the pretrained model {spec.train.init_from}" if spec.train.init_from and not spec.train.epochs
                else f"dense training {spec.model.name} on {spec.data.name} for {spec.train.epochs} epochs")
        log(f"{what} (seed {spec.seed})")
        module = Classifier(
            net,
            spec.train.optimizer.partial("train.optimizer"),
            spec.train.scheduler.partial("train.scheduler") if spec.train.scheduler else None,
            select=spec.train.select,
        )
        start = time.perf_counter()
        with seeding.scoped(spec.seed, "train", 0):
            if progress is not None:
                progress.start_level(0, epochs=spec.train.epochs, steps_per_epoch=len(datamodule.train_dataloader()))
            result = fit(module, datamodule, spec.trainer, epochs=spec.train.epochs, max_steps=spec.train.max_steps,
                         progress=progress)
        state = clone_state(module.net)
        meta = {
            "dense_id": spec.dense_id,
            "identity": spec.dense_identity(),
            "epochs": result.epochs,
            "best_val_acc": result.best_val_acc,
            "train_seconds": time.perf_counter() - start,
        }
        write_table(path / "epochs.csv", result.history or [{"epoch": 0}])
        # A pretrained model evaluated as it is: one file under both names, not two copies.
        if not (result.epochs == 0 and same_state(state, init_state) and atomic_link(init, final)):
            save_state(final, state)
        atomic_write_text(meta_file, json.dumps(meta, indent=2, default=str))
        return DenseModel(spec.dense_id, path, state, init_state, meta | {"cached": False}, rewind_state)
