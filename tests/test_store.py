"""memlens.store: every manifest records the versions that can change a number."""

from __future__ import annotations

import importlib.metadata as md
import sys

import pytest

from memlens import store


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


def test_a_directory_of_another_run_is_refused_in_one_sentence(tmp_path):
    from memlens.errors import UserError
    from memlens.store import RunDir

    for kind, article in (("audit", "an"), ("mia", "a")):
        RunDir(tmp_path / kind, kind, {"a": 1}, seed=0).write_manifest()
        with pytest.raises(UserError) as exc:
            RunDir(tmp_path / kind, kind, {"a": 2}, seed=0)
        assert str(exc.value) == (
            f"{tmp_path / kind} already holds {article} {kind} run with a different config; "
            "use a new `out` directory or the same settings to resume."
        )
