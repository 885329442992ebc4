"""prunebench-export: a finished level as a deployable file, and the level best under a budget."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from prunebench import export as ex
from prunebench.errors import ConfigError
from prunebench.models import build_model
from prunebench.pruning.mask import Mask
from prunebench.pruning.structured import prune_channels, save_pruned
from prunebench.results import schema
from prunebench.results.store import write_table

pytestmark = pytest.mark.integration  # end to end: Lightning fits, surgery on real architectures, figures, kernels

onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra is not installed")

# ---------------------------------------------------------------- best_level on hand-made tables


def table(rows: list[dict]) -> pd.DataFrame:
    return schema.coerce(pd.DataFrame(rows))


def runrows(run: str, vals: list[float], params: list[int], sparsity: list[float], latency: list[float] | None = None,
            status: list[str] | None = None) -> list[dict]:
    return [{"run_id": run, "level": k, "val_acc": v, "test_acc": 0.5, "params": p, "sparsity": s,
             "latency_ms": latency[k] if latency else None, "status": (status or ["ok"] * len(vals))[k]}
            for k, (v, p, s) in enumerate(zip(vals, params, sparsity))]


def test_best_level_within_a_drop_is_the_smallest_model_that_keeps_accuracy() -> None:
    df = table(runrows("a", [0.90, 0.905, 0.895, 0.88, 0.70], [1000, 500, 250, 125, 60], [0, .5, .75, .875, .94]))
    assert int(ex.best_level(df, max_drop=0.01)["level"]) == 2  # 0.895 >= 0.90 - 0.01; 0.88 is not
    assert int(ex.best_level(df, max_drop=0.05)["level"]) == 3
    assert int(ex.best_level(df, max_drop=0.0)["level"]) == 1  # better than dense counts as no drop
    # the literal reading: highest accuracy within the drop
    assert int(ex.best_level(df, max_drop=0.05, prefer="accuracy")["level"]) == 1


def test_best_level_drop_is_per_run_and_on_validation() -> None:
    df = table(runrows("a", [0.90, 0.89], [100, 50], [0, .5]) + runrows("b", [0.80, 0.795], [100, 40], [0, .6]))
    best = ex.best_level(df, max_drop=0.01)
    assert (best["run_id"], int(best["level"])) == ("b", 1)  # run b's own dense is its reference
    df.loc[df["run_id"] == "b", "test_acc"] = 0.99  # test accuracy never selects
    assert ex.best_level(df, max_drop=0.01)["run_id"] == "b"


def test_best_level_under_latency_and_params_budgets() -> None:
    df = table(runrows("a", [0.90, 0.89, 0.85, 0.70], [1000, 500, 250, 100], [0, .5, .75, .9],
                       latency=[4.0, 2.5, 1.5, 1.0]))
    assert int(ex.best_level(df, max_latency_ms=2.0)["level"]) == 2  # highest accuracy that is fast enough
    assert int(ex.best_level(df, max_params=600)["level"]) == 1
    assert int(ex.best_level(df, max_params=600, max_drop=0.01)["level"]) == 1
    with pytest.raises(ConfigError, match=r"no level is within the budget --max-latency-ms=0\.5"):
        ex.best_level(df, max_latency_ms=0.5)
    with pytest.raises(ConfigError, match=r"no level is within the budget --max-drop=0\.001, --max-params=600"):
        ex.best_level(df, max_drop=0.001, max_params=600)


def test_best_level_skips_failed_levels_and_checks_its_input() -> None:
    df = table(runrows("a", [0.9, 0.95, 0.89], [100, 50, 40], [0, .5, .6], status=["ok", "diverged", "ok"]))
    assert int(ex.best_level(df, max_drop=0.1, prefer="accuracy")["level"]) == 0
    no_dense = df[df["level"] > 0]
    with pytest.raises(ConfigError, match="no level is within the budget --max-drop=0.1"):
        ex.best_level(no_dense, max_drop=0.1)  # without level 0 there is no drop to measure
    with pytest.raises(ConfigError, match=r"--max-drop=-0\.1 is out of range"):
        ex.best_level(df, max_drop=-0.1)
    with pytest.raises(ConfigError, match="a budget is needed"):
        ex.best_level(df)
    with pytest.raises(ConfigError, match=r"prefer='fast'.*accuracy, auto, smallest"):
        ex.best_level(df, max_drop=0.1, prefer="fast")


# ---------------------------------------------------------------- a run folder written by hand

SHAPE, CLASSES = (3, 8, 8), 5


def fake_run(root: Path, run_id: str = "r1", channel: bool = True) -> dict[int, nn.Module]:
    """A finished run folder as the level loop writes it: level 0 masked, level 1 channel-pruned
    (``model.pt``) or masked (``state.pt`` + ``mask.pt``), level 2 failed."""
    run = root / "runs" / run_id
    record = ex.net_record("conv4", {}, SHAPE, CLASSES)
    (run).mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"run_id": run_id, "net": record}))
    torch.manual_seed(0)
    dense = build_model("conv4", SHAPE, CLASSES).eval()
    models = {0: dense}
    l0 = run / "levels" / "0"
    l0.mkdir(parents=True)
    names = [n for n, p in dense.named_parameters() if p.dim() > 1]
    Mask.ones_like(dense, names).save(l0 / "mask.pt")
    torch.save(dense.state_dict(), l0 / "state.pt")
    l1 = run / "levels" / "1"
    l1.mkdir(parents=True)
    pruned = build_model("conv4", SHAPE, CLASSES).eval()
    pruned.load_state_dict(dense.state_dict())
    if channel:
        prune_channels(pruned, torch.randn(2, *SHAPE), amount=0.5)
        save_pruned(pruned, l1 / "model.pt")
    else:
        masks = {n: (torch.rand_like(p) > 0.5).float() for n, p in pruned.named_parameters() if p.dim() > 1}
        mask = Mask(masks)
        with torch.no_grad():
            mask.apply(pruned)
        mask.save(l1 / "mask.pt")
        torch.save(pruned.state_dict(), l1 / "state.pt")
    models[1] = pruned
    rows = [{"run_id": run_id, "level": k, "val_acc": v, "test_acc": v, "params": sum(p.numel() for p in m.parameters()),
             "sparsity": s, "status": "ok"} for k, (m, v, s) in enumerate([(dense, 0.9, 0.0), (pruned, 0.89, 0.5)])]
    rows.append({"run_id": run_id, "level": 2, "status": "failed"})
    write_table(run / "rows.csv", rows)
    (run / "DONE").write_text("x")
    return models


@pytest.mark.parametrize("channel", [True, False])
def test_export_pt_is_weights_only_and_needs_no_mask(tmp_path: Path, channel: bool) -> None:
    models = fake_run(tmp_path, channel=channel)
    path = ex.export(tmp_path, "r1", 1, "pt", measure=False)  # a hand-made run: no data to measure on
    assert path == tmp_path / "export" / "r1-level1.pt"
    payload = torch.load(path, weights_only=True)
    assert payload["extra"]["model"] == {"name": "conv4", "kwargs": {}, "input_shape": [3, 8, 8], "num_classes": 5}
    assert payload["extra"]["results"]["val_acc"] == pytest.approx(0.89)
    net = ex.load_exported(path)
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert torch.equal(net(x), models[1](x))
    sd = net.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in models[1].state_dict().items())
    if channel:  # physically smaller
        assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in models[0].parameters())
    else:  # the zeros are in the weights themselves
        mask = Mask.load(tmp_path / "runs" / "r1" / "levels" / "1" / "mask.pt")
        for name, m in mask.items():
            assert torch.all(sd[name][~m.bool()] == 0) and (sd[name] == 0).any()


@pytest.mark.integration  # the ONNX exporter takes seconds
def test_export_onnx_runs_in_onnxruntime(tmp_path: Path) -> None:
    models = fake_run(tmp_path)
    path = ex.export(tmp_path, "r1", 1, "onnx", tmp_path / "m.onnx", measure=False)
    assert not Path(f"{path}.data").exists()  # one self-contained file
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, *SHAPE)  # another batch size: the batch dimension is dynamic
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        assert abs(got - models[1](x).numpy()).max() <= ex.ONNX_ATOL


@pytest.mark.integration
def test_onnx_mismatch_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import prunebench.pruning.structured.io as io

    real = io.export_onnx

    class Off(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) + 1e-3

    monkeypatch.setattr(io, "export_onnx", lambda model, x, path: real(Off(model), x, path))
    net = build_model("conv4", SHAPE, CLASSES).eval()
    with pytest.raises(ex.ExportCheckError, match=r"differs from the PyTorch model: max \|diff\| 0\.001 > atol 0\.0001"):
        ex.export_onnx_checked(net, torch.randn(4, *SHAPE), tmp_path / "bad.onnx")


def test_export_errors_name_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake_run(tmp_path)
    with pytest.raises(ConfigError, match=r"--run='nope' is not a run under .*; runs: r1"):
        ex.export(tmp_path, "nope", 1)
    with pytest.raises(ConfigError, match=r"--level=2 of run r1 \(finished\) is not a finished level; finished levels: 0, 1"):
        ex.export(tmp_path, "r1", 2)
    with pytest.raises(ConfigError, match=r"--level=7 .*finished levels: 0, 1"):
        ex.export(tmp_path, "r1", 7)
    with pytest.raises(ConfigError, match=r"--format='tflite' is not a known format; valid: onnx, pt"):
        ex.export(tmp_path, "r1", 1, "tflite")
    for argv, message in [
        (["--run", "nope", "--level", "1"], "--run='nope'"),
        (["--run", "r1", "--level", "2"], "--level=2"),
        (["--run", "r1", "--level", "1", "--format", "tflite"], "--format='tflite'"),
        (["--run", "r1", "--best", "--max-drop", "0.001", "--max-params", "10"], "no level is within the budget"),
    ]:
        assert ex.main([str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "prunebench-export: error:" in err


def test_cli_best_exports_the_chosen_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    models = fake_run(tmp_path)
    out = tmp_path / "best.pt"
    assert ex.main([str(tmp_path), "--run", "r1", "--best", "--max-drop", "0.02", "--out", str(out), "--no-measure"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "best level under the budget: 1" in captured.err
    net = ex.load_exported(out)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in models[1].parameters())


# ---------------------------------------------------------------- end to end on a real run


@pytest.mark.integration
@pytest.mark.parametrize("structure", ["channel", "unstructured"])
def test_export_of_a_real_run(tmp_path: Path, structure: str) -> None:
    from prunebench.cli import main

    root = tmp_path / "out"
    pruning = ["pruning=channel", "pruning.target=channels"] if structure == "channel" else []
    main(["data=synthetic", "data.input_shape=[3,8,8]", "data.n_train=320", "data.n_test=64", "data.val_size=64",
          "data.batch_size=32", "model=conv2", "train.epochs=1", "retrain.epochs=1", "metrics.latency=false",
          "trainer=cpu", "report=false", "schedule=iterative", "schedule.iterations=2", "schedule.target_sparsity=0.75",
          *pruning, f"paths.root={root}", f"paths.data_dir={root / 'data'}"])
    (run,) = sorted((root / "runs").iterdir())
    rows = pd.read_csv(run / "rows.csv")
    # data_dir: this run's config.json may not record its input shape yet (see run_net_record)
    pt = ex.export(root, run.name, 2, "pt", data_dir=root / "data")
    onnx_path = ex.export(root, run.name, 2, "onnx", data_dir=root / "data")
    net = ex.load_exported(pt)
    level, _ = ex.load_level(root, run.name, 2, data_dir=root / "data")
    x = torch.randn(6, 3, 8, 8)
    pre = json.loads((run / "config.json").read_text())["preprocessing"]
    mean, std = torch.tensor(pre["mean"]).view(3, 1, 1), torch.tensor(pre["std"]).view(3, 1, 1)
    with torch.no_grad():  # the file carries the run's standardisation: raw inputs in, the level's logits out
        assert torch.equal(net.net(x), level(x)) and torch.equal(net(x), level((x - mean) / std))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert abs(session.run(None, {"input": x.numpy()})[0] - net(x).numpy()).max() <= ex.ONNX_ATOL
    dense_params = int(rows.loc[rows["level"] == 0, "params"].iloc[0])
    n_params = sum(p.numel() for p in net.net.parameters())
    n_zero = sum(int((p == 0).sum()) for p in net.net.parameters())
    if structure == "channel":
        assert n_params == int(rows.loc[rows["level"] == 2, "params"].iloc[0]) < dense_params
    else:
        assert n_params == dense_params and n_zero >= 0.7 * int(rows["prunable_params"].iloc[0])
    assert ex.main([str(root), "--run", run.name, "--best", "--max-drop", "1.0", "--data-dir", str(root / "data"),
                    "--out", str(tmp_path / "b.pt")]) == 0
