"""What you ship is what was measured (issue 21): the newcomer path end to end.

A model trained OUTSIDE prunebench, with its own preprocessing (pixels / 255, no
standardisation), on small Fashion-MNIST-format IDX files the test writes; pruned through
the CLI with ``model=custom train.init_from=... train.epochs=0 data.normalize=none``;
exported to ONNX (fp32 and int8) and to pt; the files fed the raw test inputs.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from prunebench import export as ex
from prunebench.artifact import read_exports
from prunebench.errors import ConfigError

pytestmark = pytest.mark.integration
ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")

N_TRAIN, N_TEST, CLASSES = 1500, 500, 10

NET_PY = '''
import torch
from torch import nn


def make_net(num_classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, num_classes))
'''


def _idx(images: np.ndarray, labels: np.ndarray, raw: Path, prefix: str) -> None:
    n = len(images)
    head = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") + (28).to_bytes(4, "big")
    (raw / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(head + images.astype(np.uint8).tobytes()))
    head = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
    (raw / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(head + labels.astype(np.uint8).tobytes()))


def write_fashion(root: Path, seed: int = 0, folder: str = "FashionMNIST") -> tuple[np.ndarray, np.ndarray]:
    """IDX files in torchvision's layout: each class a fixed random smooth 28x28 template; a sample is
    its template, shifted by up to 2 pixels, under heavy noise. Learnable, not trivially.
    Returns the raw test split (uint8 images, labels)."""
    rng = np.random.default_rng(seed)
    templates = np.kron(rng.uniform(0, 255, size=(CLASSES, 7, 7)), np.ones((4, 4)))  # smooth: blocks of 4x4

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, CLASSES, size=n)
        x = templates[y]
        shifts = rng.integers(-2, 3, size=(n, 2))
        x = np.stack([np.roll(img, tuple(s), axis=(0, 1)) for img, s in zip(x, shifts)])
        x = 0.2 * x + 0.8 * rng.uniform(0, 255, size=x.shape)
        return np.clip(x, 0, 255).astype(np.uint8), y

    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    x, y = draw(N_TRAIN)
    _idx(x, y, raw, "train")
    xt, yt = draw(N_TEST)
    _idx(xt, yt, raw, "t10k")
    return xt, yt


def own_training(tmp: Path, data: Path) -> tuple[Path, Path, float, np.ndarray, np.ndarray]:
    """The user's own script: pixels / 255, plain PyTorch, own evaluation on the test split."""
    import importlib.util

    x_test_u8, y_test = write_fashion(data)
    from prunebench.data.mnist import IMAGES_MAGIC, LABELS_MAGIC, read_idx

    raw = data / "FashionMNIST" / "raw"
    x = torch.from_numpy(read_idx(raw / "train-images-idx3-ubyte.gz", IMAGES_MAGIC).copy()).float().div(255).unsqueeze(1)
    y = torch.from_numpy(read_idx(raw / "train-labels-idx1-ubyte.gz", LABELS_MAGIC).astype(np.int64))
    net_py = tmp / "mynet.py"
    net_py.write_text(NET_PY)
    spec = importlib.util.spec_from_file_location("mynet_e2e", net_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    torch.manual_seed(0)
    net = mod.make_net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _ in range(4):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    net.eval()
    xt = torch.from_numpy(x_test_u8).float().div(255).unsqueeze(1)
    with torch.no_grad():
        own_acc = float((net(xt).argmax(1) == torch.from_numpy(y_test)).float().mean())
    pt = tmp / "trained.pt"
    torch.save(net.state_dict(), pt)
    return net_py, pt, own_acc, xt.numpy(), y_test


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = s.run(None, {s.get_inputs()[0].name: x.astype(np.float32)})[0]
    return float((out.argmax(1) == y).mean())


def test_newcomer_path_level0_export_and_int8(tmp_path: Path) -> None:
    from prunebench.cli import main

    data, root = tmp_path / "data", tmp_path / "out"
    net_py, pt, own_acc, x_test, y_test = own_training(tmp_path, data)
    assert own_acc > 0.5  # the user's model learned something (chance is 0.1)
    common = [f"model=custom", f"model.target={net_py}:make_net", f"train.init_from={pt}", "train.epochs=0",
              "data=fashion_mnist", f"data.root={data}", "data.normalize=none", "data.val_size=300",
              "retrain.epochs=1", "metrics.latency=false", "trainer=cpu", "report=false", f"paths.root={root}",
              "schedule=one_shot", "schedule.target_sparsity=0.6"]
    main(common)
    main([*common, "pruning=channel", "schedule.target_sparsity=0.4"])
    runs = {json.loads((r / "config.json").read_text())["identity"]["pruning"].get("structure", "unstructured"): r
            for r in (root / "runs").iterdir()}
    assert set(runs) == {"unstructured", "channel"}
    for structure, run in runs.items():
        rows = pd.read_csv(run / "rows.csv")
        config = json.loads((run / "config.json").read_text())
        # level 0 is the user's model on the user's inputs: its own accuracy, to 0.1 pp
        assert abs(rows.loc[rows["level"] == 0, "test_acc"].iloc[0] - own_acc) <= 0.001
        assert config["preprocessing"]["normalize"] == "none"
        assert config["preprocessing"]["mean"] == [0.0] and config["preprocessing"]["std"] == [1.0]
        assert config["preprocessing"]["input_range"] == [0.0, 1.0]
        assert rows["preprocessing"].iloc[0] == "normalize=none mean=[0] std=[1] input=float32[0,1]"
        row1 = rows[rows["level"] == 1].iloc[0]
        fp32 = ex.export(root, run.name, 1, "onnx")
        # the exported file, fed the raw test inputs (pixels / 255), scores the row's test_acc
        assert abs(onnx_accuracy(fp32, x_test, y_test) - row1["test_acc"]) <= 0.001
        int8 = ex.export(root, run.name, 1, "onnx", quantize="int8")
        acc8 = onnx_accuracy(int8, x_test, y_test)
        assert acc8 > 0.5 and int8.stat().st_size < 0.5 * fp32.stat().st_size
        table = read_exports(root)
        mine = table[table["run_id"] == run.name]
        rec = mine[mine["quantize"].fillna("") == "int8"].iloc[-1]
        assert rec["test_acc"] == pytest.approx(acc8) and rec["status"] == "ok"
        assert rec["acc_diff_pp"] == pytest.approx(100 * (acc8 - row1["test_acc"]))
        assert rec["calibration_samples"] == 16 * 32 and rec["test_samples"] == N_TEST
        rec32 = mine[mine["quantize"].isna() | (mine["quantize"] == "")].iloc[-1]
        assert rec32["test_acc"] == pytest.approx(row1["test_acc"], abs=0.001) and rec32["bytes"] == fp32.stat().st_size
        assert rec32["gzip_bytes"] < rec32["bytes"] and rec32["latency_ms_b1"] > 0 and rec32["latency_ms_large"] > 0
        if structure == "channel":  # physically smaller than the dense file
            dense = ex.export(root, run.name, 0, "onnx", measure=False, out=tmp_path / "dense.onnx")
            assert fp32.stat().st_size < 0.8 * dense.stat().st_size
    # the metadata names what the file takes
    from prunebench.artifact import onnx_metadata

    meta = onnx_metadata(root / "export" / f"{runs['channel'].name}-level1.onnx")
    assert json.loads(meta["input"]) == {"name": "input", "shape": ["batch", 1, 28, 28], "dtype": "float32",
                                         "range": [0.0, 1.0]}
    assert json.loads(meta["class_names"])[9] == "Ankle boot" and json.loads(meta["level"]) == 1
    assert meta["run_id"] == runs["channel"].name


def test_default_standardisation_travels_inside_the_export(tmp_path: Path) -> None:
    """normalize=train (the default): the file still takes pixels in [0, 1], the statistics are inside it."""
    from prunebench.cli import main

    data, root = tmp_path / "data", tmp_path / "out"
    x_u8, y = write_fashion(data)
    main(["model=lenet_300_100", "data=fashion_mnist", f"data.root={data}", "data.val_size=300", "train.epochs=2",
          "retrain.epochs=0", "metrics.latency=false", "trainer=cpu", "report=false", f"paths.root={root}",
          "schedule=one_shot", "schedule.target_sparsity=0.8"])
    (run,) = (root / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    pre = config["preprocessing"]
    assert pre["normalize"] == "train" and 0.2 < pre["mean"][0] < 0.8 and pre["std"][0] > 0.05
    rows = pd.read_csv(run / "rows.csv")
    x = (x_u8.astype(np.float32) / 255)[:, None]
    path = ex.export(root, run.name, 1, "onnx")
    assert abs(onnx_accuracy(path, x, y) - rows.loc[rows["level"] == 1, "test_acc"].iloc[0]) <= 0.001
    ptfile = ex.export(root, run.name, 1, "pt")
    net = ex.load_exported(ptfile)
    with torch.no_grad():
        acc = float((net(torch.from_numpy(x)).argmax(1).numpy() == y).mean())
    assert abs(acc - rows.loc[rows["level"] == 1, "test_acc"].iloc[0]) <= 0.001
    assert torch.load(ptfile, weights_only=True)["extra"]["preprocessing"]["mean"] == pytest.approx(pre["mean"])
    # bad input: an error before any work, naming the option
    with pytest.raises(ConfigError, match=r"--quantize=int8 needs --format=onnx"):
        ex.export(root, run.name, 1, "pt", quantize="int8")
    with pytest.raises(ConfigError, match=r"--calibration-batches=0: --quantize int8 needs a calibration split"):
        ex.export(root, run.name, 1, "onnx", quantize="int8", calibration_batches=0)
    assert ex.main([str(root), "--run", run.name, "--level", "1", "--format", "pt", "--quantize", "int8"]) == 2


def test_retrain_batch_size_sets_the_fine_tuning_steps(tmp_path: Path) -> None:
    from prunebench.cli import main

    root = tmp_path / "out"
    args = ["data=synthetic", "data.input_shape=[3,8,8]", "data.n_train=320", "data.n_test=64", "data.val_size=64",
            "data.batch_size=32", "model=conv2", "train.epochs=1", "retrain.epochs=1", "metrics.latency=false",
            "trainer=cpu", "report=false", "schedule=one_shot", "schedule.target_sparsity=0.5",
            f"paths.root={root}", f"paths.data_dir={tmp_path / 'data'}"]
    main(args)
    main([*args, "retrain.batch_size=16"])
    rows = {int(r["batch_size_finetune"].dropna().iloc[0]): r for r in
            (pd.read_csv(p / "rows.csv") for p in (root / "runs").iterdir())}
    # 256 training samples: 8 steps of 32 per epoch, 16 of 16
    assert rows[32].loc[rows[32]["level"] == 1, "early_stop_iteration"].iloc[0] == 8
    assert rows[16].loc[rows[16]["level"] == 1, "early_stop_iteration"].iloc[0] == 16
    assert len([d for d in (root / "cache" / "dense").iterdir() if d.is_dir()]) == 1  # one dense model, shared


@pytest.mark.slow  # the deployment study's path, tiny: two of its runs, their exports, the report
def test_deploy_study_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    from prunebench.cli import main

    data, root = tmp_path / "data", tmp_path / "out"
    write_fashion(data, folder="MNIST")
    base = ["experiment=deploy_mnist", "study=null", f"data.root={data}", "data.val_size=300", "train.epochs=1",
            f"paths.root={root}", "report=false", "trainer.accelerator=cpu"]
    main([*base, "schedule.target_sparsity=0.9", "label=lenet300_unstructured"])
    main([*base, "pruning=channel", "schedule.target_sparsity=0.5", "label=lenet300_channel"])
    spec = importlib.util.spec_from_file_location(
        "deploy_mnist", Path(__file__).resolve().parents[1] / "experiments" / "deploy_mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.export_all(root) == 6  # one dense level (shared) + two pruned levels, fp32 and int8
    assert mod.export_all(root) == 0  # measured files are not measured again
    df = read_exports(root)
    assert len(df) == 6 and (df["status"] == "ok").all()
    assert set(df["quantize"].fillna("fp32")) == {"fp32", "int8"}
    from prunebench.report import build_report

    build_report(root, force=True)
    assert (root / "report" / "deploy.png").exists() and "lenet_300_100" in (root / "report" / "exports_summary.md").read_text()
    capsys.readouterr()
    mod.print_compression(root)
    out = capsys.readouterr().out
    assert "lenet_300_100: dense" in out and "Deep Compression, LeNet-300-100: 40x" in out
