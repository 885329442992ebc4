"""A model for tests/test_batch.py: ``fail=True`` makes every training step raise (evaluation works,
so the run passes its preflight and fails in training, inside a worker process)."""

from __future__ import annotations

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, fail: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)
        self.fail = fail

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail and self.training:
            raise RuntimeError("training step refused on purpose")
        return self.fc(x.flatten(1))


def make_net(input_shape: tuple[int, ...], num_classes: int, fail: bool = False) -> nn.Module:
    return Net(input_shape, num_classes, fail)
