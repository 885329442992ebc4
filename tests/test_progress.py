"""Progress display (issue 15): captured terminal and plain output, measured ETA."""

from __future__ import annotations

import io
from functools import partial

import pytest
import torch
from rich.console import Console

from prunebench.progress import Progress, ProgressCallback, format_seconds


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def drive(p: Progress, clock: Clock, *, runs: int = 2, levels: int = 2, epochs: int = 3, steps: int = 10,
          step_s: float = 0.01) -> None:
    for i in range(1, runs + 1):
        p.start_run(i, f"run{i}", levels=levels)
        for k in range(1, levels + 1):
            p.start_level(k, epochs=epochs, steps_per_epoch=steps)
            p.start_fit()
            for e in range(epochs):
                for _ in range(steps):
                    clock.t += step_s
                    p.on_step()
                p.on_epoch(e, val_acc=0.5 + 0.1 * e)
            p.end_fit()
            p.end_level({"level": k, "val_acc": 0.7, "sparsity": 0.5 * k})


def test_format_seconds() -> None:
    assert format_seconds(3725) == "1:02:05"
    assert format_seconds(None) == "?"
    assert format_seconds(float("nan")) == "?"


def test_eta_from_measured_step_times() -> None:
    clock = Clock()
    p = Progress(total_runs=3, console=Console(file=io.StringIO(), force_terminal=False), clock=clock)
    p.start_run(1, "a", levels=4)
    p.start_level(1, epochs=2, steps_per_epoch=50)
    p.start_fit()
    for _ in range(25):
        clock.t += 0.02
        p.on_step()
    assert p.seconds_per_step() == pytest.approx(0.02)
    # left: 75 in this level + 3 levels x 100 + 2 runs x 4 levels x 100 = 1175 steps
    assert p.steps_left() == 1175
    assert p.eta() == pytest.approx(1175 * 0.02)


def test_plain_output_one_line_per_epoch_at_most_every_interval() -> None:
    buf = io.StringIO()
    clock = Clock()
    p = Progress(total_runs=2, console=Console(file=buf, force_terminal=False, width=200), min_interval=0.0,
                 clock=clock)
    assert p._live is None
    drive(p, clock)
    lines = buf.getvalue().splitlines()
    # 2 runs x 2 levels x (3 epochs + 1 level summary)
    assert len(lines) == 16
    assert lines[0].startswith("run 1/2 (run1) level 1/2 epoch 1/3 step 10/30 val_acc 0.5000 elapsed")
    assert "eta 0:00:01" in lines[0]  # 110 steps left x 10 ms
    assert "ms/step" in lines[0]
    assert lines[3] == "run 1/2 (run1) level 1/2 done: val_acc 0.7000 sparsity 0.500; elapsed 0:00:00 eta 0:00:01"
    assert lines[-1].startswith("run 2/2 (run2) level 2/2 done:") and lines[-1].endswith("eta 0:00:00")

    # Throttled: epochs 1 s apart, 5 s interval -> the first epoch, the level's last epoch, the summary.
    buf2 = io.StringIO()
    clock2 = Clock()
    p2 = Progress(total_runs=1, console=Console(file=buf2, force_terminal=False, width=200), min_interval=5.0,
                  clock=clock2)
    drive(p2, clock2, runs=1, levels=1, epochs=6, steps=10, step_s=0.1)
    lines2 = buf2.getvalue().splitlines()
    assert [ln.split(" step ")[0].split()[-1] for ln in lines2[:-1]] == ["1/6", "6/6"]


def test_live_panel_on_a_captured_terminal() -> None:
    buf = io.StringIO()
    clock = Clock()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    p = Progress(total_runs=3, console=console, refresh_per_second=1, clock=clock)
    assert p._live is not None
    p.start_run(2, "abc123", levels=5)
    p.start_level(3, epochs=10, steps_per_epoch=40)
    p.start_fit()
    for _ in range(80):
        clock.t += 0.005
        p.on_step()
    p.on_epoch(1, val_acc=0.6125)
    p.refresh()
    p.close()
    out = buf.getvalue()
    assert "2/3 abc123" in out
    assert "3/5" in out
    assert "epoch 2/10 step 80/400 val_acc 0.6125" in out
    assert "5.00 ms/step" in out
    # ETA: (320 + 2 x 400 + 1 run x 5 x 400) steps x 5 ms = 15.6 s
    assert "eta 0:00:16" in out
    # nothing is printed line by line in live mode
    assert "done:" not in out


