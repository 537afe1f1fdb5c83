"""``memlens laws``: fit the membership-inference scaling law, and the two experiments behind the
sizing laws (MIA scaling, double descent). Thin layer over :mod:`memlens.laws` and
:mod:`memlens.laws_experiments`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

HELP = (
    "Scaling laws of memorization (Morris et al. 2025): fit the membership-inference law to your "
    "measurements, or run the MIA-scaling and double-descent experiments."
)


def _print_fit(result: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    level = int(round(result["ci_level"] * 100))
    t = Table(title=title)
    t.add_column("constant")
    t.add_column("fitted", justify="right")
    t.add_column(f"{level}% CI", justify="right")
    t.add_column("published (corrected)", justify="right")
    for k, v in result["constants"].items():
        lo, hi = result["ci"][k]
        ci = "at bound" if result["at_bound"][k] else f"[{lo:.4g}, {hi:.4g}]"
        t.add_row(k, f"{v:.4g}", ci, f"{result['published_constants'][k]:.4g}")
    console.print(t)
    p = Table(title="per-row predictions (input order)")
    for col in (
        "row",
        "n_sequences",
        "capacity_bits",
        "|D|/C",
        "f1",
        "fitted",
        "residual",
        "published law",
    ):
        p.add_column(col, justify="right")
    for r in result["predictions"]:
        p.add_row(
            str(r["row"]),
            f"{r['n_sequences']:,.0f}",
            f"{r['capacity_bits']:.4g}",
            f"{r['sequences_per_capacity_bit']:.4g}",
            f"{r['f1']:.3f}",
            f"{r['fitted_f1']:.3f}",
            f"{r['residual']:+.3f}",
            f"{r['published_law_f1']:.3f}",
        )
    console.print(p)
    console.print(
        f"{result['form']}; rmse {result['rmse']:.4f}, max |residual| {result['max_abs_residual']:.4f}, "
        f"{result['n']} rows, {result['dof']} dof; capacity = {result['capacity_source']}."
    )
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")


def register(app: typer.Typer) -> None:
    laws_app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

    @laws_app.command("fit-mia")
    def fit_mia(
        file: Path = typer.Argument(
            ..., help="CSV/Parquet with columns params (or capacity_bits), n_sequences, f1."
        ),
        alpha: float = typer.Option(
            3.64, "--alpha", help="Bits per parameter when the table gives params."
        ),
        level: float = typer.Option(0.95, "--level", help="Confidence level of the intervals."),
        as_json: bool = typer.Option(
            False, "--json", help="Print JSON only (constants, predictions in input order)."
        ),
        out: Path = typer.Option(
            None,
            "--out",
            "-o",
            help="Run directory for fit_mia.json, predictions.csv and fit_mia.png.",
        ),
    ) -> None:
        """Fit F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D|/Capacity)) by least squares, with CIs."""
        from memlens.laws import fit_mia_table, plot_mia_fit
        from memlens.store import RunDir, to_json

        result = fit_mia_table(file, alpha=alpha, level=level)
        if out is not None:
            import pandas as pd

            rd = RunDir(
                out, "laws-fit-mia", {"file": str(file), "alpha": alpha, "level": level}, None
            )
            rd.write_json("fit_mia.json", result)
            rd.write_table("predictions.csv", pd.DataFrame(result["predictions"]))
            rd.save_figure(
                "fit_mia.png", plot_mia_fit(result, title=f"MIA law fit: {Path(file).name}")
            )
            rd.write_manifest(status="finished")
        if as_json:
            typer.echo(to_json(result))
        else:
            _print_fit(result, f"memlens laws fit-mia: {file}")
            if out is not None:
                typer.echo(f"wrote {out}/fit_mia.json, predictions.csv, fit_mia.png")

    app.add_typer(laws_app, name="laws", help=HELP)
