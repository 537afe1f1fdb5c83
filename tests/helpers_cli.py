"""Running the real ``memlens`` entry point in-process from a test (importable from every test
folder: ``tests/`` is on ``sys.path``)."""

from __future__ import annotations

import sys

import pytest


def cli(args, capsys, monkeypatch) -> tuple[int, str, str]:
    """Run ``memlens ARGS...`` through :func:`memlens.cli.main`, as a user's shell would; returns
    ``(exit code, stdout, stderr)`` of the command alone (earlier captured output is dropped)."""
    from memlens import cli as memlens_cli

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["memlens", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        memlens_cli.main()
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def run_main(argv, monkeypatch, capsys):
    """Run ``memlens ARGV...`` through :func:`memlens.cli.main`; returns ``(exit code, captured)``
    with ``captured.out`` and ``captured.err`` (everything captured since the last read)."""
    from memlens import cli as memlens_cli

    monkeypatch.setattr(sys, "argv", ["memlens", *argv])
    with pytest.raises(SystemExit) as exc:
        memlens_cli.main()
    return exc.value.code, capsys.readouterr()
