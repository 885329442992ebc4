"""Dynamic sparse training (static, SET, RigL): the schedule, the update, and the invariants in training.

- the cosine drop fraction and the update steps are RigL's;
- one update drops the least-magnitude live weights and regrows as many by the grow score,
  so every layer keeps its count exactly;
- in a real fit, under every optimizer the loop supports: pruned weights are exactly zero
  after every optimizer step, every update keeps each layer's allocated count, new
  connections start at exactly zero with zeroed optimizer state;
- through the level loop: rows record the updates, bad options fail before training, and
  a level interrupted mid-fit and redone is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from prunebench import catalog
from prunebench.engine.fit import fit
from prunebench.engine.module import Classifier
from prunebench.engine.sparse_training import (DSTPlan, DynamicSparseTraining, cosine_drop_fraction, make_dst_plan,
                                               turnover, update_layer)
from prunebench.errors import ConfigError
from prunebench.pruning.mask import Mask
from prunebench.pruning.scopes import allocate
from prunebench.spec import TrainerSpec

# ---- the schedule -----------------------------------------------------------------------------


def test_cosine_drop_fraction_is_rigl_schedule() -> None:
    assert cosine_drop_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert cosine_drop_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert cosine_drop_fraction(25, 0.3, 100) == pytest.approx(0.15 * (1 + math.cos(math.pi / 4)))
    assert cosine_drop_fraction(100, 0.3, 100) == 0.0
    assert cosine_drop_fraction(150, 0.3, 100) == 0.0


def test_plan_steps_every_delta_t_before_t_end() -> None:
    opts = catalog.DSTOptions(update="rigl", delta_t=10, drop_fraction=0.3, end_fraction=0.75)
    plan = make_dst_plan(opts, 100)
    assert plan.t_end == 75
    assert plan.steps() == [10, 20, 30, 40, 50, 60, 70]
    assert make_dst_plan(catalog.DSTOptions(update="static"), 10).steps() == []


def test_plan_without_any_update_is_a_config_error() -> None:
    opts = catalog.DSTOptions(update="set", delta_t=100, end_fraction=0.75)
    with pytest.raises(ConfigError, match=r"pruning.update='set' never updates the mask: training has 120 optimizer "
                                          r"steps .* stops updates at step 90 and pruning.delta_t=100"):
        make_dst_plan(opts, 120)


# ---- one update ---------------------------------------------------------------------------------


def test_update_layer_drops_least_magnitude_and_regrows_highest_score() -> None:
    w = torch.tensor([[0.0, 5.0, -0.1, 0.0], [3.0, 0.0, -0.2, 4.0]])
    keep = w != 0  # 5 live
    grow = torch.tensor([[9.0, 0.0, 0.0, 1.0], [0.0, 8.0, 0.0, 0.0]])
    new, grown = update_layer(w, keep, 0.5, grow)  # floor(0.5 * 5) = 2 dropped: -0.1 and -0.2
    assert int(new.sum()) == 5
    expected = torch.tensor([[True, True, False, False], [True, True, False, True]])
    assert torch.equal(new, expected)
    assert torch.equal(grown, torch.tensor([[True, False, False, False], [False, True, False, False]]))


def test_update_layer_regrows_a_just_dropped_weight_without_resetting_it() -> None:
    w = torch.tensor([1.0, 2.0, 0.0, 0.0])
    keep = torch.tensor([True, True, False, False])
    grow = torch.tensor([7.0, 0.0, 1.0, 0.5])  # the dropped weight (1.0) has the best gradient
    new, grown = update_layer(w, keep, 0.5, grow)
    assert torch.equal(new, keep)  # dropped and regrown: the same mask
    assert not grown.any()  # not a new connection: its value is kept


@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.77, 1.0])
def test_update_layer_keeps_the_exact_count(fraction: float) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(37, 23, generator=g)
    keep = torch.rand(37, 23, generator=g) < 0.2
    w = w * keep
    live = int(keep.sum())
    new, grown = update_layer(w, keep, fraction, torch.rand(37, 23, generator=g))
    assert int(new.sum()) == live
    assert int((keep & ~new).sum()) - int((grown & ~keep).sum()) == 0 or int(grown.sum()) <= int(fraction * live)
    assert not (grown & keep).any()  # new connections were dead before
    assert int(grown.sum()) <= int(fraction * live)


def test_turnover() -> None:
    a = Mask({"w": torch.tensor([True, True, False, False])})
    b = Mask({"w": torch.tensor([True, False, True, False])})
    assert turnover(a, a) == 0.0
    assert turnover(a, b) == 0.5


# ---- in a real fit ------------------------------------------------------------------------------


class _Data(pl.LightningDataModule):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(256, 12, generator=g)
        self.y = (self.x[:, :4].argmax(1))

    def train_dataloader(self) -> Any:
        ds = torch.utils.data.TensorDataset(self.x[:192], self.y[:192])
        return torch.utils.data.DataLoader(ds, batch_size=16, shuffle=False)

    def val_dataloader(self) -> Any:
        ds = torch.utils.data.TensorDataset(self.x[192:], self.y[192:])
        return torch.utils.data.DataLoader(ds, batch_size=64)


OPTIMIZERS = {
    "sgd_momentum_wd": partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3),
    "adam": partial(torch.optim.Adam, lr=1e-2),
    "adamw": partial(torch.optim.AdamW, lr=1e-2, weight_decay=0.1),
}


class _Checker(pl.Callback):
    """After every optimizer step (and after the DST's own hook): the invariants, asserted."""

    def __init__(self, dst: DynamicSparseTraining, counts: dict[str, int]) -> None:
        self.dst, self.counts = dst, counts
        self.steps_checked = 0
        self.updates_checked = 0
        self._previous: Mask | None = None

    def on_train_start(self, trainer: pl.Trainer, module: Any) -> None:
        self._previous = module.mask
        self.opt = trainer.optimizers[0]
        module.step_hooks.append(self._check)  # after the DST's hook (its callback started first)

    def _check(self, module: Any) -> None:
        params = dict(module.net.named_parameters())
        mask = module.mask
        for n, m in mask.items():
            assert bool((params[n].detach()[~m] == 0).all()), f"step {module.optimizer_steps}: {n} has live zeros"
            assert int(m.sum()) == self.counts[n], f"step {module.optimizer_steps}: {n} count moved"
        if mask is not self._previous:  # an update just happened
            assert self.dst.history and self.dst.history[-1]["step"] == module.optimizer_steps
            for n, m in mask.items():
                new = m & ~self._previous[n]
                assert bool((params[n].detach()[new] == 0).all()), "a regrown weight does not start at zero"
                for v in self.opt.state.get(params[n], {}).values():
                    if isinstance(v, torch.Tensor) and v.shape == m.shape:
                        assert bool((v[new] == 0).all()), "optimizer state not reset at a new connection"
            self.updates_checked += 1
            self._previous = mask
        self.steps_checked += 1


def _fit_dst(update: str, optimizer: Any, scope: str = "erk", delta_t: int = 3) -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))
    names = [f"{i}.weight" for i in (0, 2, 4)]
    ones = Mask.ones_like(net, names)
    scores = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(3)) for n, p in net.named_parameters()
              if n in names}
    mask = allocate(scores, ones, 0.8, scope)
    mask.apply(net)
    counts = {n: int(m.sum()) for n, m in mask.items()}
    steps = 3 * 12  # 3 epochs of 12 batches
    plan = make_dst_plan(catalog.DSTOptions(update=update, delta_t=delta_t, drop_fraction=0.5), steps)
    dst = DynamicSparseTraining(plan, seed=0, level=1)
    checker = _Checker(dst, counts)
    module = Classifier(net, optimizer, mask=mask, select="last")
    fit(module, _Data(), TrainerSpec(accelerator="cpu"), epochs=3, callbacks=[dst, checker])
    return module, dst, checker


