"""Export a finished level of a run as a deployable model (``prunebench-export``).

::

    prunebench-export outputs --run 3f2a9c1b7d40 --level 2 --format pt          # -> outputs/export/...pt
    prunebench-export outputs --run 3f2a9c1b7d40 --best --max-drop 0.01 --format onnx --out model.onnx

    from prunebench.export import export, best_level, load_exported
    path = export("outputs", "3f2a9c1b7d40", level=2, format="onnx")

What is written:

* ``pt``: a ``prunebench.pruned/1`` file (see :mod:`prunebench.pruning.structured.io`):
  plain data only, so ``torch.load(path, weights_only=True)`` reads it. A channel-pruned
  level is the physically smaller network (its architecture: per-layer widths, and its
  state dict); a masked level (unstructured, N:M) is the dense architecture with the
  zeros applied to the weights, so loading needs no mask machinery. ``extra["model"]``
  records how to build the dense network (``name``, ``kwargs``, ``input_shape``,
  ``num_classes``) and :func:`load_exported` rebuilds the model from it (or from a
  factory you pass).
* ``onnx``: torch's ONNX exporter (batch dimension dynamic), then the file is run with
  onnxruntime on a batch of standard-normal inputs (prunebench standardises every data
  set, so this is the input scale the model saw) and compared with PyTorch; a difference
  beyond ``atol=1e-4`` (plus ``rtol=1e-4``) raises :class:`ExportCheckError`. Needs the
  ``export`` extra (``pip install "prunebench[export]"``: onnx, onnxscript, onnxruntime).

Choosing a level: :func:`best_level` picks, from a results table, the level that is best
under a budget (accuracy drop on validation vs the dense level, latency, parameters).

Errors on bad input (unknown run, unfinished level, bad format, no level within the
budget) are ConfigError naming the option and its value; the CLI exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from prunebench.errors import ConfigError, CorruptFileError, check_range
from prunebench.results.select import best_level  # noqa: F401  (re-exported: prunebench.export.best_level)
from prunebench.results.store import is_done, level_dir, read_rows, run_dir, runs_dir

FORMATS = ("onnx", "pt")
ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-4
CHECK_BATCH = 8


class ExportCheckError(RuntimeError):
    """The exported file does not compute what the PyTorch model computes."""


# ---------------------------------------------------------------- choosing a level


# ---------------------------------------------------------------- reading a run folder


def net_record(name: str, kwargs: dict[str, Any], input_shape: Sequence[int], num_classes: int) -> dict[str, Any]:
    """How to build a run's dense network: the ``"net"`` entry of a run's ``config.json``."""
    return {"name": name, "kwargs": dict(kwargs), "input_shape": [int(s) for s in input_shape],
            "num_classes": int(num_classes)}


def _run_config(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"run folder {str(path)!r} has no config.json") from None
    except json.JSONDecodeError as e:
        raise CorruptFileError(f"{path / 'config.json'} cannot be read ({e})") from None


def run_net_record(root: str | os.PathLike[str], run_id: str, *, data_dir: str | os.PathLike[str] = "data"
                   ) -> dict[str, Any]:
    """The run's :func:`net_record`: from ``config.json["net"]`` when the run wrote it, else
    rebuilt from its identity (model name and options; input shape and class count from its
    data set, set up from ``data_dir``)."""
    config = _run_config(run_dir(root, run_id))
    if isinstance(config.get("net"), dict):
        return config["net"]
    ident = config.get("identity") or {}
    model, data = dict(ident.get("model") or {}), dict(ident.get("data") or {})
    if "name" not in model or "name" not in data:
        raise CorruptFileError(f"{run_dir(root, run_id) / 'config.json'} records no model/data identity")
    import inspect

    from prunebench.data import DATASETS, build_datamodule

    dname = data.pop("name")
    if "download" in inspect.signature(DATASETS.get(dname)).parameters:
        data["download"] = False  # exporting never downloads: the run's data is already on disk
    dm = build_datamodule(dname, seed=int(ident.get("seed", 0)), root=str(data_dir), **data)
    dm.prepare_data()
    dm.setup("fit")
    return net_record(model.pop("name"), model, dm.input_shape, dm.num_classes)


def build_from_record(record: dict[str, Any]) -> nn.Module:
    """The dense network a :func:`net_record` describes (random weights)."""
    from prunebench.models import build_model

    return build_model(record["name"], tuple(record["input_shape"]), int(record["num_classes"]),
                       **dict(record.get("kwargs") or {}))


def _finished_levels(path: Path) -> list[int]:
    rows = read_rows(path)
    if not len(rows):
        return []
    ok = rows["status"].astype("string").fillna("ok") == "ok"
    return sorted(int(v) for v in rows.loc[ok, "level"].dropna())


def load_level(
    root: str | os.PathLike[str],
    run_id: str,
    level: int,
    *,
    build_net: Callable[[], nn.Module] | None = None,
    data_dir: str | os.PathLike[str] = "data",
) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a finished level (eval mode, zeros applied) and its net record.

    ``build_net`` builds the run's dense network (default: from the run's net record).
    Channel-pruned levels (``levels/<k>/model.pt``) come back physically smaller; masked
    levels (``state.pt`` + ``mask.pt``) come back dense with the mask's zeros in the weights.
    """
    if not isinstance(run_id, str) or not run_id or not runs_dir(root).exists() or not run_dir(root, run_id).is_dir():
        known = sorted(p.name for p in runs_dir(root).iterdir() if p.is_dir()) if runs_dir(root).exists() else []
        raise ConfigError(f"--run={run_id!r} is not a run under {str(root)!r}; runs: {', '.join(known) or 'none'}")
    path = run_dir(root, run_id)
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise ConfigError(f"--level={level!r} must be a level number (0 is the dense model)")
    finished = _finished_levels(path)
    if level not in finished:
        state = "finished" if is_done(path) else "unfinished"
        raise ConfigError(f"--level={level} of run {run_id} ({state}) is not a finished level; finished levels: "
                          f"{', '.join(map(str, finished)) or 'none'}")
    record = run_net_record(root, run_id, data_dir=data_dir)
    factory = build_net or (lambda: build_from_record(record))
    ld = level_dir(path, level)
    from prunebench.results.levels import has_level, load_level_into

    if (ld / "model.pt").exists():
        from prunebench.pruning.structured import load_pruned

        net = load_pruned(ld / "model.pt", factory)
    elif has_level(ld):
        net = factory()
        with torch.no_grad():  # the one level reader (either file format); imports no Lightning
            load_level_into(ld, net).apply(net)
    else:
        raise CorruptFileError(f"level {level} of run {run_id} has no model.pt nor state.pt + mask.pt in {ld}")
    return net.eval(), record


