"""The console sessions the pages show are what the commands print today.

``test_commands.py`` checks that every command shown parses; this runs the cheap, deterministic
ones (seconds in all: the puzzle solvers and graders, ``size``, ``laws fit-mia``, ``prior theory``,
``dp-audit bound``, a report's error) and compares their output with the page, line for line.
Training runs are not re-run here (minutes each); their pages say when they were run.

How a session runs: each page's sessions run in a fresh directory of their own, in order; a
``$ cat FILE`` line followed by text writes that text to ``FILE`` first (the page shows the
input it used), and each memlens command runs through :func:`memlens.cli.main` with ``COLUMNS``
set to the widest line of the output the page shows (the pages were captured at widths from 80
to 110; rich wraps and fits tables to the width). Lines are compared without trailing spaces; an
``exit code N`` line is the command's exit code; a JSON output may be an excerpt (every key the
page shows has the value shown). A command is run only when it matches
:data:`CHEAP` and has no pipe.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from helpers_docs import code_blocks

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())

# memlens commands that run in well under a second each and print no timings
CHEAP = re.compile(
    r"^memlens (puzzles (solve|budget|make)\b|puzzles grade\b(?!.*--program)|size\b|"
    r"laws fit-mia\b|prior theory\b|dp-audit bound\b|report runs/nope\b)"
)
EXIT = re.compile(r"^exit code (\d+)$")


def sessions(text: str) -> list[tuple[str, list[str]]]:
    """``(command, output lines)`` for every ``$ `` line of the console blocks of ``text``."""
    out: list[tuple[str, list[str]]] = []
    for block in code_blocks(text, ("console",)):
        lines = block.splitlines()
        i = 0
        while i < len(lines):
            if not lines[i].startswith("$ "):
                i += 1
                continue
            cmd = lines[i][2:]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + " " + lines[i].strip()
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("$ "):
                body.append(lines[i])
                i += 1
            out.append((cmd.strip(), body))
    return out


def pages() -> list[Path]:
    return [p for p in sorted((ROOT / "docs").glob("*.md")) if "$ memlens" in p.read_text()]


def checked(page: Path) -> list[str]:
    return [c for c, _ in sessions(page.read_text(encoding="utf-8")) if runs(c)]


def runs(cmd: str) -> bool:
    return bool(CHEAP.match(cmd)) and "|" not in cmd


def _clean(lines: list[str]) -> list[str]:
    lines = [ln.rstrip() for ln in lines]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _json(lines: list[str]) -> dict | None:
    if not lines or not lines[0].startswith("{"):
        return None
    try:
        return json.loads("\n".join(lines))
    except json.JSONDecodeError:
        return None


@pytest.mark.parametrize("page", [p for p in pages() if checked(p)], ids=lambda p: p.name)
def test_console_sessions_print_what_the_page_shows(page, tmp_path, monkeypatch, capsys):
    from memlens import cli as memlens_cli

    monkeypatch.chdir(tmp_path)
    ran = 0
    for cmd, body in sessions(page.read_text(encoding="utf-8")):
        if re.fullmatch(r"cat [\w./-]+", cmd) and body:
            target = tmp_path / cmd.split()[1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("\n".join(body) + "\n", encoding="utf-8")
            continue
        if not runs(cmd):
            continue
        words = shlex.split(cmd)
        want = _clean(body)
        code_want = 0
        if want and EXIT.match(want[-1]):
            code_want = int(EXIT.match(want.pop()).group(1))
        elif any(ln.startswith("error: ") for ln in want):
            code_want = 2
        width = max((len(ln) for ln in want), default=80)
        monkeypatch.setenv("COLUMNS", str(max(width, 40)))
        monkeypatch.setattr(sys, "argv", words)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            memlens_cli.main()
        got = capsys.readouterr()
        code = exc.value.code or 0
        lines = _clean((got.out + got.err).splitlines())
        shown = _json(want)
        if shown is not None:  # a JSON result, perhaps an excerpt: every key shown, as shown
            printed = _json(lines)
            assert code == code_want and isinstance(printed, dict), f"{page.name}: $ {cmd}"
            assert {k: printed.get(k) for k in shown} == shown, f"{page.name}: $ {cmd}"
        else:
            assert (code, lines) == (code_want, want), f"{page.name}: $ {cmd}"
        ran += 1
    assert ran == len(checked(page))


def test_the_cheap_sessions_are_found():
    """The scan sees the sessions it is meant to check (a renamed fence would silently skip them)."""
    found = {p.name: len(checked(p)) for p in pages()}
    assert found["puzzles.md"] >= 8 and found["laws.md"] >= 5 and found["prior.md"] >= 2
    assert found["privacy.md"] >= 2 and found["report.md"] >= 1
