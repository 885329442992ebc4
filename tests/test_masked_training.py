"""Pruned weights stay exactly zero through retraining, whatever the optimizer."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from prunebench.engine.fit import fit
from prunebench.engine.module import Classifier, evaluate
from prunebench.pruning.scopes import allocate
from prunebench.pruning.criteria import ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.targets import prunable_weights
from prunebench.spec import TrainerSpec

pytestmark = pytest.mark.integration  # end to end: Lightning fits, surgery on real architectures, figures, kernels


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


@pytest.mark.parametrize("k", [3, 8, 100])
def test_grouped_steps_train_exactly_like_single_steps(k: int) -> None:
    """steps_per_call only groups steps for Lightning: same steps, same order, same weights."""
    results = {}
    for steps in (1, k):
        net, mask = pruned_net(0.5)
        module = Classifier(net, partial(torch.optim.Adam, lr=0.01), mask=mask)
        seen: list[int] = []
        module.step_hooks.append(lambda m: seen.append(m.optimizer_steps))
        fit(module, ListData(n=224), TrainerSpec(accelerator="cpu", steps_per_call=steps), epochs=3)  # 7 batches
        results[steps] = (module.net.state_dict(), module.history, module.optimizer_steps, seen)
    (sd1, hist1, n1, seen1), (sdk, histk, nk, seenk) = results[1], results[k]
    assert n1 == nk == 21 and seen1 == seenk == list(range(1, 22))
    assert [h.get("val_acc") for h in hist1] == [h.get("val_acc") for h in histk]
    for name in sd1:
        assert torch.equal(sd1[name], sdk[name]), name


def test_max_steps_stops_inside_a_group() -> None:
    net, mask = pruned_net(0.5)
    module = Classifier(net, partial(torch.optim.SGD, lr=0.01), mask=mask)
    fit(module, ListData(n=224), TrainerSpec(accelerator="cpu", steps_per_call=4), epochs=5, max_steps=10)
    assert module.optimizer_steps == 10


def test_fused_kernel_is_used_unless_the_config_chooses() -> None:
    from prunebench.engine.module import build_optimizer

    params = [nn.Parameter(torch.zeros(3))]
    assert build_optimizer(partial(torch.optim.Adam, lr=0.1), params).defaults["fused"] is True
    assert not build_optimizer(partial(torch.optim.Adam, lr=0.1), params, fused=False).defaults["fused"]
    assert build_optimizer(partial(torch.optim.Adam, lr=0.1, foreach=True), params).defaults["foreach"] is True
    assert not build_optimizer(partial(torch.optim.Adam, lr=0.1, foreach=True), params).defaults["fused"]
    # no fused kernel: built as given
    assert isinstance(build_optimizer(partial(torch.optim.RMSprop, lr=0.1), params), torch.optim.RMSprop)


def test_fused_and_plain_adam_train_alike() -> None:
    finals = []
    for fused in (True, False):
        net, mask = pruned_net(0.5)
        module = Classifier(net, partial(torch.optim.Adam, lr=0.01), mask=mask, select="last")
        fit(module, ListData(), TrainerSpec(accelerator="cpu", fused_optimizer=fused), epochs=1)
        assert bool(module.trainer.optimizers[0].defaults["fused"]) is fused
        params = dict(module.net.named_parameters())
        finals.append(torch.cat([params[n].detach().flatten() for n in mask]))
    # rounding differences only (biases in front of BatchNorm have ~0 gradients, whose
    # Adam steps are +-lr noise, so they are left out)
    assert (finals[0] - finals[1]).abs().max() < 1e-5


@pytest.mark.parametrize("select, kept, acc, loss", [
    # (val_acc, val_loss) per epoch: accuracy peaks at epoch 1, loss is lowest at epoch 2
    ("best", [True, True, False, False], 0.6, 1.2),
    ("best_loss", [True, True, True, False], 0.5, 0.9),
    ("last", [False, False, False, False], 0.4, 1.5),
])
def test_selection_keeps_the_best_validation_epoch(select: str, kept: list[bool], acc: float, loss: float) -> None:
    net, _ = pruned_net(0.0)
    module = Classifier(net, partial(torch.optim.SGD, lr=0.01), select=select)
    epochs = [(0.5, 1.3), (0.6, 1.2), (0.5, 0.9), (0.4, 1.5)]
    assert [module.consider(a, l) for a, l in epochs] == kept
    assert module.best_val_acc == acc
    if select != "last":
        assert module.best_val_loss == loss and module.best_state is not None


def test_train_select_accepts_best_loss_and_names_the_choices() -> None:
    from conftest import compose_cfg

    from prunebench.errors import ConfigError
    from prunebench.spec import from_config

    spec = from_config(compose_cfg(["train.select=best_loss"]))
    assert spec.train.select == "best_loss" and spec.train.identity()["select"] == "best_loss"
    assert "select" not in from_config(compose_cfg([])).train.identity()  # the default keeps run ids
    with pytest.raises(ConfigError, match="train.select='lowest'.*best, best_loss, last"):
        from_config(compose_cfg(["train.select=lowest"]))
