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
