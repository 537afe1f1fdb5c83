"""memlens.store: every manifest records the versions that can change a number."""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from typing import ClassVar

import pytest

from memlens import store
from memlens.config import Config
from memlens.errors import UserError
from memlens.store import RunDir


def test_versions_record_the_installed_stack_and_skip_the_rest(monkeypatch):
    got = store.versions()
    assert got["python"] == sys.version.split()[0]
    # peft, gguf and opacus are installed in the development environment
    for pkg in ("memlens", "torch", "transformers", "peft", "gguf", "opacus"):
        assert got[pkg] == md.version(pkg), pkg
    real = md.version

    def without_opacus(name: str) -> str:
        if name == "opacus":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "version", without_opacus)
    got = store.versions()
    assert "opacus" not in got and got["peft"] == real("peft")


class _Old(Config):
    what: ClassVar[str] = "test config"
    steps: int = 10


class _Nested(Config):
    what: ClassVar[str] = "nested"
    gamma: float = 2.0
    compare: str = "ge"


class _New(Config):
    what: ClassVar[str] = "test config"
    steps: int = 10
    mode: str = "all"  # a setting added after _Old's runs were written
    settings: _Nested = _Nested()


def test_a_run_of_an_older_version_resumes_when_new_settings_keep_their_defaults(tmp_path):
    old = RunDir(tmp_path / "r", "demo", {"steps": 10, "settings": {"gamma": 2.0}}, 0)
    old.write_manifest()
    RunDir(tmp_path / "r", "demo", _New(), 0)  # mode and settings.compare: the defaults
    with pytest.raises(UserError, match=r"different config \(mode: 'all' there, 'once' here\)"):
        RunDir(tmp_path / "r", "demo", _New(mode="once"), 0)
    with pytest.raises(UserError, match=r"\(settings\.compare: 'ge' there, 'gt' here\)"):
        RunDir(tmp_path / "r", "demo", _New(settings={"compare": "gt"}), 0)
    with pytest.raises(UserError, match=r"\(steps: 10 there, 11 here\)"):
        RunDir(tmp_path / "r", "demo", _New(steps=11), 0)
    # a plain dict is compared as it is: a missing key is a difference
    with pytest.raises(
        UserError, match=r"\(settings.compare: not set there, 'ge' here; mode: not set"
    ):
        RunDir(tmp_path / "r", "demo", _New().to_dict(), 0)
    with pytest.raises(UserError, match="holds a demo run, not other"):
        RunDir(tmp_path / "r", "other", _Old(), 0)


def test_a_directory_of_another_run_is_refused_in_one_sentence(tmp_path):
    from memlens.errors import UserError
    from memlens.store import RunDir

    for kind, article in (("audit", "an"), ("mia", "a")):
        RunDir(tmp_path / kind, kind, {"a": 1}, seed=0).write_manifest()
        with pytest.raises(UserError) as exc:
            RunDir(tmp_path / kind, kind, {"a": 2}, seed=0)
        assert str(exc.value) == (
            f"{tmp_path / kind} already holds {article} {kind} run with a different config "
            "(a: 1 there, 2 here); use a new `out` directory or the same settings to resume."
        )


def test_an_output_path_that_is_a_file_is_one_sentence(tmp_path):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "run"):
        with pytest.raises(UserError, match=f"cannot be created: {tmp_path / 'f'} is a file"):
            store.RunDir(out, "mia", {}, 0)
    assert (tmp_path / "f").read_text() == "x"


def test_a_run_that_stopped_before_writing_anything_gives_way_to_a_corrected_config(tmp_path):
    """Bad input found in a sweep's first cell (a model too large for memory) leaves only a
    'running' manifest; the rerun with a corrected config may take the directory over. A run
    with any result, or a finished one, is still refused."""
    RunDir(tmp_path / "r", "capacity", {"vocab": 10**11}, 0).write_manifest(status="running")
    RunDir(tmp_path / "r", "capacity", {"vocab": 512}, 0)
    (tmp_path / "r" / "cells").mkdir()
    (tmp_path / "r" / "cells" / "a.json").write_text("{}")
    with pytest.raises(UserError, match="different config"):
        RunDir(tmp_path / "r", "capacity", {"vocab": 256}, 0)
    RunDir(tmp_path / "f", "capacity", {"vocab": 10**11}, 0).write_manifest(status="finished")
    with pytest.raises(UserError, match="different config"):
        RunDir(tmp_path / "f", "capacity", {"vocab": 512}, 0)


