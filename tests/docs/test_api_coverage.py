"""Every public entry point has an entry on a rendered API page.

The check lives in the docs build's hook (docs/_hooks/api_coverage.py: a public name without an
anchor on the built API pages is a warning, which ``make docs`` fails on); here it runs on a real
build, and its parts on hand-made cases. A ``::: memlens.x`` block alone does not guarantee an
entry: mkdocstrings skips a constant without a docstring and a module no block renders, which is
how ``memlens.LN2`` and all of ``memlens.puzzles.grade`` once had none.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


coverage = _load("api_coverage", ROOT / "docs" / "_hooks" / "api_coverage.py")


def test_public_names_include_the_top_level_reexports_and_submodule_alls():
    names = set(coverage.public_names())
    assert ("memlens", "score_texts") in names  # lazy re-export of memlens/__init__.py
    assert ("memlens.audit", "run") in names  # a package's __all__
    assert ("memlens.puzzles.grade", "grade_text") in names  # a module's __all__ below a package
    assert not any(m.startswith(("memlens.cli", "memlens.commands")) for m, _ in names)


def test_an_entry_is_the_same_object_under_its_name_anywhere():
    # memlens.score_texts is rendered once, as memlens.scoring.score_texts
    assert coverage.has_entry("memlens", "score_texts", {"memlens.scoring.score_texts"})
    assert coverage.has_entry("memlens", "LN2", {"memlens.units.LN2"})
    # a different object of the same name does not count, nor does a missing anchor
    assert not coverage.has_entry("memlens", "run", {"memlens.audit.run"})
    assert not coverage.has_entry("memlens", "LN2", {"memlens.units.ZLIB_LEVEL"})


def test_missing_names_reads_the_built_pages(tmp_path):
    page = tmp_path / "api" / "units" / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text('<h2 id="memlens.units.LN2">LN2</h2><h2 id="memlens.units">units</h2>')
    missing = coverage.missing_names(tmp_path)
    assert "memlens.LN2" not in missing and "memlens.units.LN2" not in missing
    assert "memlens.ZLIB_LEVEL" in missing and "memlens.audit.run" in missing


def test_a_sphinx_comment_documents_a_constant():
    """The Griffe extension (docs/_griffe/colon_items.py) reads ``#:`` comments as docstrings."""
    colon = _load("colon_items", ROOT / "docs" / "_griffe" / "colon_items.py")
    lines = [
        "import math",
        "#: ln 2, see :func:`bits`.",
        "#: Second line.",
        "LN2 = math.log(2.0)",
        "X = 1  #: one",
        "# an ordinary comment",
        "Y = 2",
    ]
    assert colon.comment_doc(lines, 4) == ("ln 2, see :func:`bits`.\nSecond line.", 2)
    assert colon.comment_doc(lines, 5) == ("one", 5)
    assert colon.comment_doc(lines, 7) is None
    assert colon.comment_doc(lines, 99) is None


@pytest.mark.slow
def test_every_public_name_has_an_api_page_entry(tmp_path, monkeypatch):
    """Builds the site (about 15 s) and looks for every public name's anchor on its API pages."""
    pytest.importorskip("mkdocstrings_handlers.python")
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    monkeypatch.chdir(ROOT)  # the snippets and the Griffe extension are found from the root
    monkeypatch.setenv("NO_MKDOCS_2_WARNING", "1")
    site = tmp_path / "site"
    build(load_config(config_file=str(ROOT / "mkdocs.yml"), site_dir=str(site), strict=False))
    assert (site / "api" / "index.html").is_file()
    missing = coverage.missing_names(site)
    assert not missing, f"no API page renders {missing}"
    # a function or class the guides name (``memlens.puzzles.budget.largest_n``) is in the
    # reference too, wherever it is rendered
    anchors = coverage.rendered_anchors(site)
    unrendered = [
        f"{module}.{name}"
        for module, name in mentioned_names()
        if not coverage.has_entry(module, name, anchors)
    ]
    assert not unrendered, f"the pages name {unrendered}, which no API page renders"


def mentioned_names() -> list[tuple[str, str]]:
    """``(module, name)`` for every ``memlens.<module>.<name>`` the README and the guides
    mention, where ``name`` is a function or a class (modules and attributes aside)."""
    import importlib
    import inspect
    import re

    text = "\n".join(
        p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    )
    out = set()
    for dotted in set(re.findall(r"(memlens(?:\.[A-Za-z_]\w*)+)", text)):
        module, _, name = dotted.rpartition(".")
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue  # a module, or an attribute of a class; test_commands checks names exist
        if inspect.isfunction(obj) or inspect.isclass(obj):
            out.add((module, name))
    return sorted(out)
