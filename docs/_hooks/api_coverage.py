"""A MkDocs hook: every public name of memlens has an entry on a rendered API page.

The public names are those of ``memlens.__all__`` (the top-level re-exports) and of every
module's ``__all__`` under ``memlens`` (the command-line modules aside). A name has an entry when
some rendered page under ``api/`` carries an anchor ``<module>.<name>`` for a module that holds
the same object under that name: ``memlens.audit.run`` on the Audit page, or
``memlens.scoring.score_texts`` for the top-level ``memlens.score_texts``. A name without one
(a constant with no docstring, a module no ``:::`` block renders) is a warning, which
``mkdocs build --strict`` (``make docs``) turns into a failed build.

``tests/docs/test_api_coverage.py`` builds the site and runs the same check.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.memlens_api_coverage")

ANCHOR = re.compile(r'id="(memlens(?:\.\w+)*)"')
SKIP = ("memlens.cli", "memlens.commands")  # the command line: its pages are the guides


def public_names() -> list[tuple[str, str]]:
    """``(module, name)`` for every name in ``memlens.__all__`` and every ``__all__`` below it."""
    import memlens

    modules = [memlens]
    for info in pkgutil.walk_packages(memlens.__path__, "memlens."):
        if not info.name.startswith(SKIP):
            modules.append(importlib.import_module(info.name))
    return [(m.__name__, name) for m in modules for name in getattr(m, "__all__", ())]


def rendered_anchors(site_dir: Path) -> set[str]:
    """Every ``memlens...`` anchor on the built API pages under ``site_dir/api``."""
    anchors: set[str] = set()
    for page in (Path(site_dir) / "api").rglob("*.html"):
        anchors |= set(ANCHOR.findall(page.read_text(encoding="utf-8")))
    return anchors


def has_entry(module: str, name: str, anchors: set[str]) -> bool:
    """Whether ``module.name`` (the object itself, under any module that holds it as ``name``)
    has an anchor among ``anchors``."""
    obj = getattr(sys.modules[module], name)
    for anchor in anchors:
        where, _, attr = anchor.rpartition(".")
        if attr == name and where in sys.modules and getattr(sys.modules[where], attr, None) is obj:
            return True
    return False


def missing_names(site_dir: Path) -> list[str]:
    """``module.name`` for every public name without an entry on the built API pages."""
    anchors = rendered_anchors(site_dir)
    by_name: dict[str, set[str]] = {}
    for anchor in anchors:
        by_name.setdefault(anchor.rpartition(".")[2], set()).add(anchor)
    return [f"{m}.{n}" for m, n in public_names() if not has_entry(m, n, by_name.get(n, set()))]


def on_post_build(config: Any, **kwargs: Any) -> None:
    src = str(Path(config["config_file_path"]).parent / "src")
    if "memlens" not in sys.modules and src not in sys.path:
        sys.path.insert(0, src)  # the tree being documented, not another installed copy
    for name in missing_names(Path(config["site_dir"])):
        log.warning(
            f"no API page renders the public name {name}: give it a docstring (a '#:' comment "
            "for a constant) or a '::: ' block on a page under docs/api/"
        )
