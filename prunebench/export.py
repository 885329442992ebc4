"""Export a finished level of a run as a deployable model (``prunebench-export``).

::

    prunebench-export outputs --run 3f2a9c1b7d40 --level 2 --format pt          # -> outputs/export/...pt
    prunebench-export outputs --run 3f2a9c1b7d40 --best --max-drop 0.01 --format onnx --out model.onnx
    prunebench-export outputs --run 3f2a9c1b7d40 --level 2 --format onnx --quantize int8

    from prunebench.export import export, best_level, load_exported
    path = export("outputs", "3f2a9c1b7d40", level=2, format="onnx")

An exported file is self-contained: it takes the inputs the data set yields *before*
preprocessing (images as float32 in [0, 1], token ids for text) and carries the run's
preprocessing (``data.normalize``: its mean and std) inside itself, so it is fed as the
data is loaded, not as prunebench standardised it.

* ``pt``: a ``prunebench.pruned/1`` file (see :mod:`prunebench.pruning.structured.io`):
  plain data only, so ``torch.load(path, weights_only=True)`` reads it. A channel-pruned
  level is the physically smaller network (its architecture: per-layer widths, and its
  state dict); a masked level (unstructured, N:M) is the dense architecture with the
  zeros applied to the weights, so loading needs no mask machinery. ``extra`` records
  how to build the dense network (``model``: ``name``, ``kwargs``, ``input_shape``,
  ``num_classes``), ``preprocessing``, ``input`` (name, shape, dtype, value range),
  ``class_names``, ``run_id`` and ``level``; :func:`load_exported` returns the network
  behind its preprocessing (:class:`prunebench.data.base.Preprocessed`).
* ``onnx``: torch's ONNX exporter (batch dimension dynamic) of the network behind its
  preprocessing; the same records are in the file's ``metadata_props``. The file is run
  with onnxruntime on real test inputs (the first ``CHECK_BATCH``, raw) and compared with
  PyTorch; a difference beyond ``atol=1e-4`` (plus ``rtol=1e-4``) raises
  :class:`ExportCheckError`. Needs the ``export`` extra (onnx, onnxscript, onnxruntime).
* ``--quantize int8`` (onnx only): ONNX Runtime's post-training static quantization,
  calibrated on training batches only (:func:`prunebench.artifact.quantize_int8`).

Measured as shipped (default; ``--no-measure`` skips it): the written file is run on the
whole test split (onnxruntime, or the loaded pt module) and its accuracy, bytes, gzip
bytes and batch-1 / large-batch latency are appended to ``<root>/export/exports.csv``
(prunebench-report reads it). An fp32 file whose accuracy differs from the row's
``test_acc`` by more than 0.1 pp is an error (:class:`ExportCheckError`, exit status 1).
An int8 file changes the model, so its accuracy is recorded with its difference from the
fp32 row, and only a drop beyond ``--max-int8-drop`` points (default 1.0) is an error.

Choosing a level: :func:`best_level` picks, from a results table, the level that is best
under a budget (accuracy drop on validation vs the dense level, latency, parameters).

Errors on bad input (unknown run, unfinished level, bad format, no level within the
budget, --quantize on a token model or without calibration batches) are ConfigError
naming the option and its value, raised before any work; the CLI exits with status 2.
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
from prunebench.results.names import check_out_file, resolve_run_id
from prunebench.results.select import best_level  # noqa: F401  (re-exported: prunebench.export.best_level)
from prunebench.results.store import is_done, level_dir, read_rows, run_dir, runs_dir

FORMATS = ("onnx", "pt")
QUANTIZE = ("int8",)
ONNX_ATOL = 1e-4
ONNX_RTOL = 1e-4
CHECK_BATCH = 8
#: An fp32 file must score the row's test_acc within this many percentage points.
TOLERANCE_PP = 0.1
#: An int8 file may lose this many points against the fp32 row before the export is an error.
MAX_INT8_DROP_PP = 1.0
CALIBRATION_BATCHES = 16


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


def run_data(root: str | os.PathLike[str], run_id: str, *, data_dir: str | os.PathLike[str] | None = None) -> Any:
    """The run's data module, set up: from ``config.json["data"]`` (name, options, the root
    it was read from) or, for runs that did not record it, from its identity and
    ``data_dir``. ``data_dir`` overrides the recorded root. None when the run records no
    data set at all. Never downloads."""
    import inspect

    from prunebench.data import DATASETS, build_datamodule

    config = _run_config(run_dir(root, run_id))
    rec = config.get("data")
    if isinstance(rec, dict) and rec.get("name"):
        name, kwargs = str(rec["name"]), dict(rec.get("kwargs") or {})
        where = str(data_dir) if data_dir is not None else str(rec.get("root") or "data")
    else:
        ident = dict((config.get("identity") or {}).get("data") or {})
        if "name" not in ident:
            return None
        name = str(ident.pop("name"))
        if name == "custom":
            return None  # the identity holds the factory's file name, not where it is
        kwargs = {k: v for k, v in ident.items() if not k.endswith("sha256")}
        where = str(data_dir if data_dir is not None else "data")
    seed = int((config.get("identity") or {}).get("seed", 0))
    try:
        if "download" in inspect.signature(DATASETS.get(name)).parameters:
            kwargs["download"] = False  # exporting never downloads
        dm = build_datamodule(name, seed=seed, root=where, **kwargs)
        dm.prepare_data()
        dm.setup("fit")
    except ConfigError as e:
        raise ConfigError(f"--data-dir: the run's data (data={name!r}) cannot be loaded from {where!r}: {e}; "
                          "pass --data-dir=<folder> (or --no-measure for pt)") from None
    return dm


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
    run_id = resolve_run_id(root, run_id)  # an id or a unique prefix, never a path
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


def _row_of(root: str | os.PathLike[str], run_id: str, level: int) -> dict[str, Any]:
    rows = read_rows(run_dir(root, run_id))
    row = rows[rows["level"] == level].iloc[-1]
    return {k: (None if pd.isna(v) else (v.item() if hasattr(v, "item") else v)) for k, v in row.items()}


def _check_options(format: str, quantize: str | None, calibration_batches: int) -> None:  # noqa: A002
    if format not in FORMATS:
        raise ConfigError(f"--format={format!r} is not a known format; valid: {', '.join(FORMATS)}")
    if quantize is not None:
        if quantize not in QUANTIZE:
            raise ConfigError(f"--quantize={quantize!r} is not supported; valid: {', '.join(QUANTIZE)}")
        if format != "onnx":
            raise ConfigError(f"--quantize={quantize} needs --format=onnx (ONNX Runtime's int8 kernels), "
                              f"not --format={format}")
        if isinstance(calibration_batches, bool) or not isinstance(calibration_batches, int) or calibration_batches < 1:
            raise ConfigError(f"--calibration-batches={calibration_batches!r}: --quantize int8 needs a calibration "
                              "split of at least one training batch")


def export(
    root: str | os.PathLike[str],
    run_id: str,
    level: int,
    format: str = "pt",  # noqa: A002 - the CLI's name
    out: str | os.PathLike[str] | None = None,
    *,
    build_net: Callable[[], nn.Module] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    quantize: str | None = None,
    measure: bool = True,
    calibration_batches: int = CALIBRATION_BATCHES,
    max_int8_drop: float = MAX_INT8_DROP_PP,
    large_batch: int = 256,
) -> Path:
    """Write level ``level`` of run ``run_id`` under ``root`` as ``format`` (optionally
    ``quantize="int8"``); returns the path.

    ``out`` defaults to ``<root>/export/<run_id>-level<k>[-int8].<format>``. With ``measure``
    the file is evaluated as shipped and a row appended to ``<root>/export/exports.csv``.
    See the module docstring for what each format holds and what is checked.
    """
    _check_options(format, quantize, calibration_batches)
    run_id = resolve_run_id(root, run_id)
    if out is not None:
        out = check_out_file(out)
    config = _run_config(run_dir(root, run_id)) if run_dir(root, run_id).is_dir() else {}
    pre = config.get("preprocessing") if isinstance(config.get("preprocessing"), dict) else None
    if quantize is not None and pre is not None and pre.get("input") == "token ids":
        raise ConfigError(f"--quantize={quantize}: run {run_id} is a language model (token-id inputs); int8 "
                          "export is for image and signal classifiers only")
    net, record = load_level(root, run_id, level, build_net=build_net, data_dir=data_dir or "data")
    dm = run_data(root, run_id, data_dir=data_dir) if (measure or format == "onnx" or pre is None) else None
    if measure and dm is None:
        raise ConfigError(f"run {run_id} records no data set to measure the export on; pass --no-measure")
    if dm is not None:
        from prunebench.data.base import preprocessing_of

        if getattr(dm, "task", "classification") == "language_modeling" and quantize is not None:
            raise ConfigError(f"--quantize={quantize}: run {run_id} is a language model (token-id inputs); int8 "
                              "export is for image and signal classifiers only")
        pre = preprocessing_of(dm)
    model: nn.Module = net
    if pre is not None and pre.get("mean") is not None:
        from prunebench.data.base import Preprocessed

        model = Preprocessed(net, torch.tensor(pre["mean"]).view(_stat_shape(pre, record)),
                             torch.tensor(pre["std"]).view(_stat_shape(pre, record))).eval()
    suffix = f"-{quantize}" if quantize else ""
    out_path = Path(out) if out is not None else Path(root) / "export" / f"{run_id}-level{level}{suffix}.{format}"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    row = _row_of(root, run_id, level)
    class_names = (config.get("data") or {}).get("class_names") or (getattr(dm, "class_names", None) if dm else None)
    input_info = {"name": "input", "shape": ["batch", *record["input_shape"]],
                  "dtype": (pre or {}).get("input_dtype", "float32"), "range": (pre or {}).get("input_range")}
    meta = {"run_id": run_id, "level": int(level), "model": record, "preprocessing": pre, "input": input_info,
            "class_names": class_names, "quantize": quantize,
            "results": {k: row.get(k) for k in ("val_acc", "test_acc", "sparsity", "params", "flops", "structure",
                                                 "method", "target_sparsity") if k in row}}
    test = dm.raw_split("test") if dm is not None else None
    if format == "pt":
        from prunebench.pruning.structured import save_pruned

        save_pruned(net, out_path, extra=meta)
    else:
        if test is not None:
            example = test[0][:CHECK_BATCH]
        else:  # no data recorded (a hand-made run folder): the check can only use noise
            example = torch.randn(CHECK_BATCH, *record["input_shape"], generator=torch.Generator().manual_seed(0))
        target = out_path if quantize is None else out_path.with_name(f".{out_path.name}.fp32.onnx")
        export_onnx_checked(model, example, target)
        try:
            if quantize is not None:
                from prunebench.artifact import calibration_inputs, quantize_int8

                x_train, _ = dm.raw_split("train")
                seed = int((config.get("identity") or {}).get("seed", 0))
                quantize_int8(target, out_path, calibration_inputs(x_train, calibration_batches, seed=seed))
                meta["calibration"] = {"split": "train", "batches": calibration_batches, "batch_size": 32}
        finally:
            if quantize is not None:
                target.unlink(missing_ok=True)
        from prunebench.artifact import set_onnx_metadata

        set_onnx_metadata(out_path, {k: v for k, v in meta.items() if v is not None} | {"format": "prunebench.onnx/1"})
    if measure:
        _measure_and_record(root, out_path, format, quantize, test, row, pre, config, large_batch=large_batch,
                            calibration=calibration_batches * 32 if quantize else None, max_int8_drop=max_int8_drop)
    return out_path


def _stat_shape(pre: dict[str, Any], record: dict[str, Any]) -> tuple[int, ...]:
    shape = list(record["input_shape"])
    n = len(pre["mean"])
    return (n, 1, 1) if len(shape) == 3 else tuple([1] * (len(shape) - 1)) if len(shape) > 1 else (n,)


def _measure_and_record(root: str | os.PathLike[str], path: Path, format: str, quantize: str | None,  # noqa: A002
                        test: Any, row: dict[str, Any], pre: dict[str, Any] | None, config: dict[str, Any], *,
                        large_batch: int, calibration: int | None, max_int8_drop: float) -> None:
    from prunebench.artifact import append_export, measure
    from prunebench.data.base import describe_preprocessing

    got = measure(path, format, test[0], test[1], large_batch=large_batch, load=load_exported)
    ref = row.get("test_acc")
    diff = None if ref is None else 100.0 * (got["test_acc"] - float(ref))
    if quantize is None:
        ok = diff is not None and abs(diff) <= TOLERANCE_PP
        check = f"|file - row| <= {TOLERANCE_PP} pp"
    else:
        ok = diff is not None and diff >= -max_int8_drop
        check = f"int8 drop vs fp32 row <= {max_int8_drop} pp"
    ident = config.get("identity") or {}
    append_export(root, {
        "run_id": row.get("run_id"), "level": row.get("level"), "format": format, "quantize": quantize,
        "path": str(path), "status": "ok" if ok else "failed", "dataset": row.get("dataset"), "model": row.get("model"),
        "method": row.get("method"), "structure": row.get("structure"), "label": row.get("label"),
        "experiment": row.get("experiment"), "seed": row.get("seed", ident.get("seed")),
        "target_sparsity": row.get("target_sparsity"), "sparsity": row.get("sparsity"), "params": row.get("params"),
        "channel_ratio": row.get("channel_ratio"), "test_acc_row": ref, "acc_diff_pp": diff, "check": check,
        "calibration_samples": calibration, "preprocessing": describe_preprocessing(pre) if pre else None, **got})
    if not ok:
        raise ExportCheckError(
            f"the exported file {str(path)!r} scores test accuracy {got['test_acc']:.4f} on the run's test split, the "
            f"results row says {ref}: {diff if diff is None else round(diff, 3)} pp, outside the check ({check}); "
            "recorded as failed in export/exports.csv")


def load_exported(path: str | os.PathLike[str], build_net: Callable[[], nn.Module] | None = None) -> nn.Module:
    """Load a ``pt`` export (weights_only): the dense network from ``build_net`` or the file's
    own net record, shrunk to the saved widths, weights loaded, behind the recorded
    preprocessing (so it takes raw inputs, e.g. images in [0, 1]); eval mode. The bare
    network is ``.net`` of the returned :class:`~prunebench.data.base.Preprocessed`."""
    from prunebench.pruning.structured import load_pruned, read_pruned

    extra = read_pruned(path).get("extra", {})
    record = extra.get("model")
    if build_net is None and not isinstance(record, dict):
        raise ConfigError(f"{str(path)!r} records no model to build; pass build_net")
    net = load_pruned(path, build_net or (lambda: build_from_record(record))).eval()
    pre = extra.get("preprocessing")
    if isinstance(pre, dict) and pre.get("mean") is not None:
        from prunebench.data.base import Preprocessed

        shape = _stat_shape(pre, record) if isinstance(record, dict) else (len(pre["mean"]), 1, 1)
        return Preprocessed(net, torch.tensor(pre["mean"]).view(shape), torch.tensor(pre["std"]).view(shape)).eval()
    return net


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
    p.add_argument("--run", required=True, help="run id (the folder name under ROOT/runs, or a unique prefix)")
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
    p.add_argument("--data-dir", default=None, help="data folder (default: where the run read its data)")
    p.add_argument("--quantize", choices=QUANTIZE, help="int8: ONNX Runtime static quantization, calibrated on "
                                                       "training batches (onnx only)")
    p.add_argument("--calibration-batches", type=int, default=CALIBRATION_BATCHES,
                   help="training batches of 32 for int8 calibration")
    p.add_argument("--max-int8-drop", type=float, default=MAX_INT8_DROP_PP,
                   help="int8: largest accepted test accuracy drop vs the fp32 row, in points")
    p.add_argument("--no-measure", action="store_true", help="do not evaluate the written file on the test split")
    p.add_argument("--large-batch", type=int, default=256, help="batch size of the large-batch latency")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run = resolve_run_id(args.root, args.run)
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
        if args.quantize is not None:
            _check_options(args.format, args.quantize, args.calibration_batches)
        path = export(args.root, args.run, level, args.format, args.out, data_dir=args.data_dir,
                      quantize=args.quantize, measure=not args.no_measure,
                      calibration_batches=args.calibration_batches, max_int8_drop=args.max_int8_drop,
                      large_batch=args.large_batch)
    except ConfigError as e:
        print(f"prunebench-export: error: {e}", file=sys.stderr)
        return 2
    except ExportCheckError as e:
        print(f"prunebench-export: error: {e}", file=sys.stderr)
        return 1
    if not args.no_measure:
        from prunebench.artifact import read_exports

        df = read_exports(args.root)
        r = df[df["path"].astype(str) == str(path)].iloc[-1]
        print(f"measured {path.name}: test_acc {r['test_acc']:.4f} (row {r['test_acc_row']}, {r['acc_diff_pp']:+.3f} "
              f"pp), {int(r['bytes'])} bytes, {int(r['gzip_bytes'])} gzip, {r['latency_ms_b1']:.3f} ms at batch 1, "
              f"{r['latency_ms_large']:.3f} ms at batch {int(r['batch_large'])} -> {args.root}/export/exports.csv",
              file=sys.stderr)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
