"""Kill a real `prunebench` process at a random point, relaunch: nothing lost, nothing different.

The reliability promise end to end (slow tier): for several seeds of the kill time, a run
SIGKILLed somewhere between start-up and its last level and then relaunched ends with the
same rows (one per level, no duplicate), masks and weights bit-identical to an
uninterrupted run, no temporary file left behind, and no lock held.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

ARGS = ["data=synthetic", "data.input_shape=[16]", "data.n_train=512", "data.n_test=64", "data.val_size=64",
        "data.batch_size=32", "model.widths=[32,32]", "train.epochs=3", "retrain.epochs=2", "metrics.latency=false",
        "trainer=cpu", "trainer.threads=1", "trainer.progress=false", "report=false", "pruning=random",
        "schedule=iterative", "schedule.iterations=4", "schedule.target_sparsity=0.9"]
TIMING = {"train_seconds", "finished_at", "latency_ms", "latency_ms_dense", "speedup_measured"}


def launch(root: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "prunebench", *ARGS, f"paths.root={root}",
                             f"paths.data_dir={root / 'data'}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def finished_tensors(root: Path) -> dict[str, torch.Tensor]:
    from prunebench.results.levels import load_level_state

    out = {}
    for ld in sorted(root.glob("runs/*/levels/*")):
        state, mask = load_level_state(ld)
        for what, tensors in (("state", state), ("mask", dict(mask))):
            for k, v in tensors.items():
                out[f"{ld.relative_to(root / 'runs')}:{what}:{k}"] = v
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    root = tmp_path_factory.mktemp("reference")
    start = time.monotonic()
    proc = launch(root)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode()[-2000:]
    return root, time.monotonic() - start


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_killed_at_a_random_point_resumes_to_the_same_result(tmp_path: Path, reference: tuple[Path, float],
                                                             seed: int) -> None:
    ref_root, ref_seconds = reference
    delay = random.Random(seed).uniform(0.3, 0.95) * ref_seconds
    proc = launch(tmp_path)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    again = launch(tmp_path)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err.decode()[-2000:]

    (ref_run,) = list((ref_root / "runs").iterdir())
    (run,) = list((tmp_path / "runs").iterdir())
    assert run.name == ref_run.name and (run / "DONE").exists()
    a, b = pd.read_csv(ref_run / "rows.csv"), pd.read_csv(run / "rows.csv")
    assert list(b["level"]) == list(range(5)), "a level is missing or repeated"
    cols = [c for c in a.columns if c not in TIMING]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    ta, tb = finished_tensors(ref_root), finished_tensors(tmp_path)
    assert ta.keys() == tb.keys()
    assert all(torch.equal(ta[k], tb[k]) for k in ta), f"killed after {delay:.1f}s: tensors differ after resume"
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name or p.name == "LOCK"]
    assert not leftovers, f"left behind: {leftovers}"
