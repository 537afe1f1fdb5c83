"""The ``memlens`` command line: one thin command per capability.

Each command lives in ``memlens.commands.<name>`` and registers itself with :func:`register`;
the commands import torch and friends lazily inside their bodies, so ``memlens --help`` is
instant. Bad input raises :class:`~memlens.errors.UserError`, which becomes one line on stderr
and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from memlens.errors import UserError

app = typer.Typer(
    name="memlens",
    help="Measure, predict and control memorization in neural language models (units: bits).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Command modules, in the order they appear in --help. Each defines ``register(app)``.
COMMAND_MODULES = [
    "capacity",
    "size",
    "laws",
    "audit",
    "mia",
    "dp_audit",
    "shadow",
    "track",
    "sinks",
    "prior",
    "puzzles",
    "report",
    "fetch",
]

for _name in COMMAND_MODULES:
    try:
        _mod = importlib.import_module(f"memlens.commands.{_name}")
    except ModuleNotFoundError as _exc:  # a capability not built yet
        if _exc.name != f"memlens.commands.{_name}":
            raise
        continue
    _mod.register(app)


def _show_version(value: bool) -> None:
    if value:
        from memlens import __version__

        typer.echo(f"memlens {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        is_eager=True,
        callback=_show_version,
        expose_value=False,
    ),
) -> None:
    """memlens: measure, predict and control memorization in neural language models."""


def fail(message: str, code: int = 2) -> None:
    """Print one clear sentence to stderr and exit with ``code``."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise SystemExit(code)


def _all_flags() -> set[str]:
    """Every ``--option`` of every command (for :func:`cli_message`)."""
    import click

    flags: set[str] = set()

    def walk(cmd: click.Command) -> None:
        for p in cmd.params:
            flags.update(o for o in getattr(p, "opts", []) if o.startswith("--"))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return flags


def cli_message(message: str) -> str:
    r"""A library message for the command line: a parameter named in backticks (``\`reference\```)
    becomes its flag (``--reference``) when a command has that flag; other backticks are dropped.

    Library errors name Python parameters so a notebook user reads them as they are; the command
    line maps them to the flags that set those parameters.
    """
    import re

    if "`" not in message:
        return message
    flags = _all_flags()

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        flag = "--" + name.replace("_", "-")
        return flag if flag in flags else name

    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", sub, message).replace("`", "")


def interrupted_message() -> str:
    """What Ctrl-C leaves behind: the run directory to pass as ``--out`` to resume (a run without
    ``--out`` writes to a timestamped directory, so "the same --out" would name nothing), or that
    nothing was saved yet."""
    from memlens.store import last_run_dir

    where = last_run_dir()
    if where is not None and where.is_dir() and any(p.is_file() for p in where.rglob("*")):
        return (
            f"interrupted: the work finished so far is saved in {where}; rerun the same command with "
            f"--out {where} to resume."
        )
    return "interrupted before anything was saved."


def show_notes() -> None:
    """Print memlens's own informational messages (the ``memlens`` loggers at INFO, e.g. a
    checkpoint converted on first use) on stderr as ``note: ...``. The library only logs them,
    so a notebook shows them only when its logging asks for them."""
    import logging

    class Notes(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            sys.stderr.write(f"note: {record.getMessage()}\n")  # the stderr of the moment

    log = logging.getLogger("memlens")
    log.handlers = [h for h in log.handlers if type(h).__name__ != "Notes"] + [Notes()]
    log.setLevel(logging.INFO)
    log.propagate = False


def main() -> None:
    """Entry point: run the app, turning user errors and command-line usage errors into one line
    on stderr and exit code 2."""
    from typer.exceptions import TyperException  # the base of the command-line parser's errors

    show_notes()
    try:
        code = app(standalone_mode=False, prog_name="memlens")
    except UserError as exc:
        fail(cli_message(str(exc)))
    except (KeyboardInterrupt, typer.Abort):
        typer.secho(interrupted_message(), err=True)
        sys.exit(130)
    except TyperException as exc:  # unknown flag or command, a missing or bad value
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())  # a group without its command: its help, as before
            sys.exit(2)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        fail(f"{message.rstrip('.')}{where}.", getattr(exc, "exit_code", 2))
    if code == 130:  # the parser turns Ctrl-C into exit code 130
        typer.secho(interrupted_message(), err=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
