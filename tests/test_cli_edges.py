"""Friendlier edges of the command line: Hydra's parse errors as one line with a hint, the
root checked with -m too, names too long, report exit codes, a target without its function."""

from __future__ import annotations

from pathlib import Path

import pytest

from prunebench import cli, report
from prunebench.errors import ConfigError
from prunebench.imports import split_target


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    return int(info.value.code or 0), err


@pytest.mark.parametrize("argv, message", [
    (["=0.5"], "error: the override '=0.5' has no key before '='; write key=value, e.g. schedule.target_sparsity=0.5"),
    (["label=ü"], "error: cannot parse the override 'label=ü' (LexerNoViableAltException); quote the value for "
                  "Hydra, as in 'label=\"ü\"'"),
    (["sweep.storage=postgresql://u:hunter2@h/db?x=ü"], "error: cannot parse the override "
                                                       "'sweep.storage=postgresql://u:***@h/db?x=ü' "
                                                       "(LexerNoViableAltException); quote the value for Hydra, as "
                                                       "in 'sweep.storage=\"...\"'"),
])
def test_parse_errors_are_one_line_with_a_hint(argv: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main([*argv, f"paths.root={tmp_path}"], capsys)
    assert code == 2 and err.strip() == message
    assert "Traceback" not in err and "hunter2" not in err


def test_root_is_checked_with_multirun_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, err = _main(["-m", f"paths.root={tmp_path / 'ok'},{tmp_path / 'file'}", "seed=0"], capsys)
    assert code == 2 and f"error: paths.root={str(tmp_path / 'file')!r} is a file, not a folder" in err
    assert not (tmp_path / "ok").exists()  # nothing made before the check


def test_empty_and_too_long_roots_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, err = _main(["paths.root="], capsys)
    assert code == 2 and err.strip() == "error: paths.root='' is empty; give a folder for the results (default: outputs)"
    code, err = _main([f"paths.root={tmp_path / ('r' * 300)}"], capsys)
    assert code == 2 and err.count("\n") == 1 and "has a name of 300 bytes; the file system takes at most 255" in err
    assert list(tmp_path.iterdir()) == []


def test_target_file_without_function_says_so() -> None:
    with pytest.raises(ConfigError, match=r"model.target='nets/mynet.py' names a file but no callable in it: add "
                                          r"':<function>' \(e.g. model.target=nets/mynet.py:make_net\)"):
        split_target("nets/mynet.py", "model.target")
    assert split_target("nets/mynet.py:make", "model.target") == ("nets/mynet.py", "make", True)


def test_report_exits_2_for_every_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "error: results root" in capsys.readouterr().err
    assert report.main([str(tmp_path / "file")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_report_on_a_full_disk_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from test_report import write_root
    from test_plots import make_table

    table = make_table()
    root = write_root(tmp_path / "root", table[table["run_id"].isin(sorted(table["run_id"].unique())[:2])])

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "root" / "report" / "results.csv"))

    monkeypatch.setattr(report, "_table_files", full)
    assert report.main([str(root)]) == 1
    err = capsys.readouterr().err
    assert err.strip().endswith("the results under " + repr(str(root)) + " are untouched")
    assert "error: writing the report failed: No space left on device" in err and "Traceback" not in err
    messages: list[str] = []
    report.write_report(str(root), log=messages.append)  # the CLI's last step: a warning, not a crash
    assert messages and messages[0].startswith("warning: the report was not written: No space left on device")
