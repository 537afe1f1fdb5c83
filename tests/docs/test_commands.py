"""The pages cannot drift from the code: every ``memlens`` command shown in the docs parses.

Scans README.md, CHANGELOG.md and docs/**/*.md for command lines inside fenced code blocks: ``$ memlens ...``
in console sessions, and ``memlens ...`` at the start of a line in ``bash``/``sh``/``shell``
blocks (continuation lines ending in a backslash are joined; ``# comments``, pipes and
redirections are cut). Each is parsed by the real command line's parser (click, under typer):
the subcommand must exist and every flag shown must be one the CLI accepts. Values are not
checked (a placeholder such as ``FILE`` is fine), only the command and its flags.

The scripts the pages run (``$ python benchmarks/x.py ...``, ``$ .venv/bin/python examples/y.py
...``) are checked the same way against their own ``argparse`` options, read from the script's
source (``add_argument("--flag", ...)``; argparse's unique-prefix abbreviations count): the script
must exist and every flag shown must be one it accepts.

Two more checks keep the pages honest: every ``memlens`` name a Python snippet imports or uses
(``from memlens.x import y``, ``memlens.x.y``, ``x.y`` after ``from memlens import x``) exists, and
every relative link of README.md (which the docs build does not see) points to a file that exists.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
import sys
from pathlib import Path

import pytest
import typer

from helpers_docs import code_blocks
from memlens.cli import app

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)")
SHELL_LANGS = {"bash", "sh", "shell", "zsh"}  # in console blocks only "$ " lines are commands


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
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


SCRIPT = re.compile(r"^\$ (?:\S*/)?python3? ((?:benchmarks|examples)/[\w./-]+\.py)(.*)$")


def script_lines(text: str) -> list[tuple[int, str, str]]:
    """``(line number, script path, arguments)`` for every ``$ python benchmarks/...`` or
    ``$ python examples/...`` line inside the fenced blocks of ``text``."""
    out, in_block = [], False
    for i, line in enumerate(text.splitlines()):
        if FENCE.match(line):
            in_block = not in_block
        elif in_block and (m := SCRIPT.match(line.strip())):
            out.append((i + 1, m.group(1), m.group(2)))
    return out


def script_flags(source: str) -> set[str]:
    """The ``--flags`` a script's ``add_argument`` calls declare (and argparse's ``--help``)."""
    flags = {"--help"}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                    flags.add(arg.value)
    return flags


def check_script(script: str, args: str, root: Path = ROOT) -> str | None:
    """``None`` when ``script`` exists and declares every flag in ``args``, else why not."""
    path = root / script
    if not path.is_file():
        return f"no script {script}"
    known = script_flags(path.read_text(encoding="utf-8"))
    tokens = shlex.split(args.split(" #")[0].split("|")[0].split(">")[0])
    for tok in tokens:
        flag = tok.split("=")[0]
        if not flag.startswith("--"):
            continue
        if flag not in known and len([k for k in known if k.startswith(flag)]) != 1:
            return f"{script} has no option {flag}"
    return None


def page_problems(path: Path) -> list[str]:
    """One line per command of the page at ``path`` that the CLI (or the script) does not
    accept."""
    text = path.read_text(encoding="utf-8")
    problems = [
        f"{path.name}:{line}: {why}  ({cmd})"
        for line, cmd in command_lines(text)
        if (why := check(cmd)) is not None
    ]
    return problems + [
        f"{path.name}:{line}: {why}"
        for line, script, args in script_lines(text)
        if (why := check_script(script, args)) is not None
    ]


def python_blocks(text: str) -> list[str]:
    """The code of every ``python`` fenced block (``>>>`` prompts removed)."""
    return code_blocks(text, ("python", "py", "pycon"), strip_prompts=True)


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def snippet_names(code: str) -> set[str]:
    """Dotted ``memlens`` names a snippet imports or uses (comments and strings ignored)."""
    code = re.sub(r"#.*", "", code)
    code = re.sub(r"(\"[^\"\n]*\"|'[^'\n]*')", '""', code)
    names: set[str] = set()
    alias: dict[str, str] = {}
    for m in re.finditer(r"^\s*from\s+(memlens[\w.]*)\s+import\s+\(?([^)]+?)\)?\s*$", code, re.M):
        for item in m.group(2).replace("\n", " ").split(","):
            name, _, as_name = item.strip().partition(" as ")
            if name.strip():
                alias[(as_name or name).strip()] = f"{m.group(1)}.{name.strip()}"
    for m in re.finditer(r"^\s*import\s+(memlens[\w.]*)(?:\s+as\s+(\w+))?", code, re.M):
        alias[m.group(2) or "memlens"] = m.group(1) if m.group(2) else "memlens"
    names.update(alias.values())
    names.update(re.findall(r"(?<![\w.])(memlens(?:\.\w+)+)", code))
    for m in re.finditer(r"(?<![\w.])(\w+)\.(\w+)", code):
        base = alias.get(m.group(1))
        if base is not None and m.group(1) != "memlens":
            names.add(f"{base}.{m.group(2)}")
    return names


def snippet_problems(text: str) -> list[str]:
    """One line per ``memlens`` name in the Python snippets of ``text`` that does not exist."""
    problems = []
    for code in python_blocks(text):
        for name in sorted(snippet_names(code)):
            try:
                _resolve(name)
            except (ImportError, AttributeError) as exc:
                problems.append(f"{name}: {exc}")
    return problems


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


def test_a_page_with_a_removed_flag_fails(tmp_path):
    """The page-level check, on a fake page whose console session uses a flag the CLI lacks."""
    good = tmp_path / "good.md"
    good.write_text(
        "# Page\n\n```console\n$ memlens capacity --preset smoke --out runs/x\nwrote runs/x\n```\n",
        encoding="utf-8",
    )
    assert page_problems(good) == []
    stale = tmp_path / "stale.md"
    stale.write_text(
        "# Page\n\nText.\n\n```console\n$ memlens capacity --preset smoke \\\n"
        "    --learning-rate-schedule cosine --out runs/x\nwrote runs/x\n```\n\n"
        "```bash\nmemlens audit --model m --no-such-flag --train t --heldout h\n```\n",
        encoding="utf-8",
    )
    problems = page_problems(stale)
    assert len(problems) == 2
    assert "stale.md:6: memlens capacity has no option --learning-rate-schedule" in problems[0]
    assert "stale.md:12: memlens audit has no option --no-such-flag" in problems[1]


def test_script_checker_reads_argparse_flags(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "b.py").write_text(
        "import argparse\nap = argparse.ArgumentParser()\n"
        "ap.add_argument('--rounds', type=int)\nap.add_argument('-n', '--n-texts', type=int)\n",
        encoding="utf-8",
    )
    text = (
        "```console\n$ python benchmarks/b.py --rounds 3 --n-texts=4\n"
        "$ .venv/bin/python benchmarks/b.py --round 3 --threads 1\nout\n```\n"
        "$ python benchmarks/b.py --outside-a-fence\n"
    )
    lines = script_lines(text)
    assert [(n, s) for n, s, _ in lines] == [(2, "benchmarks/b.py"), (3, "benchmarks/b.py")]
    assert check_script(*lines[0][1:], root=tmp_path) is None
    # "--round" abbreviates --rounds (argparse accepts it); --threads does not exist
    assert check_script(*lines[1][1:], root=tmp_path) == "benchmarks/b.py has no option --threads"
    assert check_script("benchmarks/gone.py", "", root=tmp_path) == "no script benchmarks/gone.py"


def test_snippet_checker_catches_a_name_memlens_no_longer_has():
    code = (
        "from memlens.capacity import load_config, run  # the recipe\n"
        "from memlens import shadow\n"
        "shadow.run(shadow.ShadowTrainConfig(pool='p.jsonl'), 'out')\n"
        "memlens.scoring.score_texts\n"
    )
    assert snippet_names(code) == {
        "memlens.capacity",
        "memlens.capacity.load_config",
        "memlens.capacity.run",
        "memlens.shadow",
        "memlens.shadow.run",
        "memlens.shadow.ShadowTrainConfig",
        "memlens.scoring.score_texts",
    }
    assert snippet_problems(f"```python\n{code}```\n") == []
    stale = "```python\nfrom memlens.models.hf import load_causal_lm, score_texts\n```\n"
    [problem] = snippet_problems(stale)
    assert problem.startswith("memlens.models.hf.score_texts")


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_in_the_docs_parses(path):
    problems = page_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_memlens_name_in_the_python_snippets_exists(path):
    problems = snippet_problems(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.relative_to(ROOT)}: " + "; ".join(problems)


def test_readme_links_point_to_files():
    """README.md is not part of the docs build, so its relative links are checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and t.split("#")[0]]
    assert local, "README.md links to no page"
    missing = sorted({t for t in local if not (ROOT / t).exists()})
    assert not missing, f"README.md links to missing files: {missing}"
    assert any(t.startswith("docs/") and t.endswith(".md") for t in local)
    # an anchor into a page must be one of its headings (slugged as the docs build does)
    from markdown.extensions.toc import slugify

    bad = []
    for target in targets:
        page, _, anchor = target.partition("#")
        if anchor and page.endswith(".md") and (ROOT / page).is_file():
            lines = (ROOT / page).read_text(encoding="utf-8").splitlines()
            headings = [re.sub(r"^#+\s*", "", h) for h in lines if re.match(r"#{1,6} ", h)]
            if anchor not in {slugify(h.replace("`", ""), "-") for h in headings}:
                bad.append(target)
    assert not bad, f"README.md links to anchors that are no heading: {bad}"