@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("update", ["set", "rigl"])
def test_invariants_hold_at_every_step_under_every_optimizer(update: str, opt: str) -> None:
    module, dst, checker = _fit_dst(update, OPTIMIZERS[opt])
    assert checker.steps_checked == 36
    assert [h["step"] for h in dst.history] == [3, 6, 9, 12, 15, 18, 21, 24]  # t_end = 27
    assert checker.updates_checked == len(dst.history)  # every update changed the mask
    assert sum(h["regrown"] for h in dst.history) > 0
    cols = dst.columns()
    assert cols["dst_updates"] == 8 and cols["dst_update"] == update
    assert 0 < cols["dst_turnover"] <= 1
    # the final mask is at exactly the allocated per-layer counts and the weights obey it
    params = dict(module.net.named_parameters())
    for n, m in module.mask.items():
        assert int(m.sum()) == int(dst.first_mask[n].sum())
        assert bool((params[n].detach()[~m] == 0).all())


def test_static_never_moves_the_mask() -> None:
    module, dst, checker = _fit_dst("static", OPTIMIZERS["adam"])
    assert dst.history == [] and checker.updates_checked == 0
    assert module.mask is dst.first_mask
    assert dst.columns()["dst_turnover"] == 0.0


def test_rigl_regrows_where_the_dense_gradient_is_largest() -> None:
    """At an update the new connections are the dead weights of largest |grad| of that step's batch."""
    seen: dict[str, Any] = {}
    original = DynamicSparseTraining._update

    def spy(self: DynamicSparseTraining, module: Any, step: int) -> None:
        if not seen:
            seen["grads"] = {n: g.clone() for n, g in (self._grads or {}).items()}
            seen["old"] = module.mask
        original(self, module, step)
        if "new" not in seen:
            seen["new"] = module.mask

    DynamicSparseTraining._update = spy  # type: ignore[method-assign]
    try:
        _fit_dst("rigl", OPTIMIZERS["sgd_momentum_wd"])
    finally:
        DynamicSparseTraining._update = original  # type: ignore[method-assign]
    for n, g in seen["grads"].items():
        old, new = seen["old"][n], seen["new"][n]
        grown = new & ~old
        assert grown.any()
        # every new connection's |grad| is at least that of any dead weight left out
        left_out = ~new & ~old
        assert float(g[grown].min()) >= float(g[left_out].max())


