"""Study wall time with ``study.jobs=2`` against ``study.jobs=1``, and whether the files are the same.

For each study, one launch with ``study.jobs=1`` and one with ``study.jobs=2`` (both with
``trainer.threads=1``, each into its own fresh root, the report off), one after the other
in this run, so both columns see the same machine. ``same_files`` compares the md5 of every
level file (masks, weights, per-layer tables), of the dense cache, and of every rows.csv
without its timing columns (train_seconds, finished_at, latency*): the results files.

Target (issue 23): ratio <= 0.6 on a 2-core machine, same_files True.

    python benchmarks/study_parallel.py                       # quickstart, lottery_lenet_mnist, lottery_mnist1d_paper
    python benchmarks/study_parallel.py --studies quickstart
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from prunebench.results.store import result_digests

STUDIES = {
    "quickstart": ["experiment=quickstart"],
    "lottery_lenet_mnist": ["experiment=lottery_lenet_mnist"],
    "lottery_mnist1d_paper": ["experiment=lottery_mnist1d_paper"],
}


def launch(args: list[str], root: Path, data: Path, jobs: int) -> tuple[float, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "prunebench", *args, f"paths.root={root}", f"paths.data_dir={data}", "report=false",
           "trainer.threads=1", "trainer.progress=false", f"study.jobs={jobs}"]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, out.returncode, out.stderr[-2000:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", nargs="+", default=list(STUDIES), choices=list(STUDIES))
    ap.add_argument("--data", default="data", help="paths.data_dir (data sets are read from / put there)")
    ap.add_argument("--extra", nargs="*", default=[], help="more overrides for every launch")
    args = ap.parse_args()
    rows = []
    for name in args.studies:
        with tempfile.TemporaryDirectory() as tmp:
            seq, rc1, err1 = launch([*STUDIES[name], *args.extra], Path(tmp) / "jobs1", Path(args.data), 1)
            par, rc2, err2 = launch([*STUDIES[name], *args.extra], Path(tmp) / "jobs2", Path(args.data), 2)
            for rc, err in ((rc1, err1), (rc2, err2)):
                if rc:
                    print(f"{name}: exit {rc}\n{err}", file=sys.stderr)
            a, b = result_digests(Path(tmp) / "jobs1"), result_digests(Path(tmp) / "jobs2")
            rows.append({"study": name, "runs": sum(k.endswith("rows.csv") for k in a), "jobs1_s": seq,
                         "jobs2_s": par, "ratio": par / seq, "same_files": bool(a) and a == b,
                         "files": len(a), "rc": f"{rc1}/{rc2}"})
        print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.2f}"), flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
