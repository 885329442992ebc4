"""Config → RunSpec: validation messages and run identity."""

from __future__ import annotations

import dataclasses

import pytest

from prunebench.errors import ConfigError
from prunebench.spec import RunSpec, from_config


def spec_of(compose, *overrides: str) -> RunSpec:
    return from_config(compose(list(overrides)))


def test_default_config_is_valid(compose) -> None:
    spec = spec_of(compose)
    assert spec.data.name == "mnist1d" and spec.model.name == "mlp"
    assert spec.pruning.method == "magnitude" and spec.schedule.name == "iterative"
    assert spec.root == "outputs"
    assert len(spec.run_id) == 12


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("schedule.target_sparsity=1.5", "schedule.target_sparsity=1.5 is out of range"),
        ("schedule.target_sparsity=-0.2", "schedule.target_sparsity=-0.2 is out of range"),
        ("schedule.iterations=0", "schedule.iterations=0 is out of range"),
        ("retrain.lr=-1", "retrain.lr=-1.0 is out of range"),
        ("train.epochs=-3", "train.epochs=-3 is out of range"),
        ("pruning.scope=everywhere", "pruning.scope='everywhere' is not a known name; valid: .*global.*layer"),
        ("pruning.method=magnitud", "pruning.method='magnitud' is not a known name; valid: .*magnitude"),
        ("pruning.structure=blocks", "pruning.structure='blocks' is not a known name; valid: unstructured, channel, nm"),
        ("model.name=resnet21", "model='resnet21' is not a known name; valid: .*resnet20"),
        ("data.name=imagenet", "data='imagenet' is not a known name; valid: .*mnist1d"),
        ("retrain.name=polish", "retrain='polish' is not a known name; valid: .*finetune"),
        ("train.optimizer._target_=torch.optim.Adamm", "train.optimizer._target_='torch.optim.Adamm' cannot be imported"),
    ],
)
def test_bad_values_name_key_and_value(compose, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec_of(compose, override)


def test_unknown_group_option_lists_choices(compose) -> None:
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="resnet21"):
        compose(["model=resnet21"])


def test_run_id_ignores_values_equal_to_defaults(compose) -> None:
    """Adding an option with a default (here: spelling a default out) keeps old ids."""
    base = spec_of(compose)
    spelled = dataclasses.replace(base, pruning=dataclasses.replace(base.pruning, options={}))
    assert spelled.run_id == base.run_id
    # A new pruning option set to nothing new does not change the id...
    with_default_field = dataclasses.replace(base, pruning=dataclasses.replace(base.pruning, calibration_batches=8))
    assert with_default_field.run_id == base.run_id
    # ...but a real change does, and so does the seed.
    assert spec_of(compose, "schedule.target_sparsity=0.8").run_id != base.run_id
    assert spec_of(compose, "seed=1").run_id != base.run_id


def test_run_id_ignores_paths_device_and_metrics(compose) -> None:
    base = spec_of(compose)
    assert spec_of(compose, "paths.root=/tmp/elsewhere").run_id == base.run_id
    assert spec_of(compose, "trainer=cpu").run_id == base.run_id
    assert spec_of(compose, "metrics.latency=false").run_id == base.run_id
    assert spec_of(compose, "data.root=/somewhere/else").run_id == base.run_id


def test_dense_id_shared_across_pruning_settings(compose) -> None:
    a = spec_of(compose, "schedule=one_shot", "schedule.target_sparsity=0.5")
    b = spec_of(compose, "schedule=iterative", "retrain.lr=0.01")
    assert a.run_id != b.run_id
    assert a.dense_id == b.dense_id
    assert spec_of(compose, "train.epochs=3").dense_id != a.dense_id


def test_model_kwarg_equal_to_factory_default_is_omitted(compose) -> None:
    base = spec_of(compose)
    # conf/model/mlp.yaml spells out the factory default widths; identity omits it.
    assert "widths" not in base.identity()["model"]
    assert "widths" in spec_of(compose, "model.widths=[64,64]").identity()["model"]
