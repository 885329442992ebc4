"""``residual_mlp``: the masked MLP of Greydanus's MNIST-1D lottery-ticket notebook.

    h = relu(fc1(x)); h = h + relu(fc2(h)); logits = classifier(h)

Source: greydanus/mnist1d, ``notebooks/lottery-tickets.ipynb``, class ``SparseMLP`` (input
40, ``hidden_size=500``, output 10: 40-500-500-10 with the second hidden layer residual).
PyTorch's default ``nn.Linear`` initialisation, as in the notebook.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from prunebench.models.base import check_positive_int, register_model


class ResidualMLP(nn.Module):
    """Flatten → fc1 → ReLU → (+ ReLU(fc2)) residual → classifier."""

    def __init__(self, in_features: int, width: int, num_classes: int) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, width)
        self.fc2 = nn.Linear(width, width)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(self.flatten(x)).relu()
        h = h + self.fc2(h).relu()
        return self.classifier(h)


@register_model("residual_mlp")
def residual_mlp(input_shape: tuple[int, ...], num_classes: int, *, width: int = 500) -> nn.Module:
    """Two hidden layers of ``width``, the second residual (the MNIST-1D lottery-ticket MLP)."""
    return ResidualMLP(math.prod(input_shape), check_positive_int("width", width), num_classes)
