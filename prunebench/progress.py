"""Live progress for runs, studies and sweeps: run i of N, level k of K, epoch, step, ETA.

One :class:`Progress` object follows the whole job. The level loop / CLI drives it::

    progress = Progress(total_runs=len(specs))          # a rich Console on stderr by default
    progress.start_run(i, run_id, levels=K)             # i counts from 1
    progress.start_level(k, epochs=E, steps_per_epoch=S)
    ... fit(..., callbacks=[ProgressCallback(progress)]) # steps and epochs from Lightning
    progress.end_level(row)                             # the level's results row
    progress.close()

On a terminal a small live panel (rich) is redrawn twice a second, from the training
thread itself: a step adds to a counter and reads the clock (~0.3 µs), and a redraw
(~2-4 ms) every half second costs under 1% (benchmarks/overhead.py, column prog/pb).
No refresh thread: on a busy machine a drawing thread preempted while it holds the GIL
stalls training for a whole time slice. On anything else (a
log file, a pipe, a CI console) it prints one plain line per epoch, at most one every
``min_interval`` seconds, plus one per finished level.

The ETA is measured, not guessed: mean seconds per optimizer step so far (training time
only) times the steps left in this level, the levels left in this run and the runs left,
assuming later levels and runs train as many steps as this one. Evaluation, pruning and
dense training are not counted, so the ETA is a lower bound on a study whose dense
models are not cached yet.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl

__all__ = ["PoolProgress", "Progress", "ProgressCallback", "format_seconds"]


def format_seconds(seconds: float | None) -> str:
    """``3725`` → ``1:02:05``; ``None`` or not finite → ``?``."""
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "?"
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _LiveDisplay:
    """What both displays share: a rich ``Live`` (or None when not on a terminal) to refresh and stop."""

    _live: Any = None

    def refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None


class Progress(_LiveDisplay):
    """Progress of a job made of runs × levels × epochs × steps (see the module docstring).

    ``console``: a ``rich.console.Console`` (default: one on stderr); ``live`` forces the
    live panel on or off (default: on when the console is a terminal); ``min_interval``:
    seconds between two plain lines; ``clock``: injectable for tests.
    """

    def __init__(self, total_runs: int = 1, console: Any = None, live: bool | None = None,
                 min_interval: float = 5.0, refresh_per_second: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.clock = clock
        self.min_interval = float(min_interval)
        self.total_runs = max(int(total_runs), 1)
        self.run_index, self.run_id = 0, ""
        self.levels, self.level = 0, 0
        self.epochs, self.epoch = 0, 0
        self.steps_per_epoch = 0
        self.steps = 0          # optimizer steps in this level
        self.train_steps = 0    # optimizer steps since start (all runs): the ETA's denominator
        self.train_seconds = 0.0
        self.val_acc: float | None = None
        self.last_row: Mapping[str, Any] | None = None
        self._t0 = clock()
        self._fit_t0: float | None = None
        self._fit_steps0 = 0
        self._last_line = -float("inf")
        self._live = None
        use_live = console.is_terminal if live is None else live
        if use_live:
            from rich.live import Live

            # The loop's own log lines (print to stderr) go above the panel, not through it.
            redirect = console.file in (sys.stdout, sys.stderr)
            self._live = Live(self, console=console, auto_refresh=False, transient=False,
                              redirect_stdout=redirect, redirect_stderr=redirect)
            self._live.start()
        self._draw_every = 1.0 / refresh_per_second
        self._next_draw = clock() + self._draw_every

    # ---- driven by the loop / CLI -----------------------------------------------------------
    def start_run(self, index: int, run_id: str = "", levels: int = 0) -> None:
        """Run ``index`` (from 1) of ``total_runs`` begins; it has ``levels`` pruning levels."""
        self.run_index, self.run_id, self.levels = int(index), str(run_id), int(levels)
        self.level, self.epoch, self.steps, self.val_acc = 0, 0, 0, None
        self.refresh()

    def start_level(self, level: int, epochs: int = 0, steps_per_epoch: int = 0) -> None:
        """Level ``level`` (of ``levels``) starts retraining: ``epochs`` × ``steps_per_epoch`` steps."""
        self.level, self.epochs, self.steps_per_epoch = int(level), int(epochs), int(steps_per_epoch)
        self.epoch, self.steps, self.val_acc = 0, 0, None
        self.refresh()

    def start_fit(self, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        """Called when a Lightning fit starts (by :class:`ProgressCallback`); fills unknown sizes."""
        if epochs:
            self.epochs = int(epochs)
        if steps_per_epoch:
            self.steps_per_epoch = int(steps_per_epoch)
        self._fit_t0, self._fit_steps0 = self.clock(), self.train_steps

    def on_step(self, n: int = 1) -> None:
        """``n`` optimizer steps done: counters, plus a redraw when one is due (live panel)."""
        self.steps += n
        self.train_steps += n
        if self._live is not None:
            self._draw_if_due()

    def _draw_if_due(self) -> None:
        now = self.clock()
        if now >= self._next_draw:
            self._next_draw = now + self._draw_every
            self._live.refresh()  # type: ignore[union-attr]

    def end_fit(self) -> None:
        if self._fit_t0 is not None:
            self.train_seconds += self.clock() - self._fit_t0
            self._fit_t0 = None

    def on_epoch(self, epoch: int, val_acc: float | None = None) -> None:
        """Epoch ``epoch`` (from 0) finished with validation accuracy ``val_acc``."""
        self.epoch = int(epoch) + 1
        if val_acc is not None:
            self.val_acc = float(val_acc)
        if self._live is not None:
            self._draw_if_due()  # not every epoch: a quickstart epoch is ~0.1 s, a redraw ~3 ms
        else:
            now = self.clock()
            last_epoch = self.epochs and self.epoch >= self.epochs
            if now - self._last_line >= self.min_interval or last_epoch:
                self._last_line = now
                self.console.print(self.line(), markup=False, highlight=False, soft_wrap=True)

    def end_level(self, row: Mapping[str, Any] | None = None) -> None:
        """The level finished; ``row`` is its results row (val_acc, sparsity, ...)."""
        self.end_fit()
        self.last_row = dict(row or {})
        if row and row.get("val_acc") is not None:
            self.val_acc = float(row["val_acc"])
        self.refresh()
        if self._live is None:
            sp = self.last_row.get("sparsity")
            extra = f" sparsity {float(sp):.3f}" if sp is not None else ""
            self.console.print(f"{self._where()} done: val_acc {self._acc()}{extra}; "
                               f"elapsed {format_seconds(self.elapsed)} eta {format_seconds(self.eta())}",
                               markup=False, highlight=False, soft_wrap=True)
            self._last_line = self.clock()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- figures ------------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        return self.clock() - self._t0

    def seconds_per_step(self) -> float | None:
        seconds = self.train_seconds
        if self._fit_t0 is not None:
            seconds += self.clock() - self._fit_t0
        return seconds / self.train_steps if self.train_steps else None

    def steps_left(self) -> int:
        """Steps left: in this level, in the levels left, in the runs left (same sizes assumed)."""
        per_level = self.epochs * self.steps_per_epoch
        in_level = max(per_level - self.steps, 0)
        levels_left = max(self.levels - self.level, 0)
        runs_left = max(self.total_runs - self.run_index, 0)
        return in_level + levels_left * per_level + runs_left * self.levels * per_level

    def eta(self) -> float | None:
        spt = self.seconds_per_step()
        return None if spt is None else spt * self.steps_left()

    # ---- rendering ----------------------------------------------------------------------------
    def _acc(self) -> str:
        return "-" if self.val_acc is None else f"{self.val_acc:.4f}"

    def _where(self) -> str:
        run = f"run {self.run_index}/{self.total_runs}"
        if self.run_id:
            run += f" ({self.run_id})"
        return f"{run} level {self.level}/{self.levels}"

    def line(self) -> str:
        """The plain one-line status (non-terminal output)."""
        spt = self.seconds_per_step()
        speed = "" if spt is None else f" ({1e3 * spt:.2f} ms/step)"
        steps = f"{self.steps}/{self.epochs * self.steps_per_epoch}" if self.steps_per_epoch else str(self.steps)
        return (f"{self._where()} epoch {self.epoch}/{self.epochs} step {steps} val_acc {self._acc()} "
                f"elapsed {format_seconds(self.elapsed)} eta {format_seconds(self.eta())}{speed}")

    def __rich__(self) -> Any:
        """The live panel: three bars (runs, levels, steps of this level) and the figures."""
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_column(justify="left", no_wrap=True)
        grid.add_column(width=30)
        grid.add_column(justify="left", no_wrap=True)
        total_steps = self.epochs * self.steps_per_epoch
        grid.add_row("run", ProgressBar(total=self.total_runs, completed=max(self.run_index - 1, 0), width=30),
                     f"{self.run_index}/{self.total_runs} {self.run_id}")
        grid.add_row("level", ProgressBar(total=max(self.levels, 1), completed=max(self.level - 1, 0), width=30),
                     f"{self.level}/{self.levels}")
        grid.add_row("step", ProgressBar(total=max(total_steps, 1), completed=min(self.steps, total_steps), width=30),
                     f"epoch {self.epoch}/{self.epochs} step {self.steps}/{total_steps} val_acc {self._acc()}")
        spt = self.seconds_per_step()
        speed = "" if spt is None else f" {1e3 * spt:.2f} ms/step"
        grid.add_row("time", "", f"elapsed {format_seconds(self.elapsed)} eta {format_seconds(self.eta())}{speed}")
        return grid


class ProgressCallback(pl.Callback):
    """Feeds a :class:`Progress` from a Lightning fit: steps, epochs, validation accuracy.

    Counts optimizer steps, not Lightning batches: prunebench may group several steps into
    one batch (``trainer.steps_per_call``; the batch is then a list of batches).
    """

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = trainer.num_training_batches
        loader = getattr(trainer, "train_dataloader", None)
        group = getattr(loader, "k", 1) or 1
        inner = getattr(loader, "loader", None)
        steps = len(inner) if inner is not None and hasattr(inner, "__len__") else (
            batches * group if isinstance(batches, int) else 0)
        self.progress.start_fit(epochs=trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else None,
                                steps_per_epoch=steps)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.progress.on_step(len(batch) if isinstance(batch, list) and batch and isinstance(batch[0], (list, tuple))
                              else 1)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Validation has run by now (it ends the training epoch); the module's history has it.
        history = getattr(pl_module, "history", None) or []
        val = next((h["val_acc"] for h in reversed(history) if "val_acc" in h and h.get("epoch") == trainer.current_epoch),
                   None)
        self.progress.on_epoch(trainer.current_epoch, val)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.progress.end_fit()


class PoolProgress(_LiveDisplay):
    """Progress of a batch whose runs train at once in worker processes: one line per active run.

    ``update(key, method, args)`` replays a worker's :class:`Progress` call (sent by
    ``prunebench.engine.batch.RemoteProgress``) on that run's own :class:`Progress`;
    ``method == "finish"`` ends the run. On a terminal a live panel lists the batch (runs
    finished of N) and every active run's line; elsewhere each run prints its own plain
    lines (per epoch at most every ``min_interval`` seconds, and per level).
    """

    def __init__(self, total_runs: int = 1, console: Any = None, live: bool | None = None,
                 min_interval: float = 5.0, refresh_per_second: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console, self.clock = console, clock
        self.total_runs = max(int(total_runs), 1)
        self.min_interval = float(min_interval)
        self.finished = 0
        self.active: dict[str, Progress] = {}
        self._t0 = clock()
        self._live = None
        if console.is_terminal if live is None else live:
            from rich.console import Console
            from rich.live import Live

            self._quiet = Console(quiet=True)
            redirect = console.file in (sys.stdout, sys.stderr)
            self._live = Live(self, console=console, auto_refresh=False, transient=False,
                              redirect_stdout=redirect, redirect_stderr=redirect)
            self._live.start()
        self._draw_every = 1.0 / refresh_per_second
        self._next_draw = clock()

    def update(self, key: str, method: str, args: tuple[Any, ...] = ()) -> None:
        """Apply one progress call of the run (or dense task) ``key``."""
        if method == "finish":
            self.active.pop(key, None)
            self.finished += key.startswith("run:")
            self.refresh()
            return
        p = self.active.get(key)
        if p is None:
            console = self._quiet if self._live is not None else self.console
            p = self.active[key] = Progress(self.total_runs, console=console, live=False,
                                            min_interval=self.min_interval, clock=self.clock)
        getattr(p, method)(*args)
        if self._live is not None:
            now = self.clock()
            if now >= self._next_draw or method in ("start_run", "end_level"):
                self._next_draw = now + self._draw_every
                self._live.refresh()

    def lines(self) -> list[str]:
        """The batch line, then one line per active run."""
        head = (f"runs finished {self.finished}/{self.total_runs}, {len(self.active)} active, "
                f"elapsed {format_seconds(self.clock() - self._t0)}")
        return [head, *(p.line() for p in self.active.values())]


    def __rich__(self) -> Any:
        from rich.text import Text

        return Text("\n".join(self.lines()))
