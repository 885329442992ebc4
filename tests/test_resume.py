"""Resume equivalence: a run interrupted after level k and resumed equals an uninterrupted one.

For every registered criterion and structure and every retrain mode: masks and weights
bit-identical at every level, and the same rows (what was measured, not how long it
took). This is what one seeding policy buys (prunebench.seeding): no random stream is
shared across levels, so skipping finished levels leaves every later stream in place.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from prunebench.engine.loop import Run
from prunebench.spec import from_config

pytestmark = pytest.mark.integration

TINY = ["data=synthetic", "data.input_shape=[16]", "data.n_train=256", "data.n_test=64", "data.val_size=64",
        "data.batch_size=32", "model.widths=[24,24]", "train.epochs=1", "retrain.epochs=1", "metrics.latency=false",
        "trainer=cpu", "report=false", "schedule=iterative", "schedule.target_sparsity=0.875",
        "schedule.iterations=3"]

CASES = {
    "magnitude": [],
    "random": ["pruning=random"],
    "snip": ["pruning=snip", "pruning.calibration_batches=2"],
    "taylor": ["pruning=taylor", "pruning.calibration_batches=2"],
    "wanda": ["pruning=wanda", "pruning.calibration_batches=2"],
    "synflow": ["pruning=synflow", "pruning.rounds=3"],
    "movement_gradual": ["pruning=movement", "schedule=gradual", "schedule.iterations=1", "retrain.epochs=2",
                         "schedule.frequency=2", "schedule.target_sparsity=0.8"],
    "random_gradual": ["pruning=random", "schedule=gradual", "schedule.iterations=1", "retrain.epochs=2",
                       "schedule.frequency=2", "schedule.target_sparsity=0.8"],
    "nm_random": ["pruning=nm", "pruning.method=random", "schedule.target_sparsity=0.5", "schedule.mode=linear",
                  "schedule.iterations=2"],
    "channel_random": ["pruning=channel", "pruning.method=random", "pruning.target=channels",
                       "schedule.target_sparsity=0.5"],
    "rigl_dst": ["pruning=rigl", "pruning.delta_t=2", "schedule=one_shot", "schedule.iterations=1",
                "retrain=weight_rewind", "retrain.epochs=2"],
    "set_dst": ["pruning=set", "pruning.delta_t=2", "schedule=one_shot", "schedule.iterations=1",
                "retrain=weight_rewind", "retrain.epochs=2"],
    "none": ["retrain=none", "retrain.epochs=0"],
    "lr_rewind": ["retrain=lr_rewind"],
    "weight_rewind": ["retrain=weight_rewind", "retrain.rewind_step=3"],
    "reinit": ["retrain=reinit"],
    "random_mask": ["retrain=random_mask"],
    "reinit_branch": ["retrain=reinit", "retrain.branch=true"],
    "random_mask_branch": ["retrain=random_mask", "retrain.branch=true"],
}

#: Row columns that measure time, not results.
TIMING = {"train_seconds", "finished_at", "latency_ms", "latency_ms_dense", "speedup_measured", "latency_ms_large"}


class Interrupt(Exception):
    pass


def spec_for(compose, root: Path, overrides: list[str]):
    return from_config(compose([*TINY, *overrides, f"paths.root={root}", f"paths.data_dir={root / 'data'}"]))


def files(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for f in sorted(run.glob("levels/*/*.pt")):
        obj = torch.load(f, map_location="cpu", weights_only=True)
        out[str(f.relative_to(run))] = obj
    return out


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        if isinstance(x, dict):
            assert_same_tensors(x, y)
        elif isinstance(x, torch.Tensor):
            assert torch.equal(x, y), f"{name} differs after resume"
        else:
            assert x == y, name


@pytest.mark.parametrize("case", sorted(CASES))
def test_resumed_run_is_bit_identical(compose, tmp_path: Path, case: str) -> None:
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    spec = spec_for(compose, whole, CASES[case])
    r = Run(spec, log=lambda m: None)
    r.prepare()
    assert r.execute().status == "ok"
    levels = len(spec.schedule.levels())
    stop_after = 1 if levels > 1 else 0

    spec2 = spec_for(compose, cut, CASES[case])
    assert spec2.run_id == spec.run_id

    def interrupt(k: int, row: dict) -> None:
        if k == stop_after:
            raise Interrupt

    r2 = Run(spec2, log=lambda m: None, on_level=interrupt)
    r2.prepare()
    with pytest.raises(Interrupt):
        r2.execute()
    assert not (r2.path / "DONE").exists()
    resumed = Run(spec2, log=lambda m: None)  # a new process would start from here
    resumed.prepare()
    assert resumed.execute().status == "ok"

    a, b = files(r.path), files(resumed.path)
    assert a, "no level files written"
    assert_same_tensors(a, b)
    ra, rb = (pd.read_csv(p / "rows.csv") for p in (r.path, resumed.path))
    cols = [c for c in ra.columns if c not in TIMING]
    pd.testing.assert_frame_equal(ra[cols], rb[cols])
