"""The exported file measured as shipped: accuracy, bytes, latency; int8 quantization.

``prunebench-export`` (:mod:`prunebench.export`) writes a self-contained file (the
preprocessing inside it); this module runs *that file* on the run's whole test split,
fed the inputs the data set yields before preprocessing, and records what an edge
engineer needs (:func:`measure`): accuracy, file bytes, gzip bytes, and the median
batch-1 and large-batch latency on this machine (one thread, as every job here). Rows
land in ``<root>/export/exports.csv`` (:func:`append_export`), which prunebench-report
reads (:func:`exports_summary`, :func:`plot_deploy`).

int8 (:func:`quantize_int8`): ONNX Runtime's post-training static quantization
(``quantize_static`` with a ``CalibrationDataReader``) of the fp32 ONNX file, calibrated
on training batches only. Why ONNX Runtime and not torch.ao: the artifact is ONNX, and
ORT runs the quantized graph with real int8 kernels on x86 and ARM CPUs (QLinearConv,
MatMulInteger / QLinearMatMul: its QDQ nodes are fused into them when the session
is created), so the file measured is the file shipped. torch.ao's eager int8 modules
need a rewritten model (QuantStub/DeQuantStub, fused modules) and export to ONNX poorly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from prunebench.errors import ConfigError

if TYPE_CHECKING:  # the report imports this module and imports no torch
    from torch import Tensor, nn

EXPORTS = "exports.csv"
#: Latency repeats: batch-1 calls and large-batch calls (medians are recorded), after warm-up.
REPEATS_B1, REPEATS_LARGE, WARMUP = 100, 10, 5
LARGE_BATCH = 256
EVAL_BATCH = 1000

#: exports.csv columns, in order (a row may leave some empty).
COLUMNS = (
    "run_id", "level", "format", "quantize", "path", "status", "dataset", "model", "method", "structure",
    "label", "experiment", "seed", "target_sparsity", "sparsity", "params", "channel_ratio",
    "test_acc_row", "test_acc", "acc_diff_pp", "check", "bytes", "gzip_bytes", "latency_ms_b1",
    "latency_ms_large", "batch_large", "threads", "test_samples", "calibration_samples", "preprocessing",
    "exported_at",
)


# ---------------------------------------------------------------- running a file


class _Runner:
    """Calls an exported file on numpy batches: an onnxruntime session or a torch module."""

    def __init__(self, path: Path, fmt: str, *, threads: int = 1,
                 load: Callable[[Path], Any] | None = None) -> None:
        self.fmt, self.threads = fmt, threads
        if fmt == "onnx":
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            inp = self.session.get_inputs()[0]
            self.name = inp.name
            self.dtype = np.int64 if "int64" in inp.type else np.float32
        else:
            if load is None:
                raise ValueError("a pt export needs load= (prunebench.export.load_exported)")
            self.module = load(path)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.fmt == "onnx":
            return self.session.run(None, {self.name: x.astype(self.dtype, copy=False)})[0]
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).numpy()


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy; for sequence logits ``[B, T, V]`` the next-token accuracy over all positions."""
    return float((logits.argmax(-1) == y).mean())


def _median_ms(fn: Any, x: np.ndarray, repeats: int) -> float:
    for _ in range(WARMUP):
        fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def measure(path: str | os.PathLike[str], fmt: str, x: Tensor, y: Tensor, *, threads: int = 1,
            large_batch: int = LARGE_BATCH, latency: bool = True,
            load: Callable[[Path], Any] | None = None) -> dict[str, Any]:
    """Run the file at ``path`` (``onnx``: onnxruntime; ``pt``: ``load``, which export passes as
    its :func:`~prunebench.export.load_exported`: the artifact layer does not import export) on all of
    ``(x, y)`` (raw inputs, as the data set yields them) with ``threads`` threads.

    Returns ``test_acc`` (the file's own accuracy), ``bytes``, ``gzip_bytes`` (gzip level 9
    of the file: what a general-purpose compressor makes of it), ``latency_ms_b1`` and
    ``latency_ms_large`` (median wall time of one call at batch 1 and at ``large_batch``,
    after warm-up), ``batch_large``, ``threads``, ``test_samples``.
    """
    path = Path(path)
    data = path.read_bytes()
    xs, ys = x.detach().cpu().numpy(), y.detach().cpu().numpy()
    with _torch_threads(threads):
        run = _Runner(path, fmt, threads=threads, load=load)
        correct, total = 0.0, 0
        for i in range(0, len(xs), EVAL_BATCH):
            out = run(xs[i : i + EVAL_BATCH])
            yb = ys[i : i + EVAL_BATCH]
            correct += accuracy(out, yb) * yb.size
            total += yb.size
        big = min(int(large_batch), len(xs))
        b1 = _median_ms(run, xs[:1], REPEATS_B1) if latency and len(xs) else math.nan
        large = _median_ms(run, xs[:big], REPEATS_LARGE) if latency and len(xs) else math.nan
    return {"test_acc": correct / max(total, 1), "bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9)),
            "latency_ms_b1": b1, "latency_ms_large": large, "batch_large": big, "threads": threads,
            "test_samples": len(xs)}


