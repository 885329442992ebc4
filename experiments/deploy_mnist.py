"""Deployment study: accuracy against the shipped file's size and latency, fp32 and int8.

Runs ``experiment=deploy_mnist`` (conf/experiment/deploy_mnist.yaml: LeNet-300-100 and
LeNet-5 on MNIST; dense, unstructured 50/80/90/95%, channel-pruned 50/75% of the
parameters), then exports every finished level of every run as ONNX, fp32 and int8, and
measures each FILE on the whole test split (prunebench-export's measurement: accuracy,
bytes, gzip bytes, batch-1 / batch-256 latency with one thread) into
``<root>/export/exports.csv``. The report (``<root>/report``) then holds deploy.png
(accuracy vs gzip bytes and vs latency, Pareto front), exports_summary.md and claims.md.

Prints, per model, the measured compression (dense fp32 file bytes / smallest artifact's
gzip bytes within 0.2 pp of the dense file's accuracy) beside Deep Compression's 40x for
LeNet-300-100 (Han, Mao & Dally 2016, Table 1). Their coding (5-bit k-means weight
sharing + Huffman) is not ours (int8 + gzip over an ONNX file).

    python experiments/deploy_mnist.py data.root=../shared/data
    python experiments/deploy_mnist.py data.root=../shared/data 'study.seeds=[0]'   # one seed
    python experiments/deploy_mnist.py --exports-only --root outputs/deploy_mnist  # re-export, re-measure
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def export_all(root: Path, quantize: tuple[str | None, ...] = (None, "int8")) -> int:
    """Export and measure every finished level (a dense level once per dense model)."""
    import pandas as pd

    from prunebench import export as ex
    from prunebench.artifact import read_exports

    done = read_exports(root)
    have = {(r.run_id, int(r.level), r.quantize if isinstance(r.quantize, str) else None)
            for r in done.itertuples() if r.status == "ok"}
    dense_seen: set[str] = set()
    n = 0
    for run in sorted((root / "runs").iterdir()):
        if not (run / "DONE").exists():
            continue
        config = json.loads((run / "config.json").read_text())
        rows = pd.read_csv(run / "rows.csv")
        for level in sorted(int(v) for v in rows.loc[rows["status"].fillna("ok") == "ok", "level"]):
            if level == 0:
                if config["dense_id"] in dense_seen:
                    continue
                dense_seen.add(config["dense_id"])
            for q in quantize:
                if (run.name, level, q) in have:
                    continue
                try:
                    ex.export(root, run.name, level, "onnx", quantize=q)
                except ex.ExportCheckError as e:  # recorded as failed in exports.csv; keep going
                    print(f"export check failed: {e}", flush=True)
                n += 1
                print(f"exported {run.name} level {level} {q or 'fp32'}", flush=True)
    return n


def print_compression(root: Path) -> None:
    from prunebench.artifact import compression_at, read_exports

    comp = compression_at(read_exports(root), max_loss_pp=0.2)
    for _, r in comp.iterrows():
        print(f"{r['model']}: dense {r['dense_bytes']} B ({100 * r['dense_acc']:.2f}%) -> {r['gzip_bytes']} B gzip "
              f"({r['structure']} {r['target_sparsity']:g} {r['quantize']}, {100 * r['acc']:.2f}%, loss "
              f"{r['loss_pp']:.2f} pp): {r['compression']:.1f}x  [Deep Compression, LeNet-300-100: 40x, "
              "1070 KB -> 27 KB, with 5-bit weight sharing + Huffman coding; ours: int8 + gzip]")


def main() -> None:
    from _study import parse, run_study

    args, overrides = parse(__doc__, "outputs/deploy_mnist")
    root = Path(args.root)
    start = time.perf_counter()
    if not args.figures_only and "--exports-only" not in sys.argv:
        seconds = run_study("deploy_mnist", str(root), [o for o in overrides if o != "--exports-only"])
        print(f"deploy_mnist study: {seconds:.0f} s", flush=True)
    t0 = time.perf_counter()
    n = export_all(root)
    print(f"exports: {n} files in {time.perf_counter() - t0:.0f} s", flush=True)
    from prunebench.report import build_report

    result = build_report(root, force=True)
    print(result.message)
    print_compression(root)
    print(f"total wall time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    if "--exports-only" in sys.argv:
        sys.argv.remove("--exports-only")
        sys.argv.append("--figures-only")
    main()