# ---------------------------------------------------------------- writing


def export(
    root: str | os.PathLike[str],
    run_id: str,
    level: int,
    format: str = "pt",  # noqa: A002 - the CLI's name
    out: str | os.PathLike[str] | None = None,
    *,
    build_net: Callable[[], nn.Module] | None = None,
    data_dir: str | os.PathLike[str] = "data",
) -> Path:
    """Write level ``level`` of run ``run_id`` under ``root`` as ``format``; returns the path.

    ``out`` defaults to ``<root>/export/<run_id>-level<k>.<format>``. See the module docstring
    for what each format holds and how ONNX is checked.
    """
    if format not in FORMATS:
        raise ConfigError(f"--format={format!r} is not a known format; valid: {', '.join(FORMATS)}")
    net, record = load_level(root, run_id, level, build_net=build_net, data_dir=data_dir)
    out_path = Path(out) if out is not None else Path(root) / "export" / f"{run_id}-level{level}.{format}"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if format == "pt":
        from prunebench.pruning.structured import save_pruned

        rows = read_rows(run_dir(root, run_id))
        row = rows[rows["level"] == level].iloc[-1]
        keep = ("val_acc", "test_acc", "sparsity", "params", "flops", "structure", "method")
        summary = {k: (None if pd.isna(row[k]) else (row[k].item() if hasattr(row[k], "item") else row[k]))
                   for k in keep if k in row}
        return save_pruned(net, out_path, extra={"model": record, "run_id": run_id, "level": int(level),
                                                 "results": summary})
    example = torch.randn(CHECK_BATCH, *record["input_shape"], generator=torch.Generator().manual_seed(0))
    return export_onnx_checked(net, example, out_path)


