"""Pruning methods composed: criterion × scope × schedule × retrain, gradual/movement, N:M, rewinding.

Registry-driven: every registered criterion, scope and retrain mode is exercised, on a tiny
model through the library API (fast), plus a few end-to-end runs through the real loop.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from prunebench.engine.gradual import GradualPruning, cubic_sparsity, make_plan
from prunebench.engine.retrain import RETRAIN_MODES, RetrainContext
from prunebench.engine.rewind import random_mask_like
from prunebench.errors import ConfigError
from prunebench.pruning.scopes import ALLOCATIONS, allocate
from prunebench.pruning.criteria import CRITERIA, ScoreContext, get_criterion
from prunebench.pruning.mask import Mask
from prunebench.pruning.nm import nm_mask, satisfies_nm
from prunebench.schedules import SCHEDULES, levels
from prunebench.pruning.targets import prunable_weights
from prunebench.spec import RunSpec, ScheduleSpec, TrainerSpec, from_config

STATIC = [c for c in CRITERIA.names() if get_criterion(c).learner is None]


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def batches(seed: int = 0, n: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(10, 8, generator=g), torch.randint(0, 3, (10,), generator=g)) for _ in range(n)]


def prune_levels(criterion: str, scope: str, targets_: list[float], seed: int = 0, nm: tuple[int, int] | None = None):
    """Masks at every level, from the loop's own mask step (prunebench.pruning.step.mask_step)."""
    from prunebench import catalog
    from prunebench.pruning.step import mask_step
    from prunebench.spec import PruningSpec

    net = tiny_net(seed)
    targets = prunable_weights(net)
    mask = Mask.ones_like(net, [t.param_name for t in targets])
    pruning = PruningSpec(
        method=criterion, scope=scope, structure="nm" if nm else "unstructured",
        method_options=catalog.CRITERIA.options(criterion).parse({"rounds": 5} if criterion == "synflow" else {}, "p"),
        structure_options=catalog.NMOptions(*nm) if nm else catalog.UnstructuredOptions(),
    )
    masks = []
    for k, target in enumerate(targets_, start=1):
        gen = torch.Generator().manual_seed(seed * 1000 + k)
        mask = mask_step(net, mask, target, pruning, batches=batches(seed), generator=gen)
        mask.apply(net)
        masks.append(mask)
        with torch.no_grad():  # some "training" between levels so the scores change
            for p in net.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=gen))
            mask.apply(net)
    return masks


def assert_exact(mask: Mask, target: float, scope: str) -> None:
    if scope == "layer":
        for name, m in mask.items():
            assert abs((m.numel() - int(m.sum())) - target * m.numel()) <= 1, name
    else:  # global and erk count over all tensors
        assert abs((mask.numel - mask.nonzero) - target * mask.numel) <= 1


@pytest.mark.parametrize("scope", ALLOCATIONS.names())
@pytest.mark.parametrize("criterion", STATIC)
@pytest.mark.parametrize("schedule", ["one_shot", "iterative"])
def test_every_criterion_scope_schedule_is_exact_monotone_and_deterministic(criterion, scope, schedule) -> None:
    targets_ = levels(schedule, 0.8, 1 if schedule == "one_shot" else 3)
    masks = prune_levels(criterion, scope, targets_)
    for mask, target in zip(masks, targets_, strict=True):
        assert_exact(mask, target, scope)
    for before, after in zip(masks, masks[1:]):
        assert all(not (after[n] & ~before[n]).any() for n in before), "a pruned weight regrew"
    again = prune_levels(criterion, scope, targets_)
    assert all(a == b for a, b in zip(masks, again, strict=True)), "same seed, different masks"


@pytest.mark.parametrize("criterion", STATIC)
def test_nm_with_every_criterion_satisfies_the_group_constraint(criterion) -> None:
    # Input widths 8, 16, 16 are multiples of 4 and 8: 2:4 one shot; linear 4:8 then 2:8.
    (mask,) = prune_levels(criterion, "layer", [0.5], nm=(2, 4))
    assert satisfies_nm(mask, 2, 4) and mask.sparsity == 0.5
    for n, m in mask.items():
        assert bool((m.view(m.shape[0], -1, 4).sum(-1) == 2).all()), n
    first, second = prune_levels(criterion, "layer", [0.5, 0.75], nm=(2, 8))
    assert satisfies_nm(first, 4, 8) and satisfies_nm(second, 2, 8) and second.sparsity == 0.75
    assert all(not (second[n] & ~first[n]).any() for n in first)