def test_reopening_a_run_removes_what_a_write_killed_mid_way_left_behind(tmp_path):
    rd = RunDir(tmp_path / "r", "demo", {"steps": 1}, 0)
    rd.write_manifest(status="running")
    # a process killed inside atomic_path: the temporary file exists, the rename never ran
    writing = [store.atomic_path(rd.path / "curves.csv"),
               store.atomic_path(rd.path / "track" / "parts" / "part-1-2.parquet")]  # fmt: skip
    for w in writing:  # (kept referenced: a collected generator would clean up after itself)
        w.__enter__().write_text("half a table")
    (rd.path / ".keep").write_text("not ours")
    left = sorted(p.name for p in rd.path.rglob(".*.tmp*"))
    assert len(left) == 2
    RunDir(tmp_path / "r", "demo", {"steps": 1}, 0)  # the rerun
    assert not list(rd.path.rglob(".*.tmp*"))
    assert (rd.path / ".keep").exists() and (rd.path / "manifest.json").exists()
    assert not (rd.path / "curves.csv").exists()


def test_a_directory_memlens_did_not_make_is_not_cleaned(tmp_path):
    """``--out`` at a user's own directory (no manifest): files that look like memlens's
    temporaries are the user's, and the directory is not walked."""
    mine = tmp_path / "mine" / "deep"
    mine.mkdir(parents=True)
    (mine / ".notes.abc12345.tmp.txt").write_text("the user's")
    RunDir(tmp_path / "mine", "demo", {"steps": 1}, 0)
    assert (mine / ".notes.abc12345.tmp.txt").read_text() == "the user's"


def test_a_refused_directory_keeps_its_files(tmp_path):
    rd = RunDir(tmp_path / "r", "demo", {"steps": 1}, 0)
    rd.write_manifest(status="running")
    writing = store.atomic_path(rd.path / "a.json")
    writing.__enter__().write_text("{")
    with pytest.raises(UserError):
        RunDir(tmp_path / "r", "demo", {"steps": 2}, 0)
    assert len(list(rd.path.glob(".a.json.*.tmp.json"))) == 1


def test_the_manifest_says_running_then_finished(tmp_path):
    """One run contract: ``running`` while a run works, ``finished`` when it wrote its results
    (three commands wrote ``done`` and seven wrote no status at all)."""
    rd = RunDir(tmp_path / "r", "demo", {"a": 1}, seed=3)
    rd.write_manifest(status="running")
    assert json.loads((rd.path / "manifest.json").read_text())["status"] == "running"
    rd.write_manifest(cells=2)
    m = json.loads((rd.path / "manifest.json").read_text())
    assert (m["status"], m["cells"], m["seed"], m["config"]) == ("finished", 2, 3, {"a": 1})


def test_a_foreign_manifest_is_refused_in_one_sentence(tmp_path):
    """A manifest.json memlens did not write said "already holds a None run" (no kind), or, when
    not a JSON object, raised AttributeError."""
    from memlens.errors import UserError
    from memlens.store import RunDir

    for i, text in enumerate(["{}", "[]", '{"kind": null}']):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "manifest.json").write_text(text)
        with pytest.raises(UserError, match="holds a manifest.json that is not a memlens run's"):
            RunDir(tmp_path / str(i), "dp-audit", {"a": 1}, seed=0)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_run_files_get_the_umask_permissions_not_the_temporary_files_private_ones(tmp_path, umask):
    # mkstemp makes 0600 files; renamed into place as they were, a run directory shared with a
    # group (or served by a web server) could not be read by anyone but its writer.
    import os

    import pandas as pd

    old = os.umask(umask)
    try:
        rd = RunDir(tmp_path / "run", "t", {"a": 1}, seed=0)
        rd.write_manifest()
        rd.write_json("result.json", {"x": 1})
        rd.write_table("rows.csv", pd.DataFrame({"a": [1]}))
        rd.save_cell("k", {"y": 2})
        files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
        assert {p.name for p in files} >= {"manifest.json", "result.json", "rows.csv", "k.json"}
        for p in files:
            assert p.stat().st_mode & 0o777 == 0o666 & ~umask, p.name
        assert store._umask() == umask
    finally:
        os.umask(old)
