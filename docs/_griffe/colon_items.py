"""A Griffe extension for the API pages: memlens's ``name: description`` items, read as numpy.

memlens docstrings use numpy sections (``Parameters`` / ``Attributes`` / ``Raises`` ... underlined
with dashes) with one-line items written ``name: description`` (several names may share one:
``lr, beta1: ...``). Griffe's numpy parser reads ``name : type``, so the first line of such an
item would become its *type* and be lost behind the signature's annotation. This extension
rewrites each item, before parsing, as ``name`` followed by its description indented below it,
which is what numpy means. Lines written ``name : type`` (a space before the colon) are left
alone. Sphinx roles (``:class:`~memlens.store.RunDir```, ``:func:`run```), which Markdown does
not know, become inline code (``RunDir``, ``run``; ``~`` keeps the last name, as in Sphinx).
The source files are not changed; only the rendered pages see the rewrite.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

SECTIONS = {
    "parameters",
    "other parameters",
    "attributes",
    "returns",
    "yields",
    "receives",
    "raises",
    "warns",
}
UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
ITEM = re.compile(
    r"^(?P<indent>\s*)(?P<names>\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*):[ \t]+(?P<desc>\S.*)$"
)

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|data|meth|attr|obj|exc|const|term):`(~?)([^`]+)`")


def _role(m: re.Match[str]) -> str:
    target = m.group(2)
    return f"`{target.rsplit('.', 1)[-1] if m.group(1) else target}`"


def normalize(text: str) -> str:
    """``text`` with every ``name: description`` item of a numpy section split in two lines."""
    lines = text.splitlines()
    out: list[str] = []
    section: str | None = None
    base: int | None = None
    for i, line in enumerate(lines):
        if line.strip() and i + 1 < len(lines) and UNDERLINE.match(lines[i + 1]):
            section, base = line.strip().lower(), None
            out.append(line)
            continue
        if section in SECTIONS and not UNDERLINE.match(line):
            indent = len(line) - len(line.lstrip())
            m = ITEM.match(line)
            if m and (base is None or indent == base):
                base = indent
                out += [f"{m['indent']}{m['names']}", f"{m['indent']}    {m['desc']}"]
                continue
        out.append(line)
    return ROLE.sub(_role, "\n".join(out))


class ColonItems(griffe.Extension):
    """Rewrite ``name: description`` items as numpy items in every docstring Griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = normalize(obj.docstring.value)