# ---- gradual (cubic) schedule ------------------------------------------------------------


def test_cubic_schedule_endpoints_and_monotonicity() -> None:
    s = [cubic_sparsity(t, 0.1, 0.9, t0=5, n=8, dt=10) for t in range(0, 120)]
    assert s[0] == s[5] == pytest.approx(0.1) and s[85] == pytest.approx(0.9) and s[119] == pytest.approx(0.9)
    assert all(b >= a for a, b in zip(s, s[1:]))
    # Zhu & Gupta's formula at a midpoint: 0.9 + (0.1 - 0.9)(1 - 40/80)^3 = 0.8
    assert cubic_sparsity(45, 0.1, 0.9, 5, 8, 10) == pytest.approx(0.8)
    # Fast early, slow late: the first half of the steps removes 7/8 of the way.
    assert s[45] - s[5] == pytest.approx(7 / 8 * 0.8)


def gradual_spec(**options) -> ScheduleSpec:
    from prunebench.catalog import GradualOptions

    return ScheduleSpec("gradual", 0.9, 1, options=GradualOptions.parse(options, "schedule"))


def test_gradual_plan_hits_the_target_exactly_and_rejects_impossible_settings() -> None:
    spec = gradual_spec(frequency=7, end_fraction=0.75)
    plan = make_plan(spec, total_steps=100)
    assert (plan.start, plan.frequency, plan.n, plan.end) == (0, 7, 10, 70)
    assert plan.steps() == list(range(0, 71, 7))
    assert plan.sparsity_at(plan.end) == 0.9 and plan.sparsity_at(0) == 0.0
    with pytest.raises(ConfigError, match="schedule=gradual needs at least one pruning step .* 5 optimizer steps"):
        make_plan(spec, total_steps=5)
    # Types and ranges are the typed options' job, checked when the config is parsed.
    with pytest.raises(ConfigError, match="schedule.frequency=0 is out of range"):
        gradual_spec(frequency=0)
    with pytest.raises(ConfigError, match="schedule.end_fraction=1.5 is out of range"):
        gradual_spec(end_fraction=1.5)
    with pytest.raises(ConfigError, match="schedule.iterations=3 is invalid for schedule=gradual"):
        levels("gradual", 0.9, 3)
    assert levels("gradual", 0.9, 1) == [0.9]  # one level: the end of the ramp


class Batches:
    def __init__(self, b: list) -> None:
        self.b = b

    def __iter__(self):
        return iter(self.b)

    def __len__(self) -> int:
        return len(self.b)


class ListData:
    def __init__(self, n_batches: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n_batches * 16, 8, generator=g)
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
        self.b = [(x[i : i + 16], y[i : i + 16]) for i in range(0, len(x), 16)]

    def train_dataloader(self) -> Batches:
        return Batches(self.b)

    def val_dataloader(self) -> Batches:
        return Batches(self.b[:2])


@pytest.mark.parametrize("criterion", ["magnitude", "movement"])
@pytest.mark.integration
def test_gradual_pruning_during_training_follows_the_cubic_schedule(criterion) -> None:
    from prunebench.engine.fit import fit
    from prunebench.engine.module import Classifier

    net = tiny_net()
    targets = prunable_weights(net)
    mask = Mask.ones_like(net, [t.param_name for t in targets])
    crit = get_criterion(criterion)
    learner = crit.learner(targets) if crit.learner else None
    spec = gradual_spec(frequency=3, end_fraction=0.75)
    plan = make_plan(ScheduleSpec("gradual", 0.8, 1, options=spec.options), 4 * 8)
    masks: list[Mask] = []

    def prune(net, mask, target, learned):
        scores = learned if learned is not None else crit.fn(net, targets, ScoreContext(mask))
        masks.append(allocate(scores, mask, target, "global"))
        return masks[-1]

    cb = GradualPruning(plan, prune, learner)
    module = Classifier(net, partial(torch.optim.Adam, lr=0.01), mask=mask)
    fit(module, ListData(), TrainerSpec(accelerator="cpu", progress=False), epochs=4, callbacks=[cb])
    assert cb.finished and [h["step"] for h in cb.history] == plan.steps() == list(range(0, 25, 3))
    # Zhu & Gupta's cubic ramp from 0 to 0.8 over steps 0..24 (end_fraction 0.75 of 32), by hand:
    np.testing.assert_allclose([h["target"] for h in cb.history],
                               [0.8 * (1 - (1 - t / 24) ** 3) for t in range(0, 25, 3)], rtol=1e-12)
    assert cb.history[-1]["target"] == 0.8
    for h in cb.history:  # every step hits its target exactly (global: within one weight)
        assert abs(h["sparsity"] - h["target"]) * mask.numel <= 1
    assert all(not (b[n] & ~a[n]).any() for a, b in zip(masks, masks[1:]) for n in a)
    final = module.mask
    assert final.nonzero == round(0.2 * final.numel)
    params = dict(module.net.named_parameters())
    assert all(torch.count_nonzero(params[n].detach()[~m]) == 0 for n, m in final.items())
    if learner is not None:  # scores were learned: the final mask is their top-k, not |w|'s
        assert any(s.abs().sum() > 0 for s in learner.scores().values())