@pytest.mark.integration
def test_set_regrowth_is_seeded_per_level_and_step() -> None:
    a = _fit_dst("set", OPTIMIZERS["adam"])[0].mask
    b = _fit_dst("set", OPTIMIZERS["adam"])[0].mask
    assert a == b


def test_rigl_plan_uses_floor_counts() -> None:
    plan = DSTPlan("rigl", 1, 0.3, 10)
    assert plan.steps() == list(range(1, 10))
    w = torch.arange(1.0, 11.0)
    new, grown = update_layer(w, torch.ones(10, dtype=torch.bool), 0.29, torch.zeros(10))
    assert int((~new).sum()) == 0  # floor(2.9) = 2 dropped, 2 regrown among {dropped}: same mask
    new, _ = update_layer(w, torch.ones(10, dtype=torch.bool), 0.29, None)
    assert int(new.sum()) == 8


# ---- through the level loop ---------------------------------------------------------------------

TINY = ["data=synthetic", "data.input_shape=[16]", "data.n_train=256", "data.n_test=64", "data.val_size=64",
        "data.batch_size=32", "model.widths=[24,24]", "train.epochs=2", "metrics.latency=false", "trainer=cpu",
        "report=false", "schedule=one_shot", "schedule.target_sparsity=0.9", "retrain=weight_rewind",
        "pruning.delta_t=2"]


def _spec(compose: Any, root: Path, overrides: list[str]) -> Any:
    from prunebench.spec import from_config

    return from_config(compose([*TINY, *overrides, f"paths.root={root}", f"paths.data_dir={root / 'data'}"]))


@pytest.mark.integration
@pytest.mark.parametrize("pruning", ["rigl", "set", "static"])
def test_loop_rows_record_the_updates(compose: Any, tmp_path: Path, pruning: str) -> None:
    from prunebench.engine.loop import Run

    spec = _spec(compose, tmp_path, [f"pruning={pruning}"])
    r = Run(spec, log=lambda m: None)
    r.prepare()
    out = r.execute()
    assert out.status == "ok"
    row = out.rows[out.rows["level"] == 1].iloc[0]
    assert row["structure"] == "dst" and row["dst_update"] == pruning
    # 2 epochs x 6 batches = 12 steps, t_end = 9: updates at 2, 4, 6, 8
    assert row["dst_updates"] == (0 if pruning == "static" else 4)
    # the mask is exact; a live weight may still be exactly zero (a regrown weight whose gradient stayed
    # zero, e.g. from a dead unit), so the nonzero-based sparsity is at least the target
    assert row["sparsity"] >= 0.9 - 3 / row["prunable_params"]
    hist = pd.read_csv(r.path / "levels" / "1" / "dst.csv")
    assert len(hist) == max(row["dst_updates"], 1)
    if pruning != "static":
        assert list(hist["step"]) == [2, 4, 6, 8]
        assert row["dst_turnover"] == pytest.approx(hist["turnover"].iloc[-1])
        assert row["dst_turnover"] > 0
    # per layer exactly the ERK counts the level started with
    mask = Mask.load(r.path / "levels" / "1" / "mask.pt")  # bit-packed on disk
    layers = pd.read_csv(r.path / "levels" / "1" / "layers.csv")
    assert int(sum(int(v.sum()) for v in mask.values())) == int(round(0.1 * row["prunable_params"]))
    assert len(layers) == 3


