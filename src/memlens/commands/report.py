"""``memlens report``: one self-contained HTML page for one or several run directories."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(name="report")(report)


def report(
    run_dirs: list[Path] = typer.Argument(
        ..., help="Run directories written by memlens commands (any kind, several side by side)."
    ),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    title: str | None = typer.Option(None, "--title", help="Page title."),
    max_rows: int = typer.Option(
        20, "--max-rows", min=0, help="Rows shown per table (row counts are always given)."
    ),
) -> None:
    """Write one HTML page of run directories: configuration, provenance, numbers, plots.

    Each run's configuration, provenance, headline numbers, tables and every plot; plots are
    embedded and the page loads nothing from the network."""
    from memlens.commands._ui import make_console
    from memlens.report import write_report

    info = write_report(run_dirs, out, title=title, max_rows=max_rows)
    make_console().print(
        f"wrote {info.path} ({info.n_runs} run{'s' if info.n_runs != 1 else ''}, "
        f"{info.n_plots} plots embedded, {info.n_bytes / 1024:,.0f} KiB)"
    )