# ---- retrain modes ----------------------------------------------------------------------


def retrain_ctx(spec, level: int, saved: dict[str, torch.Tensor], previous: Mask | None = None, calls=None):
    def rewind_state(k: int):
        if calls is not None:
            calls.append(k)
        return saved

    return RetrainContext(spec, level, saved, rewind_state, torch.Generator().manual_seed(0),
                          extras={"previous_mask": previous, "steps_per_epoch": 10})


def fake_spec(**retrain_options) -> SimpleNamespace:
    return SimpleNamespace(seed=3, retrain=SimpleNamespace(options=SimpleNamespace(**retrain_options), epochs=2,
                                                           rewind_step=retrain_options.get("rewind_step", 0)),
                           train=SimpleNamespace(epochs=5, scheduler=None))


def test_retrain_modes_train_and_schedule_as_documented() -> None:
    spec = fake_spec()  # retrain.epochs=2
    trains = {n: (RETRAIN_MODES.get(n).trains, RETRAIN_MODES.get(n).epochs(spec)) for n in RETRAIN_MODES.names()}
    assert trains == {"finetune": (True, 2), "lr_rewind": (True, 2), "none": (False, 0), "random_mask": (True, 2),
                      "reinit": (True, 2), "weight_rewind": (True, 2)}
    # rewinding modes retrain with the dense run's optimizer and schedule; finetune with its own
    assert [n for n in RETRAIN_MODES.names() if getattr(RETRAIN_MODES.get(n), "dense_schedule", False)] == [
        "lr_rewind", "random_mask", "reinit", "weight_rewind"]
    with pytest.raises(ConfigError, match="retrain='rewind' is not a known name; valid: .*weight_rewind"):
        RETRAIN_MODES.get("rewind")


def test_weight_rewind_restores_exactly_the_saved_weights_on_surviving_positions() -> None:
    saved_net = tiny_net(seed=1)
    saved = {k: v.clone() for k, v in saved_net.state_dict().items()}
    net = tiny_net(seed=2)
    (mask,) = prune_levels("magnitude", "global", [0.7], seed=2)
    calls: list[int] = []
    out = RETRAIN_MODES.get("weight_rewind").prepare(net, mask, retrain_ctx(fake_spec(rewind_step=7), 1, saved, calls=calls))
    assert out == mask and calls == [7]
    state = net.state_dict()
    for k, v in saved.items():
        if k in mask:
            assert torch.equal(state[k][mask[k]], v[mask[k]]) and torch.count_nonzero(state[k][~mask[k]]) == 0
        else:
            assert torch.equal(state[k], v)  # biases rewound too
    from prunebench.catalog import RewindOptions

    with pytest.raises(ConfigError, match="retrain.rewind_step=-1 is out of range"):  # checked at parse time
        RewindOptions.parse({"rewind_step": -1}, "retrain")


def test_reinit_keeps_the_mask_with_fresh_deterministic_weights() -> None:
    (mask,) = prune_levels("magnitude", "layer", [0.5])
    nets = [tiny_net(), tiny_net(), tiny_net()]
    saved = nets[0].state_dict()
    mode = RETRAIN_MODES.get("reinit")
    m0 = mode.prepare(nets[0], mask, retrain_ctx(fake_spec(), 1, saved))
    mode.prepare(nets[1], mask, retrain_ctx(fake_spec(), 1, saved))
    mode.prepare(nets[2], mask, retrain_ctx(fake_spec(), 2, saved))
    assert m0 == mask
    w = [dict(n.named_parameters())["0.weight"].detach() for n in nets]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])
    assert not torch.equal(w[0][mask["0.weight"]], tiny_net().state_dict()["0.weight"][mask["0.weight"]])
    assert torch.count_nonzero(w[0][~mask["0.weight"]]) == 0


