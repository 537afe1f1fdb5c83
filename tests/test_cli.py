"""The ``memlens`` entry point: usage errors, the version, Ctrl-C."""

from __future__ import annotations

import sys

import pytest

from helpers_cli import run_main as _main
from memlens import __version__


@pytest.mark.parametrize(
    ("argv", "sentence"),
    [
        (["audit", "--nope"], "error: No such option: --nope"),
        (["nosuch"], "error: No such command 'nosuch' (see 'memlens --help')."),
        (
            ["puzzles", "solve", "hanoi", "--max-moves", "-1"],
            "error: Invalid value for '--max-moves'",
        ),
        (
            ["dp-audit", "bound", "--guesses", "10", "--correct", "10", "--canaries", "100"],
            "error: Missing option '--delta' (see 'memlens dp-audit bound --help').",
        ),
        (
            ["dp-audit", "bound", "-r", "x", "-v", "1", "-M", "3", "--delta", "0"],
            "error: Invalid value for '--guesses'",
        ),
    ],
)
def test_a_usage_error_is_one_line_and_exit_code_2(argv, sentence, monkeypatch, capsys):
    code, cap = _main(argv, monkeypatch, capsys)
    assert code == 2
    assert cap.err.startswith(sentence)
    assert cap.err.count("\n") == 1 and "╭" not in cap.err and "Traceback" not in cap.err
    assert cap.out == ""


def test_version_and_success_exit_0(monkeypatch, capsys):
    code, cap = _main(["--version"], monkeypatch, capsys)
    assert (code, cap.out) == (0, f"memlens {__version__}\n")
    code, cap = _main(["dp-audit", "bound", "-r", "10", "-v", "10", "-M", "100", "--delta", "0",
                       "--json"], monkeypatch, capsys)  # fmt: skip
    assert code == 0 and '"epsilon_lower_bound": 1.0518' in cap.out


def test_ctrl_c_says_how_to_resume_and_exits_130(monkeypatch, capsys):
    import memlens.commands.size as size_cmd

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(size_cmd, "size_model", interrupted, raising=False)
    monkeypatch.setattr(sys, "argv", ["memlens", "size", "--help"])
    # the parser turns Ctrl-C inside a command into exit code 130; main says what to do
    from memlens import cli

    monkeypatch.setattr(cli, "app", lambda **kw: 130)
    import memlens.store as store

    monkeypatch.setattr(store, "_LAST_RUN_DIR", None)
    code, cap = _main([], monkeypatch, capsys)
    assert code == 130
    assert cap.err == "interrupted before anything was saved.\n"


def test_ctrl_c_names_the_run_directory_to_resume(tmp_path, monkeypatch, capsys):
    # A run without --out writes to a timestamped directory: "rerun with the same --out" named
    # nothing the user typed, and a rerun without --out started again from scratch.
    import memlens.store as store
    from memlens import cli
    from memlens.store import RunDir

    monkeypatch.setattr(store, "_LAST_RUN_DIR", None)  # restored after the test
    monkeypatch.chdir(tmp_path)
    run = RunDir(tmp_path / "memlens-runs" / "audit-20261201-120000", "audit", {"a": 1}, seed=0)
    run.write_manifest()

    def interrupted(**kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "app", interrupted)
    code, cap = _main([], monkeypatch, capsys)
    assert code == 130
    where = tmp_path / "memlens-runs" / "audit-20261201-120000"
    assert cap.err == (
        f"interrupted: the work finished so far is saved in {where}; rerun the same command with "
        f"--out {where} to resume.\n"
    )


def test_a_refused_run_prints_nothing_on_stdout(tmp_path, monkeypatch, capsys):
    # the progress display starts at the first event: a run refused before it starts leaves no
    # blank line behind (it used to, from the bars' stop)
    argv = ["shadow", "attack", "--shadows", str(tmp_path / "none"), "--out", str(tmp_path / "o")]
    code, cap = _main(argv, monkeypatch, capsys)
    assert code == 2 and cap.out == ""
    assert cap.err == f"error: shadows directory {tmp_path / 'none'} does not exist.\n"


def test_transient_bars_write_nothing_into_a_file_or_pipe(capsys):
    from memlens.commands._ui import progress_bars
    from memlens.progress import ProgressEvent

    with progress_bars() as progress:  # pytest's captured stdout is not a terminal
        progress(ProgressEvent(task="a", completed=1, total=2))
        progress(ProgressEvent(task="a", completed=2, total=2))
    print("summary")
    assert capsys.readouterr().out == "summary\n"


def test_a_table_written_to_a_pipe_keeps_its_attack_names(tmp_path, monkeypatch, capsys):
    """Rich's default width in a file or pipe (80) cut the attack column of the metrics table
    to an ellipsis (``lira_…``); the command line's console is 160 wide there."""
    import pandas as pd

    name = "a_long_attack_name_of_32_letters"
    n = 40
    f = tmp_path / "scores.csv"
    pd.DataFrame(
        {name: range(2 * n), "another_long_attack_name_here": range(2 * n),
         "label": [0] * n + [1] * n}
    ).to_csv(f, index=False)  # fmt: skip
    monkeypatch.delenv("COLUMNS", raising=False)
    cols = f"{name},another_long_attack_name_here"
    code, cap = _main(
        ["mia", "metrics", "--scores", str(f), "--columns", cols], monkeypatch, capsys
    )
    assert code in (0, None)
    assert name in cap.out and "…" not in cap.out


def test_every_command_summary_is_one_paragraph_without_a_hard_line_break():
    """Rich help keeps a docstring's line breaks: a summary wrapped in the source showed a break
    in the middle of a sentence in ``memlens --help`` (``report``, ``laws fit-mia``)."""
    import typer

    from memlens.cli import app

    def walk(command, path):
        summary = (command.help or "").strip().split("\n\n")[0]
        yield " ".join(path), summary
        for name, sub in getattr(command, "commands", {}).items():
            yield from walk(sub, [*path, name])

    found = dict(walk(typer.main.get_command(app), ["memlens"]))
    assert len(found) > 20 and "memlens report" in found and "memlens laws fit-mia" in found
    assert [name for name, summary in found.items() if "\n" in summary] == []


def test_device_help_offers_map_only_where_a_loaded_model_can_be_split():
    """``--device map`` splits a Hugging Face model that memlens loads; commands that train
    memlens's own models refuse it, so their help must not offer it."""
    import typer

    from memlens.cli import app

    root = typer.main.get_command(app)

    def device_help(*path):
        cmd = root
        for name in path:
            cmd = cmd.commands[name]
        (opt,) = [p for p in cmd.params if "--device" in getattr(p, "opts", [])]
        return opt.help

    assert "map" in device_help("audit") and "map" in device_help("mia")
    assert "map" not in device_help("shadow", "train")
    assert "map" not in device_help("dp-audit")
    assert "mps" in device_help("shadow", "train") and "mps" in device_help("audit")
