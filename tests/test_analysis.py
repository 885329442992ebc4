"""Layer sensitivity analysis on a model with hand-set weights, where the answer is known."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
import torch
from torch import nn

from prunebench import plots
from prunebench.analysis import COLUMNS, layer_sensitivity
from prunebench.errors import ConfigError


def hand_net() -> nn.Sequential:
    """first: near-identity (its small off-diagonals do not matter on our data);
    head: the class is decided by its SMALL weights (±0.1 on x1), so magnitude pruning
    at 50% removes exactly the weights that decide, leaving tied logits."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.01], [0.01, 1.0]]))
        net[1].weight.copy_(torch.tensor([[1.0, 0.1], [1.0, -0.1]]))
    return net


def data(n: int = 100) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """x0 in [-1, 1]; |x1| in [0.5, 1], half positive: label 0 iff x1 > 0 (the net is exact)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(n, generator=g) * 2 - 1
    x1 = (torch.rand(n, generator=g) * 0.5 + 0.5) * torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)
    x = torch.stack([x0, x1], 1)
    y = (x1 < 0).long()
    return [(x[:50], y[:50]), (x[50:], y[50:])]


class FakeDM:
    """Validation batches only; touching the test split fails the test."""

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches
        self.calibration_calls: list[int] = []

    def val_dataloader(self) -> Any:
        return self.batches

    def test_dataloader(self) -> Any:
        raise AssertionError("sensitivity analysis must not read the test split")

    def calibration_batches(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        self.calibration_calls.append(n)
        return self.batches[:n]


def test_known_sensitivities_columns_and_shape() -> None:
    net = hand_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sens = layer_sensitivity(net, FakeDM(data()), [0.0, 0.5])
    assert list(sens.columns) == COLUMNS
    assert sens.shape == (4, len(COLUMNS))  # 2 layers x 2 sparsities
    assert list(sens["layer"]) == ["0", "0", "1", "1"] and list(sens["param"]) == ["0.weight"] * 2 + ["1.weight"] * 2
    assert list(sens["sparsity"]) == [0.0, 0.5, 0.0, 0.5]
    assert list(sens["achieved"]) == [0.0, 0.5, 0.0, 0.5]
    assert set(sens["split"]) == {"val"} and set(sens["method"]) == {"magnitude"}
    assert (sens["numel"] == 4).all() and (sens["acc_dense"] == 1.0).all()
    acc = sens.set_index(["layer", "sparsity"])["acc"]
    # Pruning the first layer's off-diagonals cannot change a prediction on this data.
    assert acc[("0", 0.0)] == 1.0 and acc[("0", 0.5)] == 1.0
    # Pruning the head's two small weights ties the logits: argmax picks class 0 = half the data.
    assert acc[("1", 0.0)] == 1.0 and acc[("1", 0.5)] == 0.5
    assert sens.set_index(["layer", "sparsity"])["drop"][("1", 0.5)] == pytest.approx(0.5)
    # The original model is untouched.
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_plain_batches_layer_subset_and_output_flag() -> None:
    batches = data()
    sens = layer_sensitivity(hand_net(), batches, [0.25, 0.5, 0.75], layers=["1"])
    assert list(sens["layer"].unique()) == ["1"] and len(sens) == 3
    assert list(sens["achieved"]) == [0.25, 0.5, 0.75]
    only_first = layer_sensitivity(hand_net(), batches, [0.5], prune_output=False)
    assert list(only_first["layer"]) == ["0"]


def test_plot_takes_the_table() -> None:
    sens = layer_sensitivity(hand_net(), data(), [0.0, 0.5, 0.75])
    ax = plots.layer_sensitivity(sens)
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert set(lines) == {"0", "1"}
    assert list(lines["1"].get_ydata()[:2]) == [100.0, 50.0]


def test_data_driven_criterion_uses_training_batches() -> None:
    from prunebench.pruning.criteria import CRITERIA

    name = next((n for n in ("snip", "taylor") if n in CRITERIA.names()), None) if hasattr(CRITERIA, "names") else None
    if name is None:
        pytest.skip("no data-driven criterion registered")
    dm = FakeDM(data())
    sens = layer_sensitivity(hand_net(), dm, [0.5], method=name, calibration_batches=2)
    assert dm.calibration_calls == [2] and len(sens) == 2 and set(sens["method"]) == {name}


def test_bad_input_is_named() -> None:
    with pytest.raises(ConfigError, match="sparsity=1"):
        layer_sensitivity(hand_net(), data(), [0.5, 1.0])
    with pytest.raises(ConfigError, match="sparsities is empty"):
        layer_sensitivity(hand_net(), data(), [])
    with pytest.raises(ConfigError, match=r"layers \['nope'\].*valid: 0, 1"):
        layer_sensitivity(hand_net(), data(), [0.5], layers=["nope"])
    with pytest.raises(ConfigError, match="no_such_method"):
        layer_sensitivity(hand_net(), data(), [0.5], method="no_such_method")


def test_sensitivity_table_round_trips_csv(tmp_path: Any) -> None:
    sens = layer_sensitivity(hand_net(), data(), [0.5])
    sens.to_csv(tmp_path / "s.csv", index=False)
    back = pd.read_csv(tmp_path / "s.csv", dtype={"layer": str})
    assert back.shape == sens.shape and list(back["acc"]) == list(sens["acc"])