def test_random_mask_keeps_per_layer_sparsity_inside_the_previous_mask() -> None:
    previous, mask = prune_levels("magnitude", "global", [0.5, 0.8])
    net = tiny_net()
    out = RETRAIN_MODES.get("random_mask").prepare(net, mask, retrain_ctx(fake_spec(), 2, tiny_net(5).state_dict(), previous))
    assert out != mask
    assert {n: int(m.sum()) for n, m in out.items()} == {n: int(m.sum()) for n, m in mask.items()}
    assert all(not (out[n] & ~previous[n]).any() for n in out)  # never regrows
    again = random_mask_like(mask, previous, torch.Generator().manual_seed(1))
    assert again == random_mask_like(mask, previous, torch.Generator().manual_seed(1))


def test_lr_rewind_replays_the_tail_of_the_dense_schedule(compose) -> None:
    spec = from_config(compose(["retrain=lr_rewind", "train.epochs=6", "retrain.epochs=2",
                                "+train.scheduler={_target_: torch.optim.lr_scheduler.StepLR, step_size: 1, gamma: 0.5}"]))
    mode = RETRAIN_MODES.get("lr_rewind")
    opt = mode.optimizer(spec)([nn.Parameter(torch.zeros(1))])
    assert opt.param_groups[0]["lr"] == spec.train.optimizer.kwargs["lr"]  # the dense run's LR, not retrain.lr
    mode.scheduler(spec)(opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(spec.train.optimizer.kwargs["lr"] * 0.5**4)  # last 2 of 6 epochs
    assert mode.epochs(spec) == 2


# ---- validation before training ------------------------------------------------------


def prepare(compose, root: Path, *overrides: str):
    from prunebench.engine.loop import Run

    spec = from_config(compose(["train.epochs=1", "metrics.latency=false", "trainer=cpu", f"paths.root={root}",
                                "data.num_samples=800", *overrides]))
    r = Run(spec, log=lambda m: None)
    r.prepare()
    return r


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["pruning=movement", "schedule=one_shot"], "pruning.method=movement .* needs schedule=gradual .*'one_shot'"),
        (["pruning=nm", "pruning.n=3", "pruning.m=6", "schedule=one_shot", "schedule.target_sparsity=0.5"],
         "pruning.structure=nm with pruning.m=6: layer 'hidden.0' has 40 input features, not a multiple of 6"),
        (["pruning=nm", "schedule=one_shot", "schedule.target_sparsity=0.9"],
         "schedule.target_sparsity=0.9 does not match pruning.structure=nm"),
        (["schedule=gradual", "retrain=none"], "schedule=gradual needs at least one pruning step .* 0 optimizer steps"),
        (["schedule=gradual", "schedule.frequency=1000", "retrain.epochs=1"], "raise retrain.epochs or lower schedule.frequency"),
        (["schedule=gradual", "retrain=random_mask"], "schedule=gradual with retrain=random_mask"),
        (["pruning=movement", "schedule=gradual", "schedule.initial_sparsity=0.5"], "schedule.initial_sparsity=0.5 with pruning.method='movement'"),
        (["retrain=weight_rewind", "retrain.rewind_step=-2"], "retrain.rewind_step=-2 is out of range"),
        (["retrain=random_mask", "retrain.rewind_step=1.5"], "retrain.rewind_step=1.5 must be an integer"),
        (["retrain=weight_rewind", "retrain.rewind_step=100000"], "retrain.rewind_step=100000 is beyond the dense run"),
    ],
)
def test_invalid_combinations_are_rejected_before_training(compose, tmp_path, overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        prepare(compose, tmp_path, *overrides)
    assert not (tmp_path / "cache").exists(), "nothing may train before validation"


def test_schedule_name_errors_list_gradual(compose) -> None:
    with pytest.raises(ConfigError, match="schedule='cubic' is not a known name; valid: gradual, iterative, one_shot"):
        from_config(compose(["schedule.name=cubic"]))


# ---- end to end through the real loop ---------------------------------------------------

E2E = {
    "ticket": ["pruning=magnitude", "schedule.iterations=2", "schedule.target_sparsity=0.8", "retrain=weight_rewind",
               "retrain.rewind_step=3"],
    "gradual_movement": ["pruning=movement", "schedule=gradual", "schedule.target_sparsity=0.8",
                         "schedule.frequency=4", "retrain.epochs=2"],
    "nm_wanda": ["pruning=nm", "pruning.method=wanda", "schedule=one_shot", "schedule.target_sparsity=0.5",
                 "retrain=lr_rewind", "retrain.epochs=1"],
    "snip_erk_random_mask": ["pruning=snip", "pruning.scope=erk", "schedule.iterations=2",
                             "schedule.target_sparsity=0.75", "retrain=random_mask"],
}


def e2e(compose, root: Path, overrides: list[str]):
    from prunebench.engine.loop import run

    spec = from_config(compose(["train.epochs=1", "retrain.epochs=1", "metrics.latency=false", "trainer=cpu",
                                "report=false", f"paths.root={root}", "data.num_samples=1000", *overrides]))
    return spec, run(spec, log=lambda m: None)


@pytest.mark.parametrize("name", sorted(E2E))
@pytest.mark.integration
def test_end_to_end_rows_masks_and_exact_sparsity(compose, tmp_path, name) -> None:
    spec, out = e2e(compose, tmp_path, E2E[name])
    rows = out.rows
    assert out.status == "ok" and list(rows["level"]) == list(range(len(spec.schedule.levels()) + 1))
    assert list(rows["retrain"].unique()) == [spec.retrain.name] and rows["status"].eq("ok").all()
    masks = [Mask.load(out.path / "levels" / f"{k}" / "mask.pt") for k in range(1, len(rows))]
    tensors = len(masks[0])
    for (_, row), mask in zip(rows.iloc[1:].iterrows(), masks, strict=True):
        assert abs(row["sparsity"] - row["target_sparsity"]) * mask.numel <= tensors
        assert row["sparsity"] == pytest.approx(mask.sparsity)
    assert all(not (b[n] & ~a[n]).any() for a, b in zip(masks, masks[1:]) for n in a)
    if spec.pruning.structure == "nm":
        assert all(satisfies_nm(m, 2, 4) for m in masks)
    if spec.schedule.name == "gradual":
        assert rows.iloc[1]["acc_pruned"] == pytest.approx(rows.iloc[0]["test_acc"])  # starts dense (s_i = 0)
        assert rows.iloc[1]["gradual_prune_steps"] >= 2 and masks[-1].sparsity == pytest.approx(0.8, abs=1e-3)


@pytest.mark.integration
def test_same_seed_same_masks_and_numbers(compose, tmp_path) -> None:
    _, a = e2e(compose, tmp_path / "a", E2E["ticket"])
    _, b = e2e(compose, tmp_path / "b", E2E["ticket"])
    cols = ["level", "sparsity", "acc_pruned", "val_acc", "test_acc", "test_loss"]
    assert a.rows[cols].equals(b.rows[cols])
    for k in (1, 2):
        assert Mask.load(a.path / "levels" / f"{k}" / "mask.pt") == Mask.load(b.path / "levels" / f"{k}" / "mask.pt")


_ = (math, RunSpec)


# ---- Frankle & Carbin's slower output layer; the lottery study configs --------------------


def test_output_rate_prunes_the_output_layer_at_its_own_per_round_rate() -> None:
    from prunebench.pruning.scopes import allocate_split, output_rate_target

    assert output_rate_target(1 - 0.8**3, 0.2, 0.1) == pytest.approx(1 - 0.9**3)
    assert output_rate_target(0.0, 0.2, 0.1) == 0.0
    net = tiny_net()
    scores = get_criterion("magnitude").fn(net, prunable_weights(net), ScoreContext(Mask.ones_like(net, [])))
    mask = Mask.ones_like(net, list(scores))
    out = allocate_split(scores, mask, {"": 0.5, "4.weight": 0.25}, "layer")
    assert out.layer_sparsity() == {"0.weight": 0.5, "2.weight": 0.5, "4.weight": 0.25}


@pytest.mark.integration
def test_output_rate_end_to_end_and_its_validation(compose, tmp_path) -> None:
    spec, out = e2e(compose, tmp_path, ["pruning.scope=layer", "+pruning.output_rate=0.1", "schedule.iterations=2",
                                        "schedule.target_sparsity=0.36", "retrain=weight_rewind"])
    mask = Mask.load(out.path / "levels" / "2" / "mask.pt")
    dens = mask.layer_sparsity()
    assert dens["hidden.0.weight"] == pytest.approx(0.36, abs=1e-2) and dens["classifier.weight"] == pytest.approx(0.19, abs=1e-2)
    with pytest.raises(ConfigError, match="pruning.output_rate=0.1 .* needs pruning.scope=layer .* got scope='global'"):
        prepare(compose, tmp_path, "+pruning.output_rate=0.1")
    with pytest.raises(ConfigError, match="pruning.output_rate=1.5 is out of range"):
        prepare(compose, tmp_path, "pruning.scope=layer", "+pruning.output_rate=1.5")


@pytest.mark.parametrize("experiment", ["lottery_mnist1d", "lottery_lenet_mnist"])
def test_lottery_study_configs_expand_to_ticket_and_reinit_runs(compose, experiment) -> None:
    cfg = compose([f"experiment={experiment}"])
    study = cfg["study"]
    assert {"ticket", "reinit"} <= set(study["variants"]) and len(study["seeds"]) >= 2
    specs = {name: from_config(compose([f"experiment={experiment}", *ov, "study=null"]))
             for name, ov in study["variants"].items()}
    assert specs["ticket"].retrain.name == "weight_rewind" and specs["reinit"].retrain.name == "reinit"
    assert specs["ticket"].dense_id == specs["reinit"].dense_id  # one dense model shared by both arms
    assert specs["ticket"].retrain.epochs == specs["ticket"].train.epochs  # full retraining per round
    levels_ = specs["ticket"].schedule.levels()
    assert levels_[-1] > 0.9
    if experiment == "lottery_lenet_mnist":
        assert specs["ticket"].train.optimizer.kwargs["lr"] == 0.0012 and specs["ticket"].data.kwargs["batch_size"] == 60
        from prunebench.schedules import per_round_rate

        assert per_round_rate(levels_[-1], len(levels_)) == pytest.approx(0.2, abs=1e-5)
        assert specs["ticket"].pruning.options["output_rate"] == 0.1


# ---- the whole retrain × schedule matrix end to end (slow) ---------------------------------

INVALID = {("none", "gradual"): "schedule=gradual needs at least one pruning step",
           ("random_mask", "gradual"): "schedule=gradual with retrain=random_mask"}


@pytest.mark.slow
@pytest.mark.parametrize("retrain", RETRAIN_MODES.names())
@pytest.mark.parametrize("schedule", SCHEDULES.names())
def test_every_retrain_mode_with_every_schedule_end_to_end(compose, tmp_path, schedule, retrain) -> None:
    overrides = [f"schedule={schedule}", f"retrain={retrain}", "schedule.target_sparsity=0.75"]
    # retrain=none refuses a nonzero retrain.epochs (it would be ignored); e2e's default is 1
    overrides.append("retrain.epochs=1" if retrain != "none" else "retrain.epochs=0")
    if schedule == "iterative":
        overrides.append("schedule.iterations=2")
    if schedule == "gradual":
        overrides += ["pruning=movement", "schedule.frequency=1"] + (["retrain.epochs=2"] if retrain != "none" else [])
    if (retrain, schedule) in INVALID:
        with pytest.raises(ConfigError, match=INVALID[retrain, schedule]):
            e2e(compose, tmp_path, overrides)
        return
    spec, out = e2e(compose, tmp_path, overrides)
    rows = out.rows
    assert out.status == "ok" and len(rows) == len(spec.schedule.levels()) + 1
    masks = [Mask.load(out.path / "levels" / f"{k}" / "mask.pt") for k in range(1, len(rows))]
    for (_, row), mask in zip(rows.iloc[1:].iterrows(), masks, strict=True):
        assert abs(row["sparsity"] - row["target_sparsity"]) * mask.numel <= len(mask)
    assert all(not (b[n] & ~a[n]).any() for a, b in zip(masks, masks[1:]) for n in a)
    if retrain == "none":
        assert (rows["acc_pruned"].iloc[1:] == rows["test_acc"].iloc[1:]).all()


def test_early_stopping_point_is_the_epoch_of_minimum_validation_loss() -> None:
    from prunebench.engine.rows import early_stop_columns

    history = [{"epoch": 0, "val_loss": 0.9, "train_loss": 1.0}, {"epoch": 1, "val_loss": 0.5},
               {"epoch": 2, "val_loss": 0.5}, {"epoch": 3, "val_loss": float("nan")}, {"epoch": 4, "val_loss": 0.7}]
    assert early_stop_columns(history, 100) == {"early_stop_epoch": 2, "early_stop_iteration": 200,
                                                "early_stop_val_loss": 0.5}
    assert early_stop_columns([{"epoch": 0, "train_loss": 1.0}], 100) == {}
