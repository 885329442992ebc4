"""One seeding policy: every random stream derives from (seed, purpose, level).

OpenLTH seeds each purpose separately; so does prunebench. Streams never share a
generator across levels, so skipping finished levels on resume leaves every later
stream exactly where an uninterrupted run has it: a resumed run is bit-identical.

Purposes (the only ones library code uses):

========== =====================================================================
init        model initialisation (global RNG, scoped: :func:`scoped`)
split       the validation split (data modules: ``mix_seed(split_seed, "val")``)
order       training batch order per epoch (data modules: ``mix_seed(seed, epoch)``)
augment     training-batch augmentation per epoch (``mix_seed(seed, epoch, "transform")``)
train       in-training randomness (dropout) of the dense phase (level 0) and of
            each level's retraining (level k), global RNG, scoped
criterion   a criterion's randomness at level k (random scores, SynFlow's input)
reinit      the ``reinit`` control's fresh weights at level k
random_mask the ``random_mask`` control's mask at level k
calibration which training batches calibration-based criteria see
            (data modules: ``mix_seed(seed, "calibration")``)
regrow      dynamic sparse training's random regrowth (SET) at level k, optimizer
            step t: ``(seed, "regrow", k, t)``, one fresh stream per update
========== =====================================================================

Library code never calls ``torch.manual_seed`` on the global generator; where a module
draws from the global RNG (``nn.Module`` constructors, dropout) it runs inside
:func:`scoped`, which forks the RNG state and restores it afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from typing import Any

PURPOSES = ("init", "split", "order", "augment", "train", "criterion", "reinit", "random_mask", "calibration",
            "teacher", "data", "regrow")


def derive(seed: int, purpose: str, *parts: Any) -> int:
    """A 63-bit seed for ``purpose`` (and any further parts, e.g. the level) of run seed ``seed``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown seeding purpose {purpose!r}; known: {', '.join(PURPOSES)}")
    return mix_seed(seed, purpose, *parts)


def mix_seed(*parts: object) -> int:
    """A stable 63-bit seed from several parts, e.g. ``(seed, epoch)`` or ``(seed, "calibration")``.

    Hashing (rather than ``seed + epoch``) keeps (seed=0, epoch=1) and (seed=1, epoch=0)
    from sharing a stream; the same on every machine.
    """
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def generator(seed: int, purpose: str, *parts: Any, device: Any = "cpu") -> Any:
    """A fresh ``torch.Generator`` for one stream."""
    import torch

    return torch.Generator(device=device).manual_seed(derive(seed, purpose, *parts))


@contextlib.contextmanager
def scoped(seed: int, purpose: str, *parts: Any) -> Iterator[None]:
    """Run a block on the global RNG seeded for one stream, restoring the caller's state after.

    For code that can only draw from the global generator (module constructors, dropout).
    """
    import torch

    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(derive(seed, purpose, *parts))
        yield
