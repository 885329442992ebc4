"""The preflight of a run: everything that can fail on bad input, checked before any
training (the data loads, the model fits the task and the data, the schedule prunes something
at every level, the retraining and structure accept the step counts, files already written
load). :meth:`prunebench.engine.loop.Run.prepare` calls these in order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prunebench.data import build_datamodule
from prunebench.data.base import describe_preprocessing, preprocessing_of
from prunebench.engine.dense import check_loadable, dense_dir
from prunebench.errors import ConfigError
from prunebench.log import Logger
from prunebench.pruning.targets import prunable_weights
from prunebench.results.store import level_dir, lost_results, read_rows
from prunebench.spec import RunSpec


def load_data(spec: RunSpec, device: torch.device) -> Any:
    """The run's data module, files fetched or generated, split and on ``device``."""
    dm = build_datamodule(spec.data.name, seed=spec.seed, root=spec.data.kwargs.get("root", spec.data_dir),
                          **{k: v for k, v in spec.data.kwargs.items() if k != "root"})
    try:
        dm.prepare_data()
    except OSError as exc:  # a download that cannot reach its server (urllib's URLError is an OSError)
        if isinstance(exc, ConfigError):
            raise
        root = spec.data.kwargs.get("root", spec.data_dir)
        raise ConfigError(f"data={spec.data.name!r}: could not get the data set into data.root={str(root)!r} "
                          f"({type(exc).__name__}: {getattr(exc, 'reason', exc)}); put its files there, or "
                          f"check the network if data.download=true") from None
    dm.setup("fit")
    dm.to(device)
    return dm


def check_model(spec: RunSpec, dm: Any, net: nn.Module, log: Logger) -> list[str]:
    """The model against the task and the pruning options; a pretrained start loads into it.
    Returns the names of the prunable weights."""
    check_task_fits(spec, dm)
    check_layer_sizes(spec, net)
    targets = prunable_weights(net, prune_output=spec.pruning.prune_output, prune_first=spec.pruning.prune_first,
                               prune_bias=spec.pruning.prune_bias)
    if not targets:
        raise ConfigError(f"model={spec.model.name!r} has no prunable Conv/Linear weights with these pruning options")
    check_levels_prune(spec, sum(t.numel for t in targets))
    if spec.train.init_from is not None:  # a pretrained start must load into this model, now
        from prunebench.checkpoints import load_init  # deferred: safetensors is imported only for this

        load_init(net, spec.train.init_from)
        # A pretrained model judged on inputs it never saw is silently wrong: say what it gets.
        log(f"  [{spec.run_id}] level 0: the pretrained model {spec.train.init_from} receives "
            f"{describe_preprocessing(preprocessing_of(dm))} (set by data.normalize; none = as loaded, "
            "images in [0, 1])")
    return [t.param_name for t in targets]


def check_training(run: Any, net: nn.Module) -> None:
    """The structure, the retraining and the schedule against the step counts, and the files a
    relaunch would reuse (dense checkpoints, finished levels) load into ``net``."""
    spec = run.spec
    targets = [t for t in prunable_weights(net, prune_output=spec.pruning.prune_output,
                                           prune_first=spec.pruning.prune_first, prune_bias=spec.pruning.prune_bias)
               if t.param_name in run.targets]
    run.structure.validate(net, targets, run.rows.example_batch())
    steps_per_epoch = len(run.dm.train_dataloader())
    dense_steps = spec.train.epochs * steps_per_epoch
    if spec.train.max_steps:
        dense_steps = min(spec.train.max_steps, dense_steps)
    run.mode.validate(spec, dense_steps)
    run.structure.check_training(run._retrain_steps())
    # Existing artifacts must load: fail now, not after an hour of training.
    for name in ("init.pt", "final.pt"):
        check_loadable(net, dense_dir(spec) / name, "dense checkpoint")
    if run.path.exists():
        if lost_results(run.path) is None:  # lost rows are set aside by execute()
            read_rows(run.path)
        for k in range(1, len(spec.schedule.levels()) + 1):
            run.structure.check_files(level_dir(run.path, k), net, run.build_net)


def check_task_fits(spec: RunSpec, dm: Any) -> None:
    """A language model takes token ids: refuse it on a data set of another task (float inputs,
    class labels) naming both, before the first batch fails inside an embedding."""
    from prunebench.models import model_task

    task = model_task(spec.model.name)
    data_task = getattr(dm, "task", "classification")
    if task == "language_modeling" and data_task != "language_modeling":
        x = dm.train_dataloader().__iter__().__next__()[0] if hasattr(dm, "train_dataloader") else None
        what = f"{x.dtype} inputs of shape {tuple(x.shape[1:])}" if x is not None else "its inputs"
        raise ConfigError(f"model={spec.model.name!r} is a language model (token ids in, next-token logits out), but "
                          f"data={spec.data.name!r} is a {data_task} data set ({what}); use a language data set "
                          f"(data=shakespeare) or a classification model")


def check_layer_sizes(spec: RunSpec, net: nn.Module) -> None:
    """Every Conv/Linear layer has a weight with elements: a zero-width layer is a config error
    (it would divide by zero in the cost code, or train nothing)."""
    for name, module in net.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) and isinstance(weight, torch.Tensor) \
                and weight.numel() == 0:
            raise ConfigError(f"model={spec.model.name!r}: layer {name!r} has a weight of shape {tuple(weight.shape)} "
                              f"(zero width); check the model's width options ({dict(spec.model.kwargs)})")


def check_levels_prune(spec: RunSpec, prunable: int) -> None:
    """Each level of an iterative schedule removes at least one of the ``prunable`` weights; else
    say how many iterations would (schedule.iterations is checked against the model here,
    in the preflight, since it takes the model's prunable count)."""
    s = spec.schedule
    if s.iterations <= 1 or spec.pruning.structure != "unstructured" or s.name != "iterative":
        return

    def smallest_step(n: int) -> float:  # weights removed by the level that removes the fewest
        if s.mode == "linear":
            return prunable * s.target_sparsity / n
        keep = 1.0 - s.target_sparsity
        return prunable * (keep ** ((n - 1) / n) - keep)  # geometric: the last level removes the fewest

    if smallest_step(s.iterations) >= 1.0:
        return
    lo, hi = 0, s.iterations  # the largest n whose every level removes at least one weight
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if smallest_step(mid) >= 1.0:
            lo = mid
        else:
            hi = mid - 1
    fix = f"at most {lo} iterations remove at least one per level" if lo >= 1 else \
        "raise schedule.target_sparsity or use schedule=one_shot"
    raise ConfigError(f"schedule.iterations={s.iterations} with schedule.target_sparsity={s.target_sparsity:g} "
                      f"({s.mode}) removes fewer than one of the model's {prunable} prunable weights per level; "
                      f"{fix}")
