"""memlens.store: every manifest records the versions that can change a number."""

from __future__ import annotations

import importlib.metadata as md
import sys

import pytest

from memlens import store
from memlens.errors import UserError


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


def test_an_output_path_that_is_a_file_is_one_sentence(tmp_path):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "run"):
        with pytest.raises(UserError, match=f"cannot be created: {tmp_path / 'f'} is a file"):
            store.RunDir(out, "mia", {}, 0)
    assert (tmp_path / "f").read_text() == "x"
