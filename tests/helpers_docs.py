"""Reading the fenced code blocks of the documentation pages (for ``tests/docs/``)."""

from __future__ import annotations

import re

FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
PROMPT = re.compile(r"^\s*(>>>|\.\.\.) ?")


def code_blocks(text: str, languages: tuple[str, ...], *, strip_prompts: bool = False) -> list[str]:
    """The code of every fenced block of ``text`` whose language is one of ``languages``, in
    order; with ``strip_prompts`` the ``>>>``/``...`` prompts of a console session are removed."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(2).lower() in languages:
            fence, body = m.group(1), []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence):
                body.append(PROMPT.sub("", lines[i]) if strip_prompts else lines[i])
                i += 1
            out.append("\n".join(body))
        i += 1
    return out
