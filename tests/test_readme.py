"""The README's commands compose and validate (unit tier: no training, no subprocess).

Every ``prunebench ...`` line in the README's bash blocks (single runs and studies, not
sweeps) is composed with the real configs and converted to a RunSpec, so a renamed key
or option cannot leave the README promising a command that fails.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from prunebench.spec import from_config

README = Path(__file__).resolve().parents[1] / "README.md"
#: Commands that need files of the user's own (a config folder, a model file, a trained model).
NEEDS_USER_FILES = ("hydra.searchpath", "model.target=./", "train.init_from=./", "data.target=./", "data=imagefolder")


def readme_commands() -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if not line.startswith("prunebench ") or " -m " in line or "sweep=" in line or "&&" in line:
                continue
            if line.startswith("prunebench describe") or any(s in line for s in NEEDS_USER_FILES):
                continue
            out.append(line)
    return out


def test_the_readme_has_commands() -> None:
    assert len(readme_commands()) >= 20


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_composes_and_validates(compose, line: str) -> None:
    args = [a.replace("$HOME", str(Path.home())) for a in shlex.split(line)[1:]]
    cfg = compose(args)
    if cfg.get("study"):
        cfg["study"] = None  # the study's own variants are checked by the study tests
    from_config(cfg)


EXPERIMENTS = sorted(p.stem for p in (README.parent / "conf" / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_study_variant_composes_and_validates(compose, experiment: str) -> None:
    """Each shipped experiment's variants (with their typed options) are valid runs."""
    cfg = compose([f"experiment={experiment}"])
    variants = (cfg.get("study") or {}).get("variants") or {"single": []}
    for name, overrides in variants.items():
        sub = compose([f"experiment={experiment}", *overrides, "study=null"])
        try:
            from_config(sub)
        except Exception as exc:  # noqa: BLE001 - name the variant in the failure
            raise AssertionError(f"experiment={experiment} variant {name!r}: {exc}") from exc


# ---------------------------------------------------------------- the commands run, briefly

SHARED_DATA = README.parent.parent / "shared" / "data"  # the README's ../shared/data, from the repository root
#: Appended to every command: a few steps of everything, on the CPU, no figures.
TINY = {"train.epochs": "1", "train.max_steps": "2", "retrain.epochs": "1", "metrics.latency": "false",
        "report": "false", "trainer": "cpu"}
#: Capped where a command asks for more (levels, steps between gradual updates, language-model blocks).
CAPS = {"schedule.iterations": "2", "schedule.frequency": "2"}
SHAKESPEARE = {"data.max_train_blocks": "64", "data.max_eval_blocks": "16"}


def brief(line: str, root: Path) -> list[str] | str:
    """The command's overrides with :data:`TINY` applied (README values replaced, not duplicated),
    or the reason it cannot run here (a download, a GPU, data that is absent)."""
    args = [a.replace("$HOME", str(Path.home())) for a in shlex.split(line)[1:]]
    if any(a in ("data.download=true", "trainer=gpu") for a in args):
        return "needs a download or a GPU"
    if any("../shared/data" in a for a in args):
        if not (SHARED_DATA / "MNIST" / "raw").is_dir():
            return f"needs MNIST files in {SHARED_DATA}"
        args = [a.replace("../shared/data", str(SHARED_DATA)) for a in args]
    keys = {a.split("=", 1)[0] for a in args}
    extra = dict(TINY) | {k: v for k, v in CAPS.items() if k in keys}
    experiment = any(a.startswith("experiment=") for a in args)
    if any(a in ("pruning=rigl", "pruning=set") for a in args):
        extra["pruning.delta_t"] = "2"  # a few fine-tune steps must hold a mask update
    if "retrain=none" in args:
        extra.pop("retrain.epochs")  # retrain=none refuses retrain.epochs (it would be ignored)
    if "schedule=gradual" in args:
        extra["schedule.frequency"] = "2"  # a few fine-tune steps must hold a pruning step
    if not experiment and "schedule" not in keys or "schedule=iterative" in args:
        extra["schedule.iterations"] = "2"  # the default schedule: 8 levels
    if not experiment and "data" not in keys:
        extra |= {"data.num_samples": "1000", "data.val_size": "100"}  # MNIST-1D, the default data set
    if "data=shakespeare" in args or any(a.startswith("experiment=lm_") for a in args):
        extra |= SHAKESPEARE
    if experiment:
        extra.pop("trainer")  # experiment configs set trainer.* keys of their own
        extra |= {"trainer.accelerator": "cpu", "study.seeds": "[0]"}
        # a study's variants set their own retraining (retrain=none refuses retrain.epochs)
        extra.pop("retrain.epochs")
    kept = [a for a in args if a.split("=", 1)[0] not in extra and not a.startswith("paths.root=")]
    return [*kept, *(f"{k}={v}" for k, v in extra.items()), f"paths.root={root}"]


@pytest.mark.slow  # every README command trains for a few steps: about two minutes in all
@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_runs_briefly(line: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prunebench.cli import main

    args = brief(line, tmp_path / "out")
    if isinstance(args, str):
        pytest.skip(args)
    monkeypatch.chdir(tmp_path)  # data and outputs the command writes stay in tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(args)
    assert code in (0, None)
    rows = list((tmp_path / "out" / "runs").glob("*/rows.csv"))
    assert rows, f"{line}: no run finished"
    import pandas as pd

    for r in rows:
        table = pd.read_csv(r)
        assert (table["status"].fillna("ok") == "ok").all() and table["level"].max() >= 1


def test_brief_replaces_the_readme_values() -> None:
    args = brief("prunebench schedule=gradual schedule.target_sparsity=0.9 retrain.epochs=20 schedule.frequency=10",
                 Path("/r"))
    assert "retrain.epochs=20" not in args and "retrain.epochs=1" in args and "schedule.frequency=2" in args
    assert args[-1] == "paths.root=/r" and "schedule.target_sparsity=0.9" in args
    assert brief("prunebench data=cifar10 data.download=true model=resnet20 trainer=gpu", Path("/r")) == \
        "needs a download or a GPU"
