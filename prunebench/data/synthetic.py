"""Synthetic data of any shape, labelled by a fixed random teacher network.

For smoke tests and speed measurements at CIFAR / ImageNet shapes without the files.
Inputs are Gaussian; labels are the argmax of a random two-layer tanh MLP on the
flattened input, so a student can learn them far above chance and accuracy means
something. Image-shaped inputs ``(C, H, W)`` are spatially smooth (Gaussian noise at a
quarter of the resolution, upsampled, plus a little white noise): with a few thousand
samples a 3072-dimensional white-noise task is barely learnable (~20-25 % test accuracy
for an MLP in our check), a smooth one is (~60 %).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prunebench.data.base import TensorDataModule, check_int, mix_seed
from prunebench.errors import ConfigError

TEACHER_HIDDEN = 64
# Inputs that calibrate the teacher (independently of n_train / n_test): 1024, fewer (down
# to 256) at large shapes where drawing them would dominate the set-up time.
REFERENCE_BUDGET = 2**26  # floats
CHUNK = 256  # generate in chunks to bound peak memory at large shapes


def _input_chunks(n: int, shape: tuple[int, ...], gen: torch.Generator) -> Iterator[Tensor]:
    """``n`` Gaussian inputs in chunks (bounded memory at large shapes); smooth ones for images."""
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        if len(shape) == 3 and min(shape[1:]) >= 4:
            c, h, w = shape
            z = torch.randn(m, c, math.ceil(h / 4), math.ceil(w / 4), generator=gen)
            x = F.interpolate(z, size=(h, w), mode="bilinear", align_corners=False)
            yield x + 0.1 * torch.randn(m, c, h, w, generator=gen)
        else:
            yield torch.randn(m, *shape, generator=gen)


def _inputs(n: int, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    return torch.cat([torch.empty(0, *shape), *_input_chunks(n, shape, gen)])


class Teacher:
    """A fixed random 2-layer tanh MLP: ``argmax(tanh(std(x W1)) W2 + b)``.

    Its pre-activations are standardised and its class biases tuned (on a reference
    sample drawn from its own seed) so that every class gets about the same share of the
    inputs: labels are never (nearly) constant, whatever the shape.
    """

    def __init__(self, shape: tuple[int, ...], num_classes: int, seed: int) -> None:
        g = torch.Generator().manual_seed(mix_seed(seed, "teacher"))
        d = math.prod(shape)
        self.w1 = torch.randn(d, TEACHER_HIDDEN, generator=g)
        w2 = torch.randn(TEACHER_HIDDEN, num_classes, generator=g)
        self.w2 = w2 / w2.norm(dim=0, keepdim=True)
        # Only the reference sample's pre-activations are kept: (n_ref, hidden).
        n_ref = min(1024, max(256, REFERENCE_BUDGET // d))
        ref_gen = torch.Generator().manual_seed(mix_seed(seed, "reference"))
        pre = torch.cat([x.flatten(1) @ self.w1 for x in _input_chunks(n_ref, shape, ref_gen)])
        self.mu, self.sigma = pre.mean(0), pre.std(0).clamp_min(1e-8)
        logits = torch.tanh((pre - self.mu) / self.sigma) @ self.w2
        self.bias = torch.zeros(num_classes)
        for _ in range(20):  # push the class frequencies towards uniform
            freq = torch.bincount((logits + self.bias).argmax(1), minlength=num_classes).float() / len(pre)
            self.bias -= 0.5 * torch.log(freq.clamp_min(1e-3) * num_classes)

    def logits(self, x: Tensor) -> Tensor:
        return torch.tanh((x.flatten(1) @ self.w1 - self.mu) / self.sigma) @ self.w2

    def __call__(self, x: Tensor) -> Tensor:
        """Labels (int64) of the inputs ``x``."""
        return (self.logits(x) + self.bias).argmax(1)


class Synthetic(TensorDataModule):
    """Gaussian inputs of ``input_shape`` labelled by a random teacher (``teacher_seed``).

    ``n_train`` samples (validation included) and ``n_test`` test samples; the teacher and
    the inputs depend on ``teacher_seed`` only, never on the training ``seed``.
    """

    name = "synthetic"

    option_defaults = {"val_size": 256}

    def __init__(self, *, input_shape: Sequence[int] = (3, 32, 32), num_classes: int = 10, n_train: int = 2048,
                 n_test: int = 512, teacher_seed: int = 0, **common: Any) -> None:
        super().__init__(**common)
        if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence) or not input_shape or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in input_shape
        ):
            raise ConfigError(f"data.input_shape={input_shape!r} must be a non-empty list of positive integers, "
                              "e.g. [3, 32, 32] or [40]")
        self.shape = tuple(int(s) for s in input_shape)
        if len(self.shape) == 3:
            from prunebench.data.base import check_normalize_channels

            check_normalize_channels(self.normalize, self.shape[0], f"data.input_shape={list(self.shape)}")
        self._num_classes = check_int("num_classes", num_classes, low=2)
        self.n_train = check_int("n_train", n_train, low=2)
        self.n_test = check_int("n_test", n_test, low=1)
        self.teacher_seed = check_int("teacher_seed", teacher_seed, low=0)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        teacher = Teacher(self.shape, self._num_classes, self.teacher_seed)
        # Separate streams: the test set does not shift when n_train changes.
        x = _inputs(self.n_train, self.shape, torch.Generator().manual_seed(mix_seed(self.teacher_seed, "train")))
        x_test = _inputs(self.n_test, self.shape, torch.Generator().manual_seed(mix_seed(self.teacher_seed, "test")))
        return x, teacher(x), x_test, teacher(x_test)
