"""Time ``prunebench-report`` on a hand-made results root of a few hundred rows.

The root holds ``--groups`` (data set, model) pairs, each with 2 unstructured curves × 4
sparsities × 3 seeds (39 rows, as a small study writes) plus one channel run whose
per-layer figure needs the dense widths from its ``levels/0/state.pt``. Each report runs
in a fresh process (as a user runs it) and prints, side by side: wall seconds of the
first build, of an unchanged relaunch ("report up to date"), of a forced redraw, and
whether torch was imported.

Target (issue "Nothing silently wrong", item 16): no torch, <= 5 s on a few hundred rows.

Measured 2026-11-30 on the 2-core machine with nothing else running (8 groups):

     rows  figures  first_s  unchanged_s  forced_s  torch    rc
      328       82    34.98         0.54     36.27  False 0/0/0

The unchanged relaunch meets the target; the first build and a forced redraw miss it. Under
cProfile, ``savefig`` takes 51 of 64 s: every figure is written as PNG and PDF, each with
``bbox_inches="tight"``, which draws it twice.

    python benchmarks/report_speed.py            # 8 groups: 320 rows
    python benchmarks/report_speed.py --groups 2
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from prunebench.results.store import atomic_write_bytes, level_dir, run_dir, write_table

DATASETS = ["mnist1d", "mnist", "cifar10", "fashion"]
MODELS = ["mlp", "lenet"]
TARGETS = [0.5, 0.75, 0.9, 0.95]


def _row(run_id: str, seed: int, level: int, ds: str, model: str, method: str, sched: str, sp: float,
         structure: str = "unstructured") -> dict[str, object]:
    acc = 0.9 - 0.3 * sp ** 4 - 0.01 * seed
    return {"run_id": run_id, "seed": seed, "level": level, "dataset": ds, "model": model, "method": method,
            "scope": "global", "structure": structure, "schedule": sched, "retrain": "finetune",
            "target_sparsity": sp, "sparsity": sp, "params": 10000, "params_nonzero": round(10000 * (1 - sp)),
            "compression": 1 / (1 - sp), "flops": 1e6 * (1 - 0.8 * sp), "flops_dense": 1e6,
            "speedup_theoretical": 1 / (1 - 0.8 * sp), "latency_ms": 1 - 0.5 * sp, "latency_batch": 1,
            "device": "cpu", "val_acc": acc, "test_acc": acc, "test_loss": 1 - acc, "acc_pruned": acc - 0.1 * sp,
            "lr_finetune": 0.01, "epochs_finetune": 1, "iterations": 4, "train_seconds": 1.0, "status": "ok",
            "label": f"{method}/{sched}/finetune" + ("/channel" if structure == "channel" else ""),
            "latency_ms_dense": 1.0, "speedup_measured": 1 / (1 - 0.5 * sp)}


def _layers(path: Path, sp: float) -> None:
    write_table(path / "layers.csv", [
        {"layer": "fc1.weight", "numel": 1000, "nonzero": round(1000 * (1 - sp)), "sparsity": sp},
        {"layer": "fc2.weight", "numel": 100, "nonzero": 100, "sparsity": 0.0}])


def make_root(root: Path, groups: int) -> int:
    """Write the results root; return the number of rows."""
    import torch  # only to write the channel run's dense checkpoint, as a real run does

    n = 0
    pairs = [(d, m) for d in DATASETS for m in MODELS][:groups]
    for ds, model in pairs:
        for seed in range(3):
            for i, sp in enumerate(TARGETS):
                rid = f"{ds}-{model}-os{i}-s{seed}"
                rows = [_row(rid, seed, 0, ds, model, "magnitude", "one_shot", 0.0),
                        _row(rid, seed, 1, ds, model, "magnitude", "one_shot", sp)]
                write_table(run_dir(root, rid) / "rows.csv", rows)
                _layers(level_dir(run_dir(root, rid), 1), sp)
                (run_dir(root, rid) / "config.json").write_text(json.dumps({"run_id": rid}))  # finished runs have one
                (run_dir(root, rid) / "DONE").write_text("x")
                n += len(rows)
            rid = f"{ds}-{model}-it-s{seed}"
            rows = [_row(rid, seed, 0, ds, model, "magnitude", "iterative", 0.0)]
            rows += [_row(rid, seed, k + 1, ds, model, "magnitude", "iterative", sp) for k, sp in enumerate(TARGETS)]
            write_table(run_dir(root, rid) / "rows.csv", rows)
            for k, sp in enumerate(TARGETS):
                _layers(level_dir(run_dir(root, rid), k + 1), sp)
            (run_dir(root, rid) / "config.json").write_text(json.dumps({"run_id": rid}))  # finished runs have one
            (run_dir(root, rid) / "DONE").write_text("x")
            n += len(rows)
        rid = f"{ds}-{model}-ch"
        rows = [_row(rid, 0, 0, ds, model, "magnitude", "one_shot", 0.0, "channel"),
                _row(rid, 0, 1, ds, model, "magnitude", "one_shot", 0.5, "channel")]
        write_table(run_dir(root, rid) / "rows.csv", rows)
        write_table(level_dir(run_dir(root, rid), 1) / "layers.csv", [{"layer": "conv1", "channels": 8}])
        buf = io.BytesIO()
        torch.save({"conv1.weight": torch.zeros(16, 3, 3, 3), "conv1.bias": torch.zeros(16)}, buf)
        atomic_write_bytes(level_dir(run_dir(root, rid), 0) / "state.pt", buf.getvalue())
        (run_dir(root, rid) / "config.json").write_text(json.dumps({"run_id": rid}))  # finished runs have one
        (run_dir(root, rid) / "DONE").write_text("x")
        n += len(rows)
    return n


PROBE = """
import json, sys, time
t = time.perf_counter()
from prunebench.report import main
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t, "torch": "torch" in sys.modules}))
"""


def report_once(root: Path, *extra: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(root), "--quiet", *extra], capture_output=True, text=True,
                         check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise SystemExit(f"report failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(lines[-1]) | {"stderr": out.stderr.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", type=int, default=8, help="(data set, model) pairs, 40 rows each")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        rows = make_root(root, args.groups)
        one = report_once(root, "--out", str(Path(tmp) / "one"), "--jobs", "1")
        pdf = report_once(root, "--out", str(Path(tmp) / "pdf"), "--pdf")
        first = report_once(root)
        again = report_once(root)
        forced = report_once(root, "--force")
        figures = len(list((root / "report").glob("*.png")))
    runs = [one, pdf, first, again, forced]
    table = pd.DataFrame([{"rows": rows, "figures": figures, "first_1job_s": one["seconds"], "first_pdf_s": pdf["seconds"],
                           "first_s": first["seconds"], "unchanged_s": again["seconds"], "forced_s": forced["seconds"],
                           "torch": any(r["torch"] for r in runs), "rc": "/".join(str(r["rc"]) for r in runs)}])
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