@pytest.mark.parametrize("overrides, message", [
    (["pruning=rigl", "schedule=iterative", "schedule.iterations=2"],
     "pruning.structure='dst' trains one sparse level whose mask moves; it needs schedule=one_shot"),
    (["pruning=rigl", "pruning.scope=row"], "pruning.scope='row' is not supported, use erk, layer or global"),
    (["pruning=rigl", "pruning.delta_t=50"], "pruning.update='rigl' never updates the mask: training has 12"),
    (["pruning=rigl", "retrain=none", "retrain.epochs=0"], "needs a retraining mode that trains"),
])
def test_bad_dst_config_fails_before_training(compose: Any, tmp_path: Path, overrides: list[str],
                                              message: str) -> None:
    from prunebench.engine.loop import Run

    spec = _spec(compose, tmp_path, overrides)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Run(spec, log=lambda m: None).prepare()
    assert not (tmp_path / "dense").exists() or not any((tmp_path / "dense").rglob("final.pt"))


@pytest.mark.parametrize("key, value, message", [
    ("update", "rigl2", "pruning.update='rigl2'"),
    ("delta_t", 0, "pruning.delta_t=0 is out of range"),
    ("drop_fraction", 0.0, "pruning.drop_fraction=0.0 is out of range"),
    ("end_fraction", 1.5, "pruning.end_fraction=1.5 is out of range"),
])
def test_dst_options_are_typed(compose: Any, tmp_path: Path, key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _spec(compose, tmp_path, ["pruning=rigl", f"pruning.{key}={value}"])


@pytest.mark.parametrize("pruning", ["static", "set", "rigl"])
def test_each_updater_is_its_own_curve(compose: Any, tmp_path: Path, pruning: str) -> None:
    spec = _spec(compose, tmp_path, [f"pruning={pruning}"])
    assert spec.curve_label() == f"random/one_shot/weight_rewind/dst/{pruning}"
    assert spec.pruning.identity()["structure"] == "dst"


class Interrupt(Exception):
    pass


@pytest.mark.integration
@pytest.mark.parametrize("pruning", ["rigl", "set"])
def test_interrupted_mid_fit_and_redone_is_bit_identical(compose: Any, tmp_path: Path, pruning: str) -> None:
    """Killed between two updates of the level's fit; the rerun equals an uninterrupted run bit for bit."""
    from prunebench.engine.loop import Run

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    spec = _spec(compose, whole, [f"pruning={pruning}"])
    r = Run(spec, log=lambda m: None)
    r.prepare()
    assert r.execute().status == "ok"

    spec2 = _spec(compose, cut, [f"pruning={pruning}"])
    assert spec2.run_id == spec.run_id
    original = DynamicSparseTraining._update

    def dies_after_second(self: DynamicSparseTraining, module: Any, step: int) -> None:
        original(self, module, step)
        if len(self.history) == 2:
            raise Interrupt

    DynamicSparseTraining._update = dies_after_second  # type: ignore[method-assign]
    try:
        r2 = Run(spec2, log=lambda m: None)
        r2.prepare()
        with pytest.raises(Interrupt):
            r2.execute()
    finally:
        DynamicSparseTraining._update = original  # type: ignore[method-assign]
    assert not (r2.path / "DONE").exists()
    resumed = Run(spec2, log=lambda m: None)
    resumed.prepare()
    assert resumed.execute().status == "ok"

    files = sorted(r.path.glob("levels/*/*.pt"))
    assert files
    for f in files:  # masks, weights and level files: the same bytes
        assert f.read_bytes() == (resumed.path / f.relative_to(r.path)).read_bytes(), f"{f.name} differs after the redo"
    timing = {"train_seconds", "finished_at", "latency_ms", "latency_ms_dense", "speedup_measured"}
    ra, rb = (pd.read_csv(p / "rows.csv") for p in (r.path, resumed.path))
    cols = [c for c in ra.columns if c not in timing]
    pd.testing.assert_frame_equal(ra[cols], rb[cols])
    pd.testing.assert_frame_equal(pd.read_csv(r.path / "levels/1/dst.csv"),
                                  pd.read_csv(resumed.path / "levels/1/dst.csv"))
