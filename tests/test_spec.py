"""Config → RunSpec: typed options, validation messages and run identity (unit tier)."""

from __future__ import annotations

import dataclasses

import pytest

from prunebench import catalog
from prunebench.errors import ConfigError
from prunebench.options import Options, opt
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
    ("overrides", "message"),
    [
        (["schedule.target_sparsity=1.5"], r"schedule.target_sparsity=1.5 is out of range; expected a value in \[0, 1\)"),
        (["schedule.target_sparsity=-0.2"], "schedule.target_sparsity=-0.2 is out of range"),
        (["schedule.iterations=0"], "schedule.iterations=0 is out of range"),
        (["retrain.lr=-1"], "retrain.lr=-1.0 is out of range"),
        (["train.epochs=-3"], "train.epochs=-3 is out of range"),
        (["pruning.scope=everywhere"], "pruning.scope='everywhere' is not a known name; valid: .*global.*layer"),
        (["pruning.method=magnitud"], "pruning.method='magnitud' is not a known name; valid: .*magnitude"),
        (["pruning.structure=blocks"], "pruning.structure='blocks' is not a known name; valid: channel, dst, nm, unstructured"),
        (["model.name=resnet21"], "model='resnet21' is not a known name; valid: .*resnet20"),
        (["data.name=imagenet"], "data='imagenet' is not a known name; valid: .*mnist1d"),
        (["retrain.name=polish"], "retrain='polish' is not a known name; valid: .*finetune"),
        # Strict booleans: a string is never silently true.
        (["pruning.prune_output=no"], "pruning.prune_output='no' must be true or false"),
        (["pruning.prune_first=no"], "pruning.prune_first='no' must be true or false"),
        (["pruning.prune_output=maybe"], "pruning.prune_output='maybe' must be true or false"),
        (["metrics.latency=off"], "metrics.latency='off' must be true or false"),
        (["trainer.fused_optimizer=no"], "trainer.fused_optimizer='no' must be true or false"),
        # Unknown keys in every group name the key and list the valid ones.
        (["+schedule.target_sparsty=0.9"], "schedule.target_sparsty is not an option of schedule='iterative'; valid: "
                                           "iterations, mode, name, target_sparsity"),
        (["+train.epoch=3"], "train.epoch is not an option; valid: epochs, init_from, max_steps, optimizer, scheduler"),
        (["+sed=3"], "sed is not a config key; valid: .*seed"),
        (["+pruning.prune_ouput=false"], "pruning.prune_ouput is not an option of pruning.method='magnitude'"),
        (["pruning=synflow", "+pruning.round=5"], "pruning.round is not an option .*valid: .*rounds"),
        (["retrain=weight_rewind", "+retrain.rewind_stpe=5"], "retrain.rewind_stpe is not an option of "
                                                              "retrain='weight_rewind'; valid: epochs, max_steps, name, rewind_step"),
        (["+trainer.precison=bf16-mixed"], "trainer.precison is not an option; valid: .*precision"),
        (["+metrics.latency_repeat=3"], "metrics.latency_repeat is not an option; valid: .*latency_repeats"),
        (["+paths.rot=x"], "paths.rot is not an option; valid: data_dir, root"),
        (["schedule=gradual", "+schedule.warmup_steps=0"], "schedule.warmup_steps is not an option of schedule='gradual'"),
        (["pruning=channel", "+pruning.rounds=3"], "pruning.rounds is not an option of pruning.method='l1'"),
        # Values checked by the method's typed options, at composition (not at level 1).
        (["pruning=synflow", "pruning.rounds=0"], r"pruning.rounds=0 is out of range; expected a value in \[1, inf\)"),
        (["pruning=nm", "pruning.n=4"], r"pruning.n=4 is out of range; expected an integer in \[1, pruning.m=4\)"),
        (["pruning=channel", "pruning.target=bytes"], "pruning.target='bytes' is not a known name; valid: channels, "
                                                      "params, flops"),
        (["schedule=gradual", "schedule.frequency=0"], "schedule.frequency=0 is out of range"),
        (["schedule=gradual", "schedule.initial_sparsity=0.95"], "schedule.initial_sparsity=0.95 is above"),
        (["trainer.precision=17"], "trainer.precision='17' is not a known precision; valid: .*bf16-mixed"),
        (["trainer.accelerator=tpu"], "trainer.accelerator='tpu' is not supported; valid: auto, cpu, gpu"),
        (["train.init_from=/nonexistent/model.pt"], "train.init_from='/nonexistent/model.pt': no such file"),
    ],
)
def test_bad_values_name_key_and_value(compose, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        spec_of(compose, *overrides)


def test_keys_a_mode_ignores_are_errors(compose) -> None:
    """retrain.lr with a mode that retrains on the dense schedule is rejected, never recorded as used."""
    cfg = compose(["retrain=lr_rewind"])
    cfg["retrain"]["lr"] = 5.0
    with pytest.raises(ConfigError, match="retrain.lr=5.0 has no effect with retrain='lr_rewind'"):
        from_config(cfg)
    cfg["retrain"]["lr"] = None  # an unset key is fine
    assert from_config(cfg).retrain.lr is None


def test_no_retraining_rejects_epochs(compose) -> None:
    """retrain=none with retrain.epochs is an error (as retrain.lr with rewinding), not silently ignored."""
    a, b = spec_of(compose, "retrain=none"), spec_of(compose, "retrain=none", "retrain.epochs=0")
    assert a.retrain.epochs == 0 and a.run_id == b.run_id
    with pytest.raises(ConfigError, match=r"retrain.epochs=3 has no effect with retrain='none', which does not "
                                          r"retrain; remove it \(retrain.epochs=0\), or use retrain=finetune"):
        spec_of(compose, "retrain=none", "retrain.epochs=3")


def test_deep_checks_import_the_optimizer(compose) -> None:
    bad = spec_of(compose, "train.optimizer._target_=torch.optim.Adamm")
    with pytest.raises(ConfigError, match="train.optimizer._target_='torch.optim.Adamm' cannot be imported"):
        bad.check_deep()
    typo = spec_of(compose, "+train.optimizer.momentun=0.9")
    with pytest.raises(ConfigError, match="train.optimizer.momentun is not an argument of torch.optim.Adam; valid: "
                                          "lr, betas, eps, weight_decay"):
        typo.check_deep()
    spec_of(compose, "train.optimizer._target_=torch.optim.SGD", "+train.optimizer.momentum=0.9").check_deep()


def test_precision_and_numerics_are_part_of_identity(compose) -> None:
    base = spec_of(compose)
    assert spec_of(compose, "trainer.precision=bf16-mixed").run_id != base.run_id
    assert spec_of(compose, "trainer.precision=bf16").run_id == spec_of(compose, "trainer.precision=bf16-mixed").run_id
    assert spec_of(compose, "trainer.deterministic=true").run_id != base.run_id
    assert spec_of(compose, "trainer.fused_optimizer=false").run_id != base.run_id
    assert spec_of(compose, "trainer.threads=1").run_id != base.run_id
    assert spec_of(compose, "trainer.precision=bf16-mixed").dense_id != base.dense_id


def test_run_id_ignores_paths_display_and_metrics(compose) -> None:
    base = spec_of(compose)
    assert spec_of(compose, "paths.root=/tmp/elsewhere").run_id == base.run_id
    assert spec_of(compose, "trainer=cpu").run_id == base.run_id  # auto resolves to the CPU here
    assert spec_of(compose, "metrics.latency=false").run_id == base.run_id
    assert spec_of(compose, "trainer.progress=false").run_id == base.run_id
    assert spec_of(compose, "trainer.steps_per_call=1").run_id == base.run_id  # bit-identical (test_masked_training)
    assert spec_of(compose, "data.root=/somewhere/else").run_id == base.run_id


@pytest.mark.parametrize(
    ("spelled", "plain"),
    [
        (["schedule=gradual", "schedule.frequency=10"], ["schedule=gradual"]),
        (["schedule=gradual", "schedule.end_fraction=0.75"], ["schedule=gradual"]),
        (["pruning=synflow", "pruning.rounds=100"], ["pruning=synflow"]),
        (["retrain=weight_rewind", "retrain.rewind_step=0"], ["retrain=weight_rewind"]),
        (["pruning=channel", "pruning.max_layer_amount=0.9"], ["pruning=channel"]),
        (["schedule.mode=geometric"], []),
        (["trainer.precision=32-true"], []),
        (["model.widths=[100,100]"], []),  # the factory's own default
    ],
)
def test_spelling_out_a_default_keeps_the_id(compose, spelled: list[str], plain: list[str]) -> None:
    assert spec_of(compose, *spelled).run_id == spec_of(compose, *plain).run_id


def test_a_new_defaulted_option_leaves_old_ids_unchanged(compose, monkeypatch) -> None:
    """Really add an option to a method: every id computed before stays the same."""
    before = {m: spec_of(compose, f"pruning=synflow", "schedule=one_shot").run_id for m in ("synflow",)}

    @dataclasses.dataclass(frozen=True)
    class SynflowPlus(catalog.SynflowOptions):
        temperature: float = opt(1.0, "a new knob", low=0.0)

    monkeypatch.setitem(catalog.CRITERIA._entries, "synflow", SynflowPlus)
    after = spec_of(compose, "pruning=synflow", "schedule=one_shot")
    assert isinstance(after.pruning.method_options, SynflowPlus)
    assert after.run_id == before["synflow"]
    cfg = compose(["pruning=synflow", "schedule=one_shot"])
    cfg["pruning"]["temperature"] = 2.0
    assert from_config(cfg).run_id != before["synflow"]


def test_dense_id_shared_across_pruning_settings(compose) -> None:
    a = spec_of(compose, "schedule=one_shot", "schedule.target_sparsity=0.5")
    b = spec_of(compose, "schedule=iterative", "retrain.lr=0.01")
    assert a.run_id != b.run_id
    assert a.dense_id == b.dense_id
    assert spec_of(compose, "train.epochs=3").dense_id != a.dense_id


def test_pretrained_file_content_is_identity(compose, tmp_path) -> None:
    f = tmp_path / "model.pt"
    f.write_bytes(b"first version")
    a = spec_of(compose, f"train.init_from={f}")
    assert a.run_id == spec_of(compose, f"train.init_from={f}").run_id  # same file: same run
    assert a.dense_id != spec_of(compose).dense_id
    f.write_bytes(b"second version!")
    assert spec_of(compose, f"train.init_from={f}").run_id != a.run_id  # edited file: a new run


def test_typed_options_parse_strictly() -> None:
    @dataclasses.dataclass(frozen=True)
    class Demo(Options):
        k: int = opt(3, "an integer", low=1)
        flag: bool = opt(False, "a flag")
        name: str = opt("a", "a choice", choices=("a", "b"))

    assert Demo.parse({"k": 5.0, "flag": True}, "x") == Demo(k=5, flag=True)
    assert Demo.parse({"k": 3}, "x").identity() == {}
    assert Demo.parse({"k": 4, "name": "b"}, "x").identity() == {"k": 4, "name": "b"}
    for node, message in [({"k": 1.5}, "x.k=1.5 must be an integer"), ({"k": 0}, r"x.k=0 is out of range"),
                          ({"flag": "yes"}, "x.flag='yes' must be true or false"),
                          ({"name": "c"}, "x.name='c' is not a known name; valid: a, b"),
                          ({"kk": 1}, "x.kk is not an option; valid: flag, k, name"),
                          ({"k": None}, "x.k=null is not allowed")]:
        with pytest.raises(ConfigError, match=message):
            Demo.parse(node, "x")
    rows = Demo.describe()
    assert [r[0] for r in rows] == ["k", "flag", "name"] and rows[2][3] == "a choice (a | b)"


def test_describe_lists_options_with_help() -> None:
    text = catalog.describe("pruning", "synflow")
    assert text.splitlines()[0] == "pruning.method=synflow: data-free iterative synaptic flow (Tanaka et al. 2020)"
    assert "  rounds: int = 100  # rescoring rounds per level" in text
    assert "rewind_step: int = 0" in catalog.describe("retrain", "weight_rewind")
    with pytest.raises(ConfigError, match="retrain='polish' is not a known name"):
        catalog.describe("retrain", "polish")


def test_catalog_matches_the_registries() -> None:
    """Every implemented name is in the torch-free catalog (and nothing else is)."""
    from prunebench.data import DATASETS
    from prunebench.engine.retrain import RETRAIN_MODES
    from prunebench.models import MODELS
    from prunebench.pruning.scopes import ALLOCATIONS
    from prunebench.pruning.criteria import CRITERIA
    from prunebench.schedules import SCHEDULES
    from prunebench.pruning.structured import CHANNEL_CRITERIA, SCOPES

    assert catalog.CRITERIA.names() == CRITERIA.names()
    assert catalog.CHANNEL_CRITERIA.names() == CHANNEL_CRITERIA.names()
    assert catalog.SCHEDULES.names() == SCHEDULES.names()
    assert catalog.RETRAIN_MODES.names() == RETRAIN_MODES.names()
    assert catalog.MODELS.names() == MODELS.names()
    assert catalog.DATASETS.names() == DATASETS.names()
    assert sorted(catalog.SCOPES) == ALLOCATIONS.names()
    assert sorted(catalog.CHANNEL_SCOPES) == sorted(SCOPES)


#: Run ids written out literally. A change that moves any of them changes which results a
#: relaunch reuses: if it is deliberate (the engine's results changed), bump
#: spec.IDENTITY_VERSION and update this table in the same commit.
PINNED = {
    "default": ([], "fbaf3ecb6eb3"),
    "one_shot_90": (["schedule=one_shot", "schedule.target_sparsity=0.9"], "bb343c7f3908"),
    "linear": (["schedule.mode=linear"], "95fe5427396f"),
    "gradual": (["schedule=gradual", "retrain.epochs=20"], "84dc7f325cb1"),
    "layer_scope": (["pruning.scope=layer", "pruning.prune_output=false"], "e972154a270d"),
    "erk_snip": (["pruning=snip", "pruning.scope=erk", "pruning.calibration_batches=4"], "6f26a6d086ef"),
    "synflow_rounds": (["pruning=synflow", "pruning.rounds=10", "train.epochs=0"], "f0dceafed362"),
    "nm_wanda": (["pruning=nm", "pruning.method=wanda", "schedule=one_shot", "schedule.target_sparsity=0.5",
                  ], "f12a01bd807d"),
    "channel": (["pruning=channel", "data=synthetic", "model=vgg11_bn", "schedule.target_sparsity=0.5"], "90dc7d260e71"),
    "ticket": (["retrain=weight_rewind", "retrain.rewind_step=35"], "c57d14b8fe42"),
    "reinit_branch": (["retrain=reinit", "retrain.branch=true"], "b4a2f36d63c9"),
    "random_mask": (["retrain=random_mask"], "34f12f9cfb4f"),
    "lr_rewind": (["retrain=lr_rewind"], "bcb5f23010cd"),
    "no_retrain": (["retrain=none"], "40b3d1bf7d92"),
    "lenet_mnist": (["data=mnist", "model=lenet_300_100", "seed=3"], "d8b02fd7cef9"),
    "bf16": (["trainer.precision=bf16-mixed"], "ee11158197f9"),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_run_ids(compose, name: str) -> None:
    overrides, want = PINNED[name]
    got = spec_of(compose, *overrides).run_id
    assert got == want, (f"run id of {name!r} {overrides} moved: {want} -> {got}. Old results would no longer be "
                         f"found (or wrong ones reused). If deliberate, bump spec.IDENTITY_VERSION and update PINNED.")


@pytest.mark.parametrize("kind", ["model", "data"])
def test_packaged_defaults_equal_the_factories(kind: str) -> None:
    """Identity compares data/model keys with the packaged YAML (no torch needed to find a
    finished run); each file must state its factory's own keyword defaults."""
    import inspect

    from prunebench.spec import _eq, _factory_defaults

    if kind == "model":
        from prunebench.models import MODELS as REG
    else:
        from prunebench.data import DATASETS as REG
    checked = 0
    for name in REG.names():
        if name in ("custom", "torchvision", "imagefolder"):
            continue
        params = inspect.signature(REG.get(name)).parameters
        for key, value in _factory_defaults(kind, name).items():
            if key in params and params[key].default is not inspect.Parameter.empty:
                assert _eq(params[key].default, value), f"conf/{kind}/{name}.yaml {key}={value!r} but the factory " \
                                                        f"defaults to {params[key].default!r}"
                checked += 1
    assert checked >= 10
