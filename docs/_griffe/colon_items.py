"""A Griffe extension for the API pages: memlens's ``name: description`` items, read as numpy.

memlens docstrings use numpy sections (``Parameters`` / ``Attributes`` / ``Raises`` ... underlined
with dashes) with one-line items written ``name: description`` (several names may share one:
``lr, beta1: ...``). Griffe's numpy parser reads ``name : type``, so the first line of such an
item would become its *type* and be lost behind the signature's annotation. This extension
rewrites each item, before parsing, as ``name`` followed by its description indented below it,
which is what numpy means. Lines written ``name : type`` (a space before the colon) are left
alone. Sphinx roles (``:class:`~memlens.store.RunDir```, ``:func:`run```), which Markdown does
not know, become inline code (``RunDir``, ``run``; ``~`` keeps the last name, as in Sphinx).
A constant documented the Sphinx way, with ``#:`` comments above its assignment, gets them as
its docstring (Griffe alone would leave it undocumented, and the page would not show it).
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


def comment_doc(lines: list[str], lineno: int) -> tuple[str, int] | None:
    """The ``#:`` comment documenting the assignment on line ``lineno`` (1-based) of ``lines``.

    Sphinx's convention, which memlens's constants use: ``#:`` lines directly above the
    assignment, or one ``#:`` comment after it on the same line. Returns the text and the line
    where it starts, or ``None`` when the assignment has no such comment.
    """
    if not 1 <= lineno <= len(lines):
        return None
    same_line = re.search(r"\s#:\s?(.*)$", lines[lineno - 1])
    above, i = [], lineno - 2
    while i >= 0 and lines[i].lstrip().startswith("#:"):
        above.insert(0, lines[i].lstrip()[2:].strip())
        i -= 1
    if above:
        return "\n".join(above), i + 2
    if same_line and same_line.group(1).strip():
        return same_line.group(1).strip(), lineno
    return None


class ColonItems(griffe.Extension):
    """Rewrite ``name: description`` items as numpy items in every docstring Griffe loads, and
    read a ``#:`` comment as the docstring of the attribute it documents (Griffe reads only a
    string below the assignment; without this, a constant documented the Sphinx way would have
    no entry on its API page)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = normalize(obj.docstring.value)

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs: Any) -> None:
        if attr.docstring is not None or attr.lineno is None:
            return
        try:
            lines = attr.lines_collection[attr.filepath]
        except (KeyError, TypeError):  # no source (a compiled or inspected module)
            return
        found = comment_doc(lines, attr.lineno)
        if found is not None:
            attr.docstring = griffe.Docstring(normalize(found[0]), lineno=found[1], parent=attr)
