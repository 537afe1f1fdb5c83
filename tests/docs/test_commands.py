"""The pages cannot drift from the code: every ``memlens`` command shown in the docs parses.

Scans README.md and docs/**/*.md for command lines inside fenced code blocks: ``$ memlens ...``
in console sessions, and ``memlens ...`` at the start of a line in ``bash``/``sh``/``shell``
blocks (continuation lines ending in a backslash are joined; ``# comments``, pipes and
redirections are cut). Each is parsed by the real command line's parser (click, under typer):
the subcommand must exist and every flag shown must be one the CLI accepts. Values are not
checked (a placeholder such as ``FILE`` is fine), only the command and its flags.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer

from memlens.cli import app

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
SHELL_LANGS = {"bash", "sh", "shell", "zsh"}  # in console blocks only "$ " lines are commands


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [f for f in files if f.is_file()]


def command_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` for every memlens command line in the fenced blocks of ``text``."""
    out: list[tuple[int, str]] = []
    lines = text.splitlines()
    in_block, lang, i = False, "", 0
    while i < len(lines):
        line = lines[i]
        m = FENCE.match(line)
        if m:
            in_block, lang = (not in_block), (m.group(3).lower() if not in_block else "")
            i += 1
            continue
        if in_block:
            stripped = line.strip()
            cmd = None
            if stripped.startswith("$ memlens ") or stripped == "$ memlens":
                cmd = stripped[2:]
            elif lang in SHELL_LANGS and (stripped.startswith("memlens ") or stripped == "memlens"):
                cmd = stripped
            if cmd is not None:
                start = i
                while cmd.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd[:-1] + " " + lines[i].strip()
                out.append((start + 1, cmd))
        i += 1
    return out


def _tokens(cmd: str) -> list[str]:
    lexer = shlex.shlex(cmd, posix=True, punctuation_chars="|&;<>")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    tokens = []
    for tok in lexer:
        if tok and set(tok) <= set("|&;<>"):
            break  # a pipe, redirection or a second command: only the first one is memlens's
        tokens.append(tok)
    return tokens[1:]  # drop "memlens"


def check(cmd: str) -> str | None:
    """``None`` when the CLI accepts the command's subcommands and flags, else why not."""
    group = typer.main.get_command(app)
    args = _tokens(cmd)
    command = group
    path = ["memlens"]
    while hasattr(command, "commands") and args and not args[0].startswith("-"):
        sub = command.commands.get(args[0])
        if sub is None:
            return f"no command {' '.join(path + [args[0]])!r}"
        path.append(args.pop(0))
        command = sub
    # typer vendors click: use the command's own context class and parser
    ctx = command.context_class(command, info_name=" ".join(path))
    parser = command.make_parser(ctx)
    try:
        parser.parse_args(args)
    except Exception as exc:  # noqa: BLE001 - click's usage errors (vendored by typer)
        if hasattr(exc, "option_name"):
            return f"{' '.join(path)} has no option {exc.option_name}"
        return f"{' '.join(path)}: {getattr(exc, 'message', exc)}"
    return None


def test_checker_catches_a_flag_the_cli_does_not_have():
    assert check("memlens capacity --preset smoke --out runs/x") is None
    assert "no option --no-such-flag" in check("memlens capacity --no-such-flag 3")
    assert "no command" in check("memlens no-such-command --x 1")
    assert check("memlens prior theory --gamma 2  # comment --bogus") is None
    assert check("memlens prior theory --gamma 2 | head -3") is None
    text = "```console\n$ memlens capacity \\\n    --bogus-flag 1\nsome output\n```\n"
    [(line, cmd)] = command_lines(text)
    assert line == 2 and "no option --bogus-flag" in check(cmd)
    # output lines and lines outside fences are not commands
    assert command_lines("memlens capacity --bogus\n```\nmemlens trainer : 3.2\n```\n") == []


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_in_the_docs_parses(path):
    problems = [
        f"{path.relative_to(ROOT)}:{line}: {why}  ({cmd})"
        for line, cmd in command_lines(path.read_text(encoding="utf-8"))
        if (why := check(cmd)) is not None
    ]
    assert not problems, "\n".join(problems)
