"""int8 against fp32 latency of the same pruned level, measured in one run on this CPU.

For each (run, level) given, writes the level as an fp32 ONNX file and as an int8 one
(ONNX Runtime static quantization, calibrated on training batches), then measures both
files in this process, alternating fp32 / int8 for ``--rounds`` rounds so that load from
other processes falls on both alike: median batch-1 and batch-256 latency (one thread),
bytes, gzip bytes and test accuracy, printed side by side.

    python benchmarks/int8_latency.py outputs/deploy_mnist --run <id> --level 1 [--run <id2> --level 1]
    python benchmarks/int8_latency.py outputs/deploy_mnist --all-levels-of-label lenet300_unstructured
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def pairs_of(root: Path, label: str) -> list[tuple[str, int]]:
    import pandas as pd

    out = []
    for run in sorted((root / "runs").iterdir()):
        rows = pd.read_csv(run / "rows.csv")
        if (rows["label"] == label).any() and json.loads((run / "config.json").read_text())["identity"]["seed"] == 0:
            out += [(run.name, int(k)) for k in rows["level"] if int(k) > 0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root")
    ap.add_argument("--run", action="append", default=[])
    ap.add_argument("--level", action="append", type=int, default=[])
    ap.add_argument("--all-levels-of-label", action="append", default=[])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    root = Path(args.root)
    todo = list(zip(args.run, args.level))
    for label in args.all_levels_of_label:
        todo += pairs_of(root, label)
    from prunebench import export as ex
    from prunebench.artifact import measure

    print(f"{'run':>12} {'lvl':>3} {'structure':>12} {'sparsity':>8} | {'fp32 ms b1':>10} {'int8 ms b1':>10} "
          f"{'x':>5} | {'fp32 ms b256':>12} {'int8 ms b256':>12} {'x':>5} | {'fp32 gz B':>9} {'int8 gz B':>9} | "
          f"{'fp32 acc':>8} {'int8 acc':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for run, level in todo:
            f32 = ex.export(root, run, level, "onnx", Path(tmp) / f"{run}-{level}.onnx", measure=False)
            i8 = ex.export(root, run, level, "onnx", Path(tmp) / f"{run}-{level}-int8.onnx", quantize="int8",
                           measure=False)
            dm = ex.run_data(root, run)
            x, y = dm.raw_split("test")
            res: dict[str, list[dict]] = {"fp32": [], "int8": []}
            for _ in range(args.rounds):
                res["fp32"].append(measure(f32, "onnx", x, y))
                res["int8"].append(measure(i8, "onnx", x, y))
            med = {k: {m: statistics.median(r[m] for r in v) for m in ("latency_ms_b1", "latency_ms_large")}
                   | v[0] for k, v in res.items()}
            med = {k: v | {m: statistics.median(r[m] for r in res[k]) for m in ("latency_ms_b1", "latency_ms_large")}
                   for k, v in med.items()}
            import pandas as pd

            rows = pd.read_csv(root / "runs" / run / "rows.csv")
            row = rows[rows["level"] == level].iloc[-1]
            a, b = med["fp32"], med["int8"]
            print(f"{run:>12} {level:>3} {row['structure']:>12} {row['sparsity']:>8.3f} | "
                  f"{a['latency_ms_b1']:>10.4f} {b['latency_ms_b1']:>10.4f} {a['latency_ms_b1'] / b['latency_ms_b1']:>5.2f} | "
                  f"{a['latency_ms_large']:>12.3f} {b['latency_ms_large']:>12.3f} "
                  f"{a['latency_ms_large'] / b['latency_ms_large']:>5.2f} | {a['gzip_bytes']:>9} {b['gzip_bytes']:>9} | "
                  f"{a['test_acc']:>8.4f} {b['test_acc']:>8.4f}", flush=True)


if __name__ == "__main__":
    main()
