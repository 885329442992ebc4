"""Every path stays where it belongs: run ids are ids (or unique prefixes), names that become
file names are one path component, ``prunebench-export --out`` is a writable file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from prunebench.errors import ConfigError
from prunebench.results.names import check_file_name, check_out_file, resolve_run_id
from prunebench.results.store import run_dir, write_table
from prunebench.spec import from_config

ID_A = "abc123456789"
ID_B = "abd000000000"


def _run(root: Path, run_id: str) -> Path:
    path = run_dir(root, run_id)
    write_table(path / "rows.csv", [{"run_id": run_id, "level": 0, "status": "ok", "val_acc": 0.5}])
    (path / "config.json").write_text(json.dumps({"run_id": run_id}))
    (path / "DONE").write_text("x")
    return path


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_run_ids_are_ids_or_unique_prefixes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _run(root, ID_A)
    _run(root, ID_B)
    assert resolve_run_id(root, ID_A) == ID_A
    assert resolve_run_id(root, "abc") == ID_A and resolve_run_id(root, "abd0") == ID_B
    with pytest.raises(ConfigError, match=r"--run='ab' is ambiguous: 2 runs start with it \(abc123456789, "
                                          r"abd000000000\); give more digits"):
        resolve_run_id(root, "ab")
    with pytest.raises(ConfigError, match=r"--run='abe' is not a run under .*; runs: abc123456789, abd000000000"):
        resolve_run_id(root, "abe")
    for bad in (f"../runs/{ID_A}", f"../../../{ID_A}", f"{ID_A}/", "..", "", f"/tmp/{ID_A}", f" {ID_A}"):
        with pytest.raises(ConfigError, match=r"is not a run id: expected 12 hex digits .* not a path"):
            resolve_run_id(root, bad)
    (run_dir(root, ID_A) / "rows.csv").unlink()
    with pytest.raises(ConfigError, match=rf"run {ID_A} is marked finished \(DONE\) but rows.csv is missing"):
        resolve_run_id(root, "abc")


@pytest.mark.parametrize("run", [f"../runs/{ID_A}", f"../../../{ID_A}", f"{ID_A}/"])
def test_export_refuses_a_run_path_and_writes_nothing(tmp_path: Path, run: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from prunebench import export

    root = tmp_path / "a" / "b" / "root"
    _run(root, ID_A)
    _run(tmp_path / "a", ID_A)  # what ../../../<id> would reach
    before = _tree(tmp_path)
    assert export.main([str(root), "--run", run, "--level", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--run={run!r} is not a run id" in err
    assert _tree(tmp_path) == before


def test_out_must_be_a_writable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prunebench import export

    root = tmp_path / "root"
    _run(root, ID_A)
    (tmp_path / "folder").mkdir()
    (tmp_path / "file").write_text("x")
    assert check_out_file(tmp_path / "new" / "m.pt") == tmp_path / "new" / "m.pt"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    cases = {str(tmp_path / "folder"): "is a folder; give a file path",
             str(tmp_path / "file" / "m.pt"): f"cannot be written: {tmp_path / 'file'} is a file, not a folder",
             str(tmp_path / ("x" * 300 + ".pt")): "a path component is 303 bytes long (the limit is 255)"}
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        cases[str(ro / "m.pt")] = f"cannot be written: {ro} is not writable (Permission denied)"
    for out, message in cases.items():
        with pytest.raises(ConfigError, match=None) as info:
            check_out_file(out)
        assert message in str(info.value)
        assert export.main([str(root), "--run", ID_A, "--level", "0", "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_names_that_become_files_are_one_component(compose, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert check_file_name("han_lenet300", "experiment_name") == "han_lenet300"
    for bad in ("../../../x", "a/b", "..", "x\\y", ""):
        with pytest.raises(ConfigError, match=r"experiment_name="):
            check_file_name(bad, "experiment_name")
    with pytest.raises(ConfigError, match=r"experiment_name='xxxx.*is 300 bytes long"):
        check_file_name("x" * 300, "experiment_name")
    cfg = compose(["experiment=han_lenet300", "experiment_name=../../../x", f"paths.root={tmp_path / 'r'}"])
    with pytest.raises(ConfigError, match=r"experiment_name='\.\./\.\./\.\./x' must be a plain name"):
        from_config(cfg)


def test_cli_experiment_name_outside_root_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prunebench import cli

    root = tmp_path / "a" / "b" / "root"
    with pytest.raises(SystemExit) as info:
        cli.main(["experiment=han_lenet300", "experiment_name=../../../x", f"paths.root={root}", "study.seeds=[0]"])
    assert info.value.code == 2
    assert "experiment_name='../../../x' must be a plain name" in capsys.readouterr().err
    assert not list(tmp_path.rglob("x.json"))