@pytest.mark.integration
def test_callback_counts_optimizer_steps_in_a_fit() -> None:
    from prunebench.data import build_datamodule
    from prunebench.engine.fit import fit
    from prunebench.engine.module import Classifier
    from prunebench.models import build_model
    from prunebench.spec import TrainerSpec

    dm = build_datamodule("synthetic", input_shape=[8], num_classes=3, n_train=256, n_test=64, batch_size=32,
                          val_size=64)
    dm.prepare_data()
    dm.setup("fit")
    net = build_model("mlp", (8,), 3)
    buf = io.StringIO()
    p = Progress(total_runs=1, console=Console(file=buf, force_terminal=False, width=200), min_interval=0.0)
    p.start_run(1, "r", levels=1)
    p.start_level(1)
    module = Classifier(net, partial(torch.optim.Adam, lr=1e-3))
    fit(module, dm, TrainerSpec(accelerator="cpu", steps_per_call=4), epochs=2, progress=p)
    steps = len(dm.train_dataloader())
    assert p.steps == 2 * steps and p.epochs == 2 and p.steps_per_epoch == steps
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and f"epoch 2/2 step {2 * steps}/{2 * steps} val_acc 0." in lines[1]
    assert p.val_acc == pytest.approx(module.history[-1]["val_acc"] if "val_acc" in module.history[-1]
                                      else module.history[-2]["val_acc"])


def test_live_panel_redraws_at_most_twice_a_second_from_the_steps() -> None:
    clock = Clock()
    p = Progress(total_runs=1, console=Console(file=io.StringIO(), force_terminal=True, width=120), clock=clock)
    draws = []
    p._live.refresh = lambda: draws.append(clock.t)  # type: ignore[union-attr]
    p.start_run(1, "r", levels=1)
    p.start_level(1, epochs=1, steps_per_epoch=100)
    draws.clear()
    for _ in range(100):  # 12.5 s of steps, 0.125 s each (exact in binary)
        clock.t += 0.125
        p.on_step()
    assert len(draws) == 25 and min(b - a for a, b in zip(draws, draws[1:])) >= 0.5 - 1e-9
    p._live.refresh = lambda: None  # type: ignore[union-attr]
    p.close()


def test_pool_progress_shows_every_active_run_from_its_workers_messages() -> None:
    from prunebench.engine.batch import RemoteProgress
    from prunebench.progress import PoolProgress

    buf = io.StringIO()
    clock = Clock()
    console = Console(file=buf, force_terminal=True, width=160, color_system=None)
    pool = PoolProgress(total_runs=4, console=console, clock=clock)
    assert pool._live is not None
    # Two workers' calls, as RemoteProgress sends them over their pipes.
    sent: list[tuple] = []
    workers = {key: RemoteProgress(sent.append, key, clock=clock) for key in ("run:aaa", "run:bbb")}
    for i, (key, w) in enumerate(workers.items(), start=1):
        w.start_run(i, key[4:], levels=2)
        w.start_level(1, epochs=3, steps_per_epoch=40)
        w.start_fit()
    for _ in range(25):
        clock.t += 0.01
        for w in workers.values():
            w.on_step()
    for w in workers.values():
        w.on_epoch(0, 0.5)
    assert 0 < sum(m[2] == "on_step" for m in sent) < 50  # steps go in batches, not one message each
    for _, key, method, args in sent:
        pool.update(key, method, args)
    lines = pool.lines()
    assert lines[0].startswith("runs finished 0/4, 2 active")
    assert any("run 1/4 (aaa) level 1/2 epoch 1/3 step 25/120" in ln for ln in lines)
    assert any("run 2/4 (bbb) level 1/2 epoch 1/3 step 25/120" in ln for ln in lines)
    pool.update("run:aaa", "finish")
    assert pool.lines()[0].startswith("runs finished 1/4, 1 active") and len(pool.lines()) == 2
    pool.close()
    assert "(bbb)" in buf.getvalue()