# ---------------------------------------------------------------- int8


class _Batches:
    """An onnxruntime CalibrationDataReader over a list of numpy batches (built lazily so the
    module imports without onnxruntime)."""

    def __new__(cls, name: str, batches: Sequence[np.ndarray]) -> Any:
        from onnxruntime.quantization import CalibrationDataReader

        class Reader(CalibrationDataReader):  # type: ignore[misc]
            def __init__(self) -> None:
                self._it = iter([{name: b} for b in batches])

            def get_next(self) -> dict[str, np.ndarray] | None:
                return next(self._it, None)

        return Reader()


def calibration_inputs(x_train: Tensor, batches: int, batch_size: int = 32, seed: int = 0) -> list[np.ndarray]:
    """``batches`` batches of ``batch_size`` raw training inputs, a seeded draw (training split
    only: never validation or test samples)."""
    if batches < 1:
        raise ConfigError(f"--calibration-batches={batches!r}: int8 calibration needs at least one training batch")
    if len(x_train) == 0:
        raise ConfigError("--quantize int8 needs a calibration split: the run's training split is empty")
    import torch

    from prunebench.seeding import mix_seed

    perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(mix_seed(seed, "int8")))
    perm = perm[: batches * batch_size]
    return [x_train[idx].detach().cpu().numpy().astype(np.float32) for idx in perm.split(batch_size) if len(idx)]


def quantize_int8(fp32_path: str | os.PathLike[str], out: str | os.PathLike[str],
                  calibration: Sequence[np.ndarray]) -> Path:
    """Post-training static int8 quantization of an fp32 ONNX file with ONNX Runtime.

    QDQ format, int8 weights per output channel (symmetric), uint8 activations with ranges
    from MinMax calibration on ``calibration`` (raw training batches). The graph is first
    run through ORT's ``quant_pre_process`` (shape inference and graph optimisation), as
    ORT recommends; should that fail on a graph, the file is quantized as it is.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ConfigError("--quantize int8 needs a calibration split: no training batches were given")
    out = Path(out)
    name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name
    src = Path(fp32_path)
    pre = out.with_name(f".{out.name}.pre.onnx")
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with contextlib.redirect_stdout(None), contextlib.redirect_stderr(None):  # type: ignore[type-var]
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        src = pre
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation, not required
        pre.unlink(missing_ok=True)
    try:
        quantize_static(str(src), str(out), _Batches(name, calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        pre.unlink(missing_ok=True)
    return out


def set_onnx_metadata(path: str | os.PathLike[str], meta: Mapping[str, Any]) -> None:
    """Write ``meta`` (values as strings; non-strings JSON) into the file's ``metadata_props``."""
    import json

    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value)
        if key in existing:
            existing[key].value = text
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, text
    from prunebench.results.store import atomic_write_bytes

    atomic_write_bytes(Path(path), model.SerializeToString())


def onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The file's ``metadata_props`` as a dict of strings."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


# ---------------------------------------------------------------- the exports table


def exports_path(root: str | os.PathLike[str]) -> Path:
    return Path(root) / "export" / EXPORTS