def load_exported(path: str | os.PathLike[str], build_net: Callable[[], nn.Module] | None = None) -> nn.Module:
    """Load a ``pt`` export (weights_only): the dense network from ``build_net`` or the file's
    own net record, shrunk to the saved widths, weights loaded; eval mode."""
    from prunebench.pruning.structured import load_pruned, read_pruned

    record = read_pruned(path).get("extra", {}).get("model")
    if build_net is None and not isinstance(record, dict):
        raise ConfigError(f"{str(path)!r} records no model to build; pass build_net")
    return load_pruned(path, build_net or (lambda: build_from_record(record))).eval()


def export_onnx_checked(model: nn.Module, example: torch.Tensor, path: str | os.PathLike[str], *,
                        atol: float = ONNX_ATOL, rtol: float = ONNX_RTOL) -> Path:
    """Export ``model`` to ONNX (dynamic batch), run the file with onnxruntime on ``example`` and
    on its first 3 rows, and raise ExportCheckError if any output differs from PyTorch's beyond
    ``atol + rtol * |expected|``."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError(f"--format=onnx needs the export extra (pip install 'prunebench[export]'): {e}") from None
    import contextlib
    import io
    import warnings

    from prunebench.pruning.structured import io as structured_io

    model = model.eval()
    # The exporter prints its progress to stdout; the CLI's stdout is the exported path only.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        structured_io.export_onnx(model, example, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for batch in (example, example[:3]):
        with torch.no_grad():
            expected = model(batch).detach().cpu().numpy()
        got = session.run(None, {name: batch.detach().cpu().numpy()})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(f"ONNX file {str(path)!r}: output shape {got.shape} for a batch of {len(batch)}, "
                                   f"PyTorch gives {expected.shape}")
        diff = abs(got - expected)
        bound = atol + rtol * abs(expected)
        if not (diff <= bound).all():
            raise ExportCheckError(f"ONNX file {str(path)!r} differs from the PyTorch model: max |diff| "
                                   f"{diff.max():.3g} > atol {atol:g} + rtol {rtol:g} * |expected| "
                                   f"(batch of {len(batch)})")
    return Path(path)


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunebench-export", description=__doc__.split("\n\n")[0])
    p.add_argument("root", help="results root (paths.root of the runs)")
    p.add_argument("--run", required=True, help="run id (the folder name under ROOT/runs)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--level", type=int, help="level to export (0: the dense model)")
    which.add_argument("--best", action="store_true", help="the level best under the budget below")
    p.add_argument("--max-drop", type=float, help="budget: validation accuracy drop vs level 0 (0.01 = one point)")
    p.add_argument("--max-latency-ms", type=float, help="budget: measured latency in ms")
    p.add_argument("--max-params", type=float, help="budget: parameter count")
    p.add_argument("--prefer", default="auto", choices=("auto", "accuracy", "smallest"),
                   help="within the budget: highest val_acc or fewest params (auto: see best_level)")
    p.add_argument("--format", default="pt", help="pt | onnx")
    p.add_argument("--out", help="output file (default ROOT/export/<run>-level<k>.<format>)")
    p.add_argument("--data-dir", default="data", help="data folder, used only for runs that did not record their "
                                                      "input shape")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        level = args.level
        if args.best:
            rows = read_rows(run_dir(args.root, args.run)) if run_dir(args.root, args.run).is_dir() else None
            if rows is None:
                load_level(args.root, args.run, 0)  # raises the unknown-run error
            row = best_level(rows, max_drop=args.max_drop, max_latency_ms=args.max_latency_ms,
                             max_params=args.max_params, prefer=args.prefer)
            level = int(row["level"])
            print(f"best level under the budget: {level} (val_acc {row['val_acc']:.4f}, params {row['params']}, "
                  f"sparsity {row['sparsity']:.4f})", file=sys.stderr)
        path = export(args.root, args.run, level, args.format, args.out, data_dir=args.data_dir)
    except ConfigError as e:
        print(f"prunebench-export: error: {e}", file=sys.stderr)
        return 2
    except ExportCheckError as e:
        print(f"prunebench-export: error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
