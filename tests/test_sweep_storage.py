"""sweep.storage folders (issue 12, item 15): made only under paths.root or for the default.

``sweep.storage=sqlite:////nonexistent/dir/x.db`` used to create ``/nonexistent/dir``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prunebench.errors import ConfigError
from prunebench.sweep.settings import SweepSettings


def _settings(root: Path, storage: str | None) -> SweepSettings:
    node = {"study_name": "s", "n_trials": 2, "params": {"retrain.lr": "interval(0.001, 0.1)"}}
    if storage is not None:
        node["storage"] = storage
    return SweepSettings.from_config(node, root)


def test_missing_folder_outside_the_root_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nonexistent/dir/x.db"
    with pytest.raises(ConfigError) as info:
        _settings(tmp_path / "root", url)
    msg = str(info.value)
    assert f"sweep.storage={url!r}" in msg and f"the folder {tmp_path}/nonexistent/dir does not exist" in msg
    assert not (tmp_path / "nonexistent").exists()


def test_the_literal_case_from_the_issue(tmp_path: Path) -> None:
    existed = Path("/nonexistent").exists()
    with pytest.raises(ConfigError, match="/nonexistent/dir does not exist"):
        _settings(tmp_path, "sqlite:////nonexistent/dir/x.db")
    assert Path("/nonexistent").exists() == existed  # nothing was created on the way


def test_make_storage_never_creates_an_unapproved_folder(tmp_path: Path) -> None:
    s = SweepSettings(study_name="s", storage=f"sqlite:///{tmp_path}/a/b/x.db", n_trials=1)
    with pytest.raises(ConfigError, match=r"the folder .*/a/b does not exist"):
        s.make_storage()
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("where", ["default", "under_root"])
def test_folders_under_the_root_are_made(tmp_path: Path, where: str) -> None:
    root = tmp_path / "root"
    url = None if where == "default" else f"sqlite:///{root}/db/studies/x.db"
    s = _settings(root, url)
    s.make_storage()
    db = root / ("studies/optuna.db" if where == "default" else "db/studies/x.db")
    assert db.exists()


def test_an_existing_folder_anywhere_is_fine(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    s = _settings(tmp_path / "root", f"sqlite:///{tmp_path}/elsewhere/x.db")
    s.make_storage()
    assert (tmp_path / "elsewhere" / "x.db").exists() and not (tmp_path / "root").exists()