def append_export(root: str | os.PathLike[str], row: Mapping[str, Any]) -> pd.DataFrame:
    """Add ``row`` to ``<root>/export/exports.csv`` (replacing an earlier row of the same
    run, level, format, quantization and path); locked and atomic. Returns the table."""
    from prunebench.results.lock import file_lock
    from prunebench.results.store import atomic_write_text

    path = exports_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    row = {"exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **row}
    with file_lock(path.with_suffix(".lock")):
        old = read_exports(root)
        new = pd.DataFrame([{c: row.get(c) for c in COLUMNS} | {k: v for k, v in row.items() if k not in COLUMNS}])
        if len(old):
            same = ((old["run_id"].astype(str) == str(row.get("run_id"))) & (old["level"] == row.get("level"))
                    & (old["format"].astype(str) == str(row.get("format")))
                    & (old["quantize"].fillna("").astype(str) == str(row.get("quantize") or ""))
                    & (old["path"].astype(str) == str(row.get("path"))))
            old = old[~same]
        table = pd.concat([old, new], ignore_index=True) if len(old) else new
        atomic_write_text(path, table.to_csv(index=False))
    return table


def read_exports(root: str | os.PathLike[str]) -> pd.DataFrame:
    """``<root>/export/exports.csv`` (empty frame with the columns when absent)."""
    path = exports_path(root)
    if not path.exists():
        return pd.DataFrame(columns=list(COLUMNS))
    df = pd.read_csv(path)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.NA
    df["quantize"] = df["quantize"].where(df["quantize"].notna(), None)
    return df


def exports_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, model, structure, target sparsity, format, quantize): mean over seeds of
    the measured accuracy, its difference from the row, bytes, gzip bytes, latencies; and
    the number of seeds."""
    if not len(df):
        return df
    d = df[df["status"].fillna("ok") == "ok"].copy()
    d["quantize"] = d["quantize"].fillna("fp32").replace("", "fp32")
    keys = ["dataset", "model", "structure", "target_sparsity", "format", "quantize"]
    for k in keys:
        d[k] = d[k].fillna("-") if d[k].dtype == object else d[k]
    vals = ["test_acc", "acc_diff_pp", "bytes", "gzip_bytes", "latency_ms_b1", "latency_ms_large", "sparsity"]
    for v in vals:
        d[v] = pd.to_numeric(d[v], errors="coerce")
    g = d.groupby(keys, dropna=False, sort=True)
    out = g[vals].mean()
    out["seeds"] = g["run_id"].nunique()
    return out.reset_index()


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For (cost, accuracy) points: True where no other point has cost <= and accuracy >=
    with one of them strictly better (lower cost is better, higher accuracy is better)."""
    out = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a and (c2 < c or a2 > a)) for j, (c2, a2) in enumerate(points) if j != i)
        out.append(not dominated)
    return out