def test_api_pages_read_colon_items_as_numpy():
    """The Griffe extension of the API pages (docs/_griffe/colon_items.py), on a hand-made case."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "colon_items", ROOT / "docs" / "_griffe" / "colon_items.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    doc = (
        "See :class:`~memlens.store.RunDir` and :func:`run_cells`.\n\n"
        "Parameters\n----------\nrd: the run directory.\nload, save: how a cell\n    is read.\n"
        "x : int\n    An int.\n\nNotes\n-----\nkey: not an item here.\n"
    )
    assert module.normalize(doc) == (
        "See `RunDir` and `run_cells`.\n\n"
        "Parameters\n----------\nrd\n    the run directory.\nload, save\n    how a cell\n"
        "    is read.\nx : int\n    An int.\n\nNotes\n-----\nkey: not an item here."
    )


def test_readme_lists_every_command():
    """The README's table of commands names every command the CLI registers, and in the row of
    a group (``memlens laws``) every one of its subcommands (`` `fit-mia` `` or
    `` `laws fit-mia` ``)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = [line for line in text.splitlines() if line.startswith("| `memlens ")]
    listed = {m for line in table for m in re.findall(r"`memlens ([\w-]+)", line)}
    group = typer.main.get_command(app)
    commands = set(group.commands)
    assert commands <= listed, f"README.md's table lacks {sorted(commands - listed)}"
    missing = []
    for name, command in group.commands.items():
        if not hasattr(command, "commands"):
            continue
        first_cells = [
            line.split("|")[1] for line in table if re.search(rf"`memlens {name}[` ]", line)
        ]
        shown = {
            code.split()[-1] for cell in first_cells for code in re.findall(r"`([^`]+)`", cell)
        }
        missing += [f"{name} {sub}" for sub in command.commands if sub not in shown]
    assert not missing, f"README.md's table lacks the subcommands {missing}"


def test_api_reference_covers_every_public_entry_point():
    """Every package with ``__all__`` has a ``::: memlens.<package>`` block in docs/api/ (which
    renders its ``__all__``); a name in ``__all__`` that a submodule of the same name hides
    (``memlens.laws.size``) needs its own block; every ``:::`` target exists."""
    import pkgutil
    import types

    import memlens

    blocks = set()
    for page in (ROOT / "docs" / "api").glob("*.md"):
        blocks |= set(re.findall(r"^::: ([\w.]+)", page.read_text(encoding="utf-8"), re.M))
    for target in blocks:
        _resolve(target)
    missing = []
    for info in pkgutil.iter_modules(memlens.__path__):
        if info.name in ("cli", "commands"):
            continue
        name = f"memlens.{info.name}"
        module = importlib.import_module(name)
        public = getattr(module, "__all__", None)
        if public is None:
            continue
        if name not in blocks:
            missing.append(name)
        for attr in public:
            obj = getattr(module, attr)
            hidden = f"{name}.{attr}" in sys.modules and not isinstance(obj, types.ModuleType)
            if hidden and f"{obj.__module__}.{obj.__qualname__}" not in blocks:
                missing.append(f"{name}.{attr}")
    assert not missing, f"no API page renders {missing}"
