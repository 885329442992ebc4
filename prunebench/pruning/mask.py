"""Binary masks over prunable weights: a validated mapping name → 0/1 tensor."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prunebench.errors import CorruptFileError

#: Mask file format written by :meth:`Mask.save` (1: a dict of bool tensors, one byte per weight).
MASK_FORMAT = 2


def pack_bits(keep: torch.Tensor) -> torch.Tensor:
    """A bool tensor as uint8, 8 entries per byte (row-major, numpy.packbits order)."""
    return torch.from_numpy(np.packbits(keep.detach().cpu().reshape(-1).numpy()))


def unpack_bits(bits: torch.Tensor, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """The bool tensor of ``shape`` that :func:`pack_bits` packed into ``bits``."""
    n = int(np.prod(shape, dtype=np.int64))
    if bits.dtype != torch.uint8 or bits.dim() != 1 or bits.numel() != (n + 7) // 8:
        raise ValueError(f"packed mask of {bits.numel()} {bits.dtype} bytes does not hold shape {tuple(shape)}")
    return torch.from_numpy(np.unpackbits(bits.numpy(), count=n).astype(bool)).reshape(tuple(shape))


class Mask(Mapping[str, torch.Tensor]):
    """Parameter name → boolean keep-mask (True = kept). Immutable once built."""

    def __init__(self, masks: Mapping[str, torch.Tensor]) -> None:
        self._masks: dict[str, torch.Tensor] = {}
        for name, m in masks.items():
            if not isinstance(m, torch.Tensor):
                raise TypeError(f"mask for {name!r} is not a tensor")
            if m.dtype != torch.bool:
                if not bool(((m == 0) | (m == 1)).all()):
                    raise ValueError(f"mask for {name!r} has values other than 0 and 1")
                m = m.bool()
            self._masks[name] = m.detach()

    @classmethod
    def ones_like(cls, model: nn.Module, names: Iterable[str]) -> Mask:
        params = dict(model.named_parameters())
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    # Mapping protocol
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    @property
    def numel(self) -> int:
        return sum(m.numel() for m in self._masks.values())

    @property
    def nonzero(self) -> int:
        return sum(int(m.sum()) for m in self._masks.values())

    @property
    def sparsity(self) -> float:
        """Fraction of masked weights removed (0 for an empty mask)."""
        return 1.0 - self.nonzero / self.numel if self.numel else 0.0

    def layer_sparsity(self) -> dict[str, float]:
        return {n: 1.0 - float(m.float().mean()) for n, m in self._masks.items()}

    def report(self) -> list[dict[str, object]]:
        """Rows (layer, numel, nonzero, sparsity) for layers.csv."""
        return [
            {"layer": n, "numel": m.numel(), "nonzero": int(m.sum()), "sparsity": 1.0 - float(m.float().mean())}
            for n, m in self._masks.items()
        ]

    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: m.to(device) for n, m in self._masks.items()})

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the pruned weights of ``model`` in place."""
        params = dict(model.named_parameters())
        for name, m in self._masks.items():
            p = params[name]
            p.mul_(m.to(p.device, p.dtype))

    def save(self, path: str | os.PathLike[str]) -> None:
        from prunebench.results.store import atomic_write_bytes

        # Bit-packed (8 weights per byte); a tensor with nothing pruned stores no bits at all.
        masks: dict[str, dict[str, object]] = {}
        for n, m in self._masks.items():
            entry: dict[str, object] = {"shape": list(m.shape)}
            if not bool(m.all()):
                entry["bits"] = pack_bits(m)
            masks[n] = entry
        buf = io.BytesIO()
        torch.save({"format": MASK_FORMAT, "masks": masks}, buf)
        atomic_write_bytes(Path(path), buf.getvalue())

    @classmethod
    def _from_file(cls, data: object) -> Mask:
        if not isinstance(data, dict):
            raise TypeError(f"expected a dict of tensors, got {type(data).__name__}")
        if "format" not in data:  # format 1: one bool tensor per name
            return cls(data)
        if data["format"] != MASK_FORMAT or not isinstance(data.get("masks"), dict):
            raise TypeError(f"unknown mask format {data['format']!r}")
        out = {}
        for n, entry in data["masks"].items():
            shape = tuple(int(d) for d in entry["shape"])
            bits = entry.get("bits")
            out[n] = torch.ones(shape, dtype=torch.bool) if bits is None else unpack_bits(bits, shape)
        return cls(out)

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module | None = None) -> Mask:
        """Load a mask; a corrupt file or one that does not fit ``model`` raises CorruptFileError."""
        try:
            mask = cls._from_file(torch.load(path, map_location="cpu", weights_only=True))
        except FileNotFoundError:
            raise
        except Exception as exc:  # torch raises many types for garbage input
            from prunebench.results.store import load_failure

            raise CorruptFileError(f"mask file {path} is corrupt: {load_failure(path, exc)}; "
                                   f"delete it to recompute that level") from None
        if model is not None:
            params = dict(model.named_parameters())
            for n, m in mask.items():
                if n not in params or params[n].shape != m.shape:
                    got = tuple(params[n].shape) if n in params else "missing"
                    raise CorruptFileError(
                        f"mask file {path} does not fit the model: {n} has mask shape {tuple(m.shape)}, parameter {got}"
                    )
        return mask

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask) or set(self) != set(other):
            return False
        return all(torch.equal(self[n], other[n]) for n in self)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, sparsity={self.sparsity:.4f})"
