"""Paper-faithful pieces: the residual MLP, prunable biases, and every shipped experiment's claims."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from prunebench import claims
from prunebench.models import build_model
from prunebench.pruning.scopes import ALLOCATIONS
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_residual_mlp_shape_and_params() -> None:
    model = build_model("residual_mlp", (40,), 10)
    # 40·500+500 + 500·500+500 + 500·10+10: the notebook's 40-500-500-10 SparseMLP
    assert sum(p.numel() for p in model.parameters()) == 20_500 + 250_500 + 5_010 == 276_010
    assert model(torch.zeros(3, 40)).shape == (3, 10)


def test_residual_mlp_adds_the_second_layer_to_its_input() -> None:
    model = build_model("residual_mlp", (2,), 2, width=2)
    with torch.no_grad():
        model.fc1.weight.copy_(torch.eye(2)); model.fc1.bias.zero_()
        model.fc2.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, -1.0]])); model.fc2.bias.zero_()
        model.classifier.weight.copy_(torch.eye(2)); model.classifier.bias.zero_()
    # h = relu(x) = [1, 3]; h + relu(fc2 h) = [1 + 2, 3 + 0] = [3, 3]
    assert model(torch.tensor([[1.0, 3.0]])).tolist() == [[3.0, 3.0]]


def test_prune_bias_adds_each_layers_bias_after_its_weight() -> None:
    model = build_model("residual_mlp", (40,), 10, width=8)
    names = [t.param_name for t in prunable_weights(model)]
    assert names == ["fc1.weight", "fc2.weight", "classifier.weight"]
    with_bias = prunable_weights(model, prune_bias=True)
    assert [t.param_name for t in with_bias] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias",
                                                 "classifier.weight", "classifier.bias"]
    assert [t.numel for t in with_bias] == [320, 8, 64, 8, 80, 10]
    no_out = prunable_weights(model, prune_bias=True, prune_output=False)
    assert "classifier.bias" not in [t.param_name for t in no_out]


def test_layer_allocation_prunes_biases_at_the_layer_rate_and_mask_zeroes_them() -> None:
    model = build_model("residual_mlp", (40,), 10, width=8)
    names = [t.param_name for t in prunable_weights(model, prune_bias=True)]
    params = dict(model.named_parameters())
    mask = ALLOCATIONS.get("layer")({n: params[n].detach().abs() for n in names}, Mask.ones_like(model, names), 0.5)
    assert mask.layer_sparsity()["fc1.bias"] == pytest.approx(0.5)
    assert mask.layer_sparsity()["classifier.bias"] == pytest.approx(0.5)
    mask.apply(model)
    assert int((model.fc1.bias == 0).sum()) == 4


EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_claims_parse(name: str) -> None:
    raw = OmegaConf.to_container(OmegaConf.load(CONF / "experiment" / f"{name}.yaml"), resolve=False)
    parsed = claims.parse_claims(raw.get("claims"))
    for c in parsed:
        assert c.paper and c.where  # every claim cites its source


def test_paper_studies_declare_claims() -> None:
    for name in ("lottery_mnist1d_paper", "lottery_lenet_mnist", "han_lenet300"):
        found, source = claims.load_claims("/nonexistent", name, CONF)
        assert found and source.endswith(f"{name}.yaml"), name


def test_lenet_glorot_normal_init() -> None:
    torch.manual_seed(0)
    model = build_model("lenet_300_100", (1, 28, 28), 10, init="glorot_normal")
    w = model.hidden[0].weight
    # std = sqrt(2 / (784 + 300)) = 0.04296
    assert float(w.std()) == pytest.approx((2 / 1084) ** 0.5, rel=0.02)
    assert float(model.hidden[0].bias.abs().sum()) == 0.0
    # retrain=reinit calls reset_parameters: it must draw from the same Glorot distribution.
    from prunebench.engine.rewind import reinitialise

    before = model.hidden[0].weight.clone()
    reinitialise(model, seed=5, level=1)
    w = model.hidden[0].weight
    assert not torch.equal(w, before)
    assert float(w.std()) == pytest.approx((2 / 1084) ** 0.5, rel=0.02) and float(model.hidden[0].bias.abs().sum()) == 0.0
    from prunebench.errors import ConfigError

    with pytest.raises(ConfigError, match="model.init='he' is not a known initialisation; valid: default, glorot_normal"):
        build_model("lenet_300_100", (1, 28, 28), 10, init="he")


def test_mnist1d_claims_cite_the_notebook_cells_in_full() -> None:
    found, _ = claims.load_claims("/nonexistent", "lottery_mnist1d_paper", CONF)
    by_id = {c.id: c for c in found}
    # A bare "#" in YAML starts a comment: the citations are quoted so they survive.
    assert "retrain #92 (sparsity 0.919)" in by_id["ticket_at_92"].where
    assert by_id["ticket_minus_dense_92"].paper_value == pytest.approx(0.75 - 0.656)