def plot_deploy(df: pd.DataFrame, axes: Sequence[Any] | None = None) -> Any:
    """Accuracy against gzip bytes (left) and batch-1 latency (right), one point per exported
    configuration (mean over seeds), fp32 as circles and int8 as triangles, the Pareto front
    of each model and panel drawn as a line. ONNX files only when there are any. Returns the Figure."""
    import matplotlib.pyplot as plt

    if (df["format"] == "onnx").any():  # the deployment artifact; pt files are for PyTorch users
        df = df[df["format"] == "onnx"]
    s = exports_summary(df)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    fig = axes[0].figure
    colours = {"unstructured": "tab:blue", "channel": "tab:orange"}
    for ax, col, label in ((axes[0], "gzip_bytes", "artifact size, gzip (bytes)"),
                           (axes[1], "latency_ms_b1", "latency, batch 1 (ms)")):
        for model, sm in s.groupby("model", sort=True):
            for (structure, q), part in sm.groupby(["structure", "quantize"], sort=True):
                dense = part["target_sparsity"].fillna(0) == 0
                colour = "tab:gray" if dense.all() else colours.get(str(structure), "tab:green")
                ax.scatter(part[col], 100 * part["test_acc"], marker="^" if q == "int8" else "o", color=colour,
                           alpha=0.85, label=f"{model} {structure} {q}")
            pts = list(zip(sm[col].astype(float), sm["test_acc"].astype(float)))
            front = sm[pareto_front(pts)].sort_values(col)
            ax.plot(front[col], 100 * front["test_acc"], "k-", lw=1, alpha=0.6)
            for _, r in front.iterrows():
                ax.annotate(f"{r['target_sparsity'] if pd.notna(r['target_sparsity']) else 0:.2g}", (r[col], 100 * r["test_acc"]),
                            textcoords="offset points", xytext=(3, 3), fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy of the file (%)")
        ax.grid(alpha=0.3)
    axes[0].set_title("accuracy vs size (line: Pareto front; o fp32, ^ int8)")
    axes[1].set_title("accuracy vs latency (one thread)")
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    axes[1].legend(uniq.values(), uniq.keys(), fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def compression_at(df: pd.DataFrame, max_loss_pp: float = 0.2) -> pd.DataFrame:
    """Per model: the smallest artifact (gzip bytes, mean over seeds) whose accuracy is within
    ``max_loss_pp`` points of the dense fp32 file, and the compression ``dense bytes (the fp32
    file, uncompressed) / its gzip bytes`` — Deep Compression's measure (1070 KB → 27 KB = 40x
    for LeNet-300-100)."""
    s = exports_summary(df)
    rows = []
    for model, sm in s.groupby("model", sort=True):
        dense = sm[(sm["target_sparsity"].fillna(0) == 0) & (sm["quantize"] == "fp32") & (sm["format"] == "onnx")]
        if not len(dense):
            continue
        d = dense.iloc[0]
        ok = sm[(sm["test_acc"] >= d["test_acc"] - max_loss_pp / 100 - 1e-12) & (sm["format"] == "onnx")]
        best = ok.sort_values("gzip_bytes").iloc[0]
        rows.append({"model": model, "dense_bytes": int(d["bytes"]), "dense_acc": d["test_acc"],
                     "structure": best["structure"], "target_sparsity": best["target_sparsity"],
                     "quantize": best["quantize"], "gzip_bytes": int(best["gzip_bytes"]), "acc": best["test_acc"],
                     "loss_pp": 100 * (d["test_acc"] - best["test_acc"]),
                     "compression": d["bytes"] / best["gzip_bytes"]})
    return pd.DataFrame(rows)


def write_report_files(root: str | os.PathLike[str], out: str | os.PathLike[str]) -> list[Path]:
    """For prunebench-report: ``exports.csv`` (all rows), ``exports_summary.csv`` / ``.md`` and,
    with more than one configuration, ``deploy.png`` (:func:`plot_deploy`). Nothing when no
    export was measured."""
    df = read_exports(root)
    if not len(df):
        return []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    summary = exports_summary(df)
    summary.to_csv(out / "exports_summary.csv", index=False)
    cols = ["dataset", "model", "structure", "target_sparsity", "format", "quantize", "test_acc", "acc_diff_pp",
            "bytes", "gzip_bytes", "latency_ms_b1", "latency_ms_large", "seeds"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    comp = compression_at(df)
    if len(comp):
        lines += ["", "Compression at <= 0.2 pp accuracy loss (dense fp32 bytes / artifact gzip bytes):", ""]
        for _, r in comp.iterrows():
            lines.append(f"- {r['model']}: {r['compression']:.1f}x ({r['structure']} {_fmt(r['target_sparsity'])} "
                         f"{r['quantize']}, {r['gzip_bytes']} B gzip vs {r['dense_bytes']} B dense, "
                         f"loss {r['loss_pp']:.2f} pp)")
    (out / "exports_summary.md").write_text("\n".join(lines) + "\n")
    written += [out / "exports_summary.csv", out / "exports_summary.md"]
    if len(summary) > 1:
        import matplotlib.pyplot as plt

        fig = plot_deploy(df)
        fig.savefig(out / "deploy.png", dpi=110)
        plt.close(fig)
        written.append(out / "deploy.png")
    return written


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def module_input_dtype(net: nn.Module) -> Any:
    """int64 for token models (an Embedding first), float32 otherwise."""
    import torch
    from torch import nn

    first = next((m for m in net.modules() if not list(m.children())), None)
    return torch.int64 if isinstance(first, nn.Embedding) else torch.float32
