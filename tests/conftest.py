"""Shared fixtures: compose the real Hydra config with tiny, CPU-only settings."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PL_DISABLE_FORK", "1")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

#: Overrides that make any run tiny: a few epochs, no latency timing, CPU.
TINY = [
    "train.epochs=2",
    "retrain.epochs=1",
    "metrics.latency=false",
    "trainer=cpu",
    "report=false",
]


def compose_cfg(overrides: Sequence[str]) -> dict[str, Any]:
    """The composed config as plain containers, as the CLI sees it (without hydra keys)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    plain = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(plain, dict)
    plain.pop("hydra", None)
    return plain


@pytest.fixture
def compose() -> Callable[[Sequence[str]], dict[str, Any]]:
    return compose_cfg


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    root.mkdir()
    return root
