"""Fully connected networks: ``mlp`` (any widths) and ``lenet_300_100`` (LeCun et al. 1998)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from prunebench.errors import ConfigError
from prunebench.models.base import check_widths, register_model

#: Weight initialisations a factory can ask for; "default" is PyTorch's nn.Linear init.
INITS = ("default", "glorot_normal")


class GlorotLinear(nn.Linear):
    """``nn.Linear`` initialised N(0, 2 / (fan_in + fan_out)) with zero bias: the Gaussian
    Glorot init of Frankle & Carbin 2019 (Figure 2's table).

    The init lives in ``reset_parameters``, so a control that re-initialises a model
    (retrain=reinit calls every module's ``reset_parameters``) draws from the same
    distribution as the original initialisation.
    """

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


def linear_class(init: str) -> type[nn.Linear]:
    """The Linear class for ``model.init`` (ConfigError listing the valid names)."""
    if init not in INITS:
        raise ConfigError(f"model.init={init!r} is not a known initialisation; valid: {', '.join(INITS)}")
    return GlorotLinear if init == "glorot_normal" else nn.Linear


class MLP(nn.Module):
    """Flatten → (Linear → ReLU) per hidden width → Linear classifier."""

    def __init__(self, in_features: int, widths: Sequence[int], num_classes: int,
                 linear: type[nn.Linear] = nn.Linear) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        layers: list[nn.Module] = []
        d = in_features
        for w in widths:
            layers += [linear(d, w), nn.ReLU()]
            d = w
        self.hidden = nn.Sequential(*layers)
        self.classifier = linear(d, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.hidden(self.flatten(x)))


@register_model("mlp")
def mlp(input_shape: tuple[int, ...], num_classes: int, *, widths: Sequence[int] = (100, 100)) -> nn.Module:
    """MLP on the flattened input with ReLU hidden layers of the given ``widths``."""
    return MLP(math.prod(input_shape), check_widths("widths", widths), num_classes)


@register_model("lenet_300_100")
def lenet_300_100(input_shape: tuple[int, ...], num_classes: int, *, init: str = "default") -> nn.Module:
    """LeNet-300-100: flatten → 300 → 100 → classes, the classic MNIST pruning baseline.

    ``init="glorot_normal"`` gives Frankle & Carbin's Gaussian Glorot initialisation.
    """
    return MLP(math.prod(input_shape), [300, 100], num_classes, linear_class(init))
