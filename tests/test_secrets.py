"""Secrets are never printed: storage URLs are redacted in every message (user-info, an
unencoded '@' inside the password, ``password=``/``pwd=`` query parameters)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunebench.errors import ConfigError
from prunebench.sweep.settings import SweepSettings, redact, redact_text

CASES = {
    "postgresql://user:hunter2@db.example/prunebench": "postgresql://user:***@db.example/prunebench",
    "postgresql://user:p@ss@db.example/x": "postgresql://user:***@db.example/x",
    "postgresql://user:a/b@c@host:5432/x": "postgresql://user:***@host:5432/x",
    "mysql+pymysql://u@host/db?password=hunter2&charset=utf8": "mysql+pymysql://u@host/db?password=***&charset=utf8",
    "postgresql://host/db?user=u&PWD=hunter2": "postgresql://host/db?user=u&PWD=***",
    "postgresql://user:pw1@host/db?sslmode=require&password=pw2": "postgresql://user:***@host/db?sslmode=require&password=***",
    "sqlite:////home/a@b/optuna.db": "sqlite:////home/a@b/optuna.db",
    "postgresql://user@host/db": "postgresql://user@host/db",
}


@pytest.mark.parametrize("url", sorted(CASES))
def test_redact(url: str) -> None:
    assert redact(url) == CASES[url]


def test_redact_text_hides_the_url_and_its_password_anywhere() -> None:
    url = "postgresql://user:hunter2@host/db?pwd=s3cret"
    text = f"could not parse {url!r}; auth failed for password hunter2 (pwd s3cret)"
    got = redact_text(text, url)
    assert "hunter2" not in got and "s3cret" not in got
    assert "postgresql://user:***@host/db?pwd=***" in got


def _settings(storage: str, root: Path) -> SweepSettings:
    return SweepSettings.from_config({"study_name": "s", "storage": storage, "n_trials": 1, "params": {"retrain.epochs": "range(1,3)"}},
                                     root)


@pytest.mark.parametrize("storage", ["postgresql://u:p@ss@127.0.0.1:1/db",
                                     "sqlite:////nonexistent-dir/x.db?password=hunter2",
                                     "postgres:/u:hunter2@host?password=hunter2"])
def test_settings_errors_never_print_the_password(tmp_path: Path, storage: str) -> None:
    with pytest.raises(ConfigError) as info:
        _settings(storage, tmp_path)
    msg = str(info.value)
    assert "hunter2" not in msg and "p@ss" not in msg and "ss@127" not in msg and "sweep.storage=" in msg


def test_unencoded_at_in_password_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweep.storage=postgresql://u:\*\*\*@127.0.0.1:1/db: the password holds an "
                                          r"unencoded '@'; percent-encode it as %40"):
        _settings("postgresql://u:p@ss@127.0.0.1:1/db", tmp_path)


def test_open_failure_message_is_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    url = "postgresql://u:hunter2@127.0.0.1:1/db?password=hunter2"
    settings = _settings(url, tmp_path)

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError(f"Could not parse SQLAlchemy URL from string '{url}' (password hunter2)")

    monkeypatch.setattr(optuna.storages, "RDBStorage", fail)
    monkeypatch.setattr("time.sleep", lambda s: None)
    with pytest.raises(ConfigError, match="cannot open") as info:
        settings.make_storage()
    assert "hunter2" not in str(info.value) and "u:***@127.0.0.1:1/db?password=***" in str(info.value)


@pytest.mark.parametrize("preset", ["optuna_accuracy", "optuna_pareto", "slurm_pareto"])
def test_every_optuna_preset_takes_the_storage_from_the_environment(compose, preset: str,  # type: ignore[no-untyped-def]
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRUNEBENCH_STORAGE", "postgresql://u:hunter2@host/db")
    assert compose([f"sweep={preset}"])["sweep"]["storage"] == "postgresql://u:hunter2@host/db"
    monkeypatch.delenv("PRUNEBENCH_STORAGE")
    assert compose([f"sweep={preset}"])["sweep"]["storage"] is None
