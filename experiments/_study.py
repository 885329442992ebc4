"""Shared glue for the study scripts: run a study through the CLI, then render figures.

Each script in this folder is one study: it runs ``prunebench experiment=<name>`` into
its own results root (``outputs/<name>`` by default) and writes the report plus the
study's own figure there. Extra Hydra overrides given on the command line are passed on,
e.g. ``python experiments/quickstart.py trainer=gpu``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def parse(description: str, default_root: str) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=default_root, help=f"results root (default {default_root})")
    ap.add_argument("--figures-only", action="store_true", help="only re-render figures from existing results")
    return ap.parse_known_args()


def run_study(experiment: str, root: str, overrides: Sequence[str]) -> float:
    """Run ``prunebench experiment=<experiment>`` in a subprocess; return wall seconds."""
    cmd = [sys.executable, "-m", "prunebench", f"experiment={experiment}", f"paths.root={root}", *overrides]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO)
    return time.perf_counter() - start


def render(root: str, name: str, draw: Callable[..., object]) -> list[Path]:
    """Draw the study's figure from the results under ``root`` and save it as PNG + PDF."""
    from prunebench import plots
    from prunebench.results import load

    df = load(root)
    ax = draw(df)
    paths = plots.save_figure(ax, Path(root) / "report" / name)
    for p in paths:
        print("figure:", p)
    return paths


def main(experiment: str, description: str, figure: str, draw: Callable[..., object]) -> None:
    args, overrides = parse(description, f"outputs/{experiment}")
    if not args.figures_only:
        seconds = run_study(experiment, args.root, overrides)
        print(f"{experiment}: {seconds:.0f} s")
    render(args.root, figure, draw)
