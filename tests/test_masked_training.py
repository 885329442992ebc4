"""Pruned weights stay exactly zero through retraining, whatever the optimizer."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from prunebench.engine.fit import fit
from prunebench.engine.module import Classifier, evaluate
from prunebench.pruning.allocation import allocate
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights
from prunebench.spec import TrainerSpec


class Batches:
    """An iterable of batches (a bare list would read as several dataloaders to Lightning)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class ListData:
    """The slice of the DataModule API that fit() uses, over fixed in-memory batches."""

    def __init__(self, n: int = 256, batch: int = 32, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(n, 10, generator=g)
        y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
        self.batches = [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]

    def train_dataloader(self) -> Batches:
        return Batches(self.batches)

    def val_dataloader(self) -> Batches:
        return Batches(self.batches[:2])


def pruned_net(sparsity: float) -> tuple[nn.Module, Mask]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    targets = prunable_weights(net)
    mask = Mask.ones_like(net, [t.param_name for t in targets])
    scores = get_criterion("magnitude").fn(net, targets, ScoreContext(mask))
    mask = allocate(scores, mask, sparsity, "layer")
    mask.apply(net)
    return net, mask


OPTIMIZERS = {
    "adam_wd": partial(torch.optim.Adam, lr=0.05, weight_decay=0.1),
    "adamw": partial(torch.optim.AdamW, lr=0.05, weight_decay=0.5),
    "sgd_momentum_wd": partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.1, nesterov=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero(name: str) -> None:
    net, mask = pruned_net(0.8)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    module = Classifier(net, OPTIMIZERS[name], mask=mask)
    result = fit(module, ListData(), TrainerSpec(accelerator="cpu"), epochs=6)
    assert result.epochs == 6
    params = dict(net.named_parameters())
    for n, keep in mask.items():
        p = params[n].detach()
        assert torch.count_nonzero(p[~keep]) == 0, f"{n}: pruned weights regrew under {name}"
        assert not torch.equal(p[keep], before[n][keep]), "survivors should have trained"
    # Optimizer state on pruned positions is zero too (nothing builds up to leak back).
    opt = module.trainer.optimizers[0]
    for n, keep in mask.items():
        state = opt.state[params[n]]
        for key in ("exp_avg", "exp_avg_sq", "momentum_buffer"):
            if key in state:
                assert torch.count_nonzero(state[key][~keep]) == 0, f"{key} nonzero on pruned weights"


def test_selection_restores_best_validation_weights() -> None:
    net, mask = pruned_net(0.5)
    data = ListData()
    module = Classifier(net, partial(torch.optim.SGD, lr=0.5), mask=mask)
    fit(module, data, TrainerSpec(accelerator="cpu"), epochs=5)
    val_accs = [h["val_acc"] for h in module.history if "val_acc" in h]
    assert len(val_accs) == 5
    acc, _ = evaluate(net, data.val_dataloader())
    assert acc == pytest.approx(max(val_accs))


def test_divergence_is_detected() -> None:
    from prunebench.engine.module import DivergedError

    net, mask = pruned_net(0.5)
    with torch.no_grad():
        net[0].weight.fill_(float("nan"))
    module = Classifier(net, partial(torch.optim.SGD, lr=0.1), mask=mask)
    with pytest.raises(DivergedError, match="training loss became nan"):
        fit(module, ListData(), TrainerSpec(accelerator="cpu"), epochs=2)
