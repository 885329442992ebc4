"""Every range is checked before anything trains: at parse time (no torch) where the value
alone decides, in the preflight where the model or data decide (issue 22, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunebench.errors import ConfigError
from prunebench.spec import from_config

SMALL = ["data=synthetic", "data.input_shape=[8]", "data.n_train=64", "data.n_test=32", "data.val_size=32",
         "data.batch_size=32", "model.widths=[8]", "train.epochs=1", "retrain.epochs=1", "metrics.latency=false",
         "trainer=cpu", "report=false"]


def _spec(compose, *overrides: str, root: Path | None = None):  # type: ignore[no-untyped-def]
    extra = [f"paths.root={root}"] if root is not None else []
    return from_config(compose([*SMALL, *overrides, *extra]))


PARSE_ERRORS = {
    "empty_root": (["paths.root="], r"paths.root='' is empty; give a folder for the results"),
    "long_root": ([f"paths.root={'r' * 300}"], r"paths.root='rrrr.*has a name of 300 bytes; the file system takes at "
                                                r"most 255"),
    "seed_huge": (["seed=99999999999999999999"], r"seed=99999999999999999999 is out of range; expected an integer "
                                                 r"in \[0, 2\*\*32 = 4294967296\)"),
    "seed_2_32": (["seed=4294967296"], r"seed=4294967296 is out of range"),
    "seed_negative": (["seed=-1"], r"seed=-1 is out of range"),
    "iterations": (["schedule.iterations=100000000"], r"schedule.iterations=100000000 is out of range; expected an "
                                                      r"integer in \[1, 1000\]"),
    "retrain_none_epochs": (["retrain=none", "retrain.epochs=5"], r"retrain.epochs=5 has no effect with "
                                                                  r"retrain='none'"),
    "retrain_none_scheduler": (["retrain=none", "retrain.epochs=0",
                                "+retrain.scheduler={_target_: torch.optim.lr_scheduler.StepLR, step_size: 1}"],
                               r"retrain.scheduler=.* has no effect with retrain='none'"),
    "val_size_0": (["data.val_size=0"], r"data.val_size=0: the validation split cannot be empty with "
                                        r"train.select='best'; .* or data.val_size=0 with train.select=last"),
    "val_size_0_best_loss": (["data.val_size=0", "train.select=best_loss"],
                             r"data.val_size=0: the validation split cannot be empty with train.select='best_loss'"),
    "val_size_negative": (["data.val_size=-5", "train.select=last"], r"data.val_size=-5: the validation split"),
    "retrain_max_steps_0": (["retrain.max_steps=0"], r"retrain.max_steps=0 is out of range; expected an integer >= 1"),
    "retrain_max_steps_no_epochs": (["retrain.epochs=0", "retrain.max_steps=10"],
                                    r"retrain.max_steps=10 caps retraining that retrain.epochs=0 turns off"),
    "retrain_none_max_steps": (["retrain=none", "retrain.epochs=0", "+retrain.max_steps=10"],
                               r"retrain.max_steps=10 has no effect with retrain='none'"),
    "batch_size_0": (["data.batch_size=0"], r"data.batch_size=0 is out of range; expected an integer >= 1"),
    "eval_batch_0": (["data.eval_batch_size=-3"], r"data.eval_batch_size=-3 is out of range"),
    "widths_empty": (["model.widths=[]"], r"model.widths=\[\] must be a non-empty list of layer widths"),
    "widths_zero": (["model.widths=[8,0]"], r"model.widths=\[8, 0\]: entry 1 is 0; every width must be an integer "
                                            r">= 1"),
    "weight_decay": (["train.optimizer.weight_decay=-1"], r"train.optimizer.weight_decay=-1.0 is out of range"),
    "lr_inf": (["train.optimizer.lr=inf"], r"train.optimizer.lr=inf must be a finite number"),
    "retrain_lr_inf": (["retrain.lr=inf"], r"retrain.lr=inf must be a finite number"),
    "retrain_lr_nan": (["retrain.lr=nan"], r"retrain.lr=nan must be a finite number"),
}


@pytest.mark.parametrize("case", sorted(PARSE_ERRORS))
def test_parse_time_ranges(compose, case: str) -> None:  # type: ignore[no-untyped-def]
    overrides, message = PARSE_ERRORS[case]
    with pytest.raises(ConfigError, match=message):
        _spec(compose, *overrides)


def test_values_at_the_edges_pass(compose) -> None:  # type: ignore[no-untyped-def]
    assert _spec(compose, "seed=4294967295").seed == 2**32 - 1
    assert _spec(compose, "schedule.iterations=1000").schedule.iterations == 1000
    assert _spec(compose, "retrain=none", "retrain.epochs=0").retrain.epochs == 0
    assert _spec(compose, "train.optimizer.weight_decay=0").train.optimizer.kwargs["weight_decay"] == 0
    lm = from_config(compose(["data=shakespeare", "model=gpt_tiny"]))  # its own validation plays: val_size 0
    assert lm.data.kwargs["val_size"] == 0
    assert _spec(compose, "data.val_size=0", "train.select=last").data.kwargs["val_size"] == 0


def test_retrain_max_steps_enters_the_identity_only_when_set(compose) -> None:  # type: ignore[no-untyped-def]
    plain, capped = _spec(compose), _spec(compose, "retrain.max_steps=7")
    assert plain.retrain.max_steps is None and capped.retrain.max_steps == 7
    assert "max_steps" not in plain.retrain.identity() and capped.retrain.identity()["max_steps"] == 7
    assert capped.run_id != plain.run_id and capped.dense_id == plain.dense_id  # the dense model is shared
    assert _spec(compose, "data.shuffle=true").run_id == plain.run_id  # the default is not an identity key
    assert _spec(compose, "data.shuffle=false").run_id != plain.run_id


def test_study_seeds_must_not_be_empty(compose, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    from prunebench import cli
    from prunebench.spec import check_study_seeds

    assert check_study_seeds([0, 1]) == [0, 1]
    with pytest.raises(ConfigError, match=r"study.seeds\[1\]=4294967296 is out of range"):
        check_study_seeds([0, 2**32])
    with pytest.raises(ConfigError, match=r"study.seeds=\[0, 0\] repeats a seed"):
        check_study_seeds([0, 0])
    with pytest.raises(SystemExit) as info:
        cli.main(["experiment=quickstart", "study.seeds=[]", f"paths.root={tmp_path}"])
    assert info.value.code == 2
    assert "error: study.seeds=[] is empty; give at least one seed" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---- the preflight: checks that need the model or the data (still before anything trains) -------


def _prepare(spec) -> None:  # type: ignore[no-untyped-def]
    from prunebench.engine.loop import Run

    Run(spec).prepare()


def test_iterations_that_prune_nothing_per_level_are_refused(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # 8*8 + 8*10 = 144 prunable weights; geometric to 0.5: the last of n levels removes 144*(0.5**((n-1)/n) - 0.5)
    spec = _spec(compose, "schedule=iterative", "schedule.target_sparsity=0.5", "schedule.iterations=100",
                 root=tmp_path)
    with pytest.raises(ConfigError, match=r"schedule.iterations=100 with schedule.target_sparsity=0.5 \(geometric\) "
                                          r"removes fewer than one of the model's 144 prunable weights per level; "
                                          r"at most 50 iterations remove at least one per level"):
        _prepare(spec)
    lin = _spec(compose, "schedule=iterative", "schedule.mode=linear", "schedule.target_sparsity=0.5",
                "schedule.iterations=73", root=tmp_path)
    with pytest.raises(ConfigError, match=r"at most 72 iterations"):  # 144*0.5/72 = 1 weight per level
        _prepare(lin)
    _prepare(_spec(compose, "schedule=iterative", "schedule.target_sparsity=0.5", "schedule.iterations=50",
                   root=tmp_path))


def test_language_model_on_float_inputs_is_refused_naming_both(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spec = from_config(compose(["data=mnist1d", "model=gpt_tiny", "trainer=cpu", f"paths.root={tmp_path}",
                                f"paths.data_dir={tmp_path / 'data'}"]))
    with pytest.raises(ConfigError, match=r"model='gpt_tiny' is a language model \(token ids in, next-token logits "
                                          r"out\), but data='mnist1d' is a classification data set \(torch.float32 "
                                          r"inputs of shape \(40,\)\)"):
        _prepare(spec)


def test_scheduler_is_built_once_in_the_preflight(compose) -> None:  # type: ignore[no-untyped-def]
    spec = _spec(compose, "train.scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true}")
    with pytest.raises(ConfigError, match=r"train.scheduler: torch.optim.lr_scheduler.StepLR\(\) cannot be built: "
                                          r".*step_size"):
        spec.check_deep()
    ok = _spec(compose, "train.scheduler={_target_: torch.optim.lr_scheduler.StepLR, _partial_: true, step_size: 2}")
    ok.check_deep()


def test_nan_pretrained_weights_are_refused(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from prunebench.checkpoints import load_init
    from prunebench.models import build_model

    net = build_model("mlp", (8,), 10, widths=[8])
    state = {k: v.clone() for k, v in net.state_dict().items()}
    name = next(k for k in state if k.endswith("weight"))
    state[name].view(-1)[:3] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match=rf"train.init_from='.*bad.pt': tensor '{name}' holds 3 NaN/inf value\(s\) "
                                          rf"of 64; these weights are not a trained model"):
        load_init(build_model("mlp", (8,), 10, widths=[8]), tmp_path / "bad.pt")


def test_factory_model_with_a_zero_width_layer_is_refused(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    factory = tmp_path / "zeronet.py"
    factory.write_text("import torch.nn as nn\n\ndef make(num_classes, input_shape):\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], 0), nn.ReLU(), "
                       "nn.Linear(0, num_classes))\n")
    spec = from_config(compose([*[o for o in SMALL if not o.startswith("model.")], "model=custom",
                                f"model.target={factory}:make", f"paths.root={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"layer '1' has a weight of shape \(0, 8\) \(zero width\)"):
        _prepare(spec)


def test_logger_save_dir_on_a_file_is_refused(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"logger.save_dir='.*f' is a file, not a folder"):
        _spec(compose, "logger=csv", f"logger.save_dir={tmp_path / 'f'}")


@pytest.mark.integration
def test_a_run_without_validation_split(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """data.val_size=0 with train.select=last trains on every training example and reports
    val_acc as NaN (not a divergence); retrain.max_steps ends each level's retraining."""
    import math

    from prunebench.engine.loop import run

    spec = _spec(compose, "data.val_size=0", "train.select=last", "data.shuffle=false", "schedule=iterative",
                 "schedule.iterations=2", "schedule.target_sparsity=0.5", "retrain.epochs=3", "retrain.max_steps=1",
                 root=tmp_path)
    out = run(spec)
    rows = out.rows.set_index("level")
    assert out.status == "ok" and list(rows.index) == [0, 1, 2]
    assert all(math.isnan(v) for v in rows["val_acc"]) and rows["test_acc"].notna().all()
    # 64 training examples in batches of 32: 2 steps per epoch, 3 epochs; max_steps=1 stops in epoch 1
    assert list(rows.loc[[1, 2], "epochs_finetune"]) == [1, 1]
    assert rows.loc[2, "sparsity"] == pytest.approx(0.5, abs=0.01)
