"""``memlens prior``: when is memorization optimal? (thin wrappers over :mod:`memlens.prior.recipe`).

Cheng & Barber, "Is Memorization Helpful or Harmful? Prior Information Sets the Threshold",
COLT 2026, arXiv:2602.09405.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memlens.commands import options

HELP = (
    "When is memorization (zero training error) optimal? Exact Bayesian linear theory "
    "(Cheng & Barber, COLT 2026) and a diagnostic for your own data."
)
THEORY_HELP = (
    "Risks of the min-norm interpolator, the best ridge and the Bayes estimator in the "
    "proportional limit d/n = gamma, the prior's thresholds 1/J (memorization necessary below) "
    "and V (overfitting harmful above), and the optimal ridge penalty (negative allowed). "
    "Writes theory.json, curves and plots; --json prints the table."
)
DIAGNOSE_HELP = (
    "Is interpolating your (X, y) harmless, helpful or harmful? Exact leave-one-out over ridge "
    "penalties (admissible negative ones included), an empirical-Bayes noise and prior-alignment "
    "estimate, and a verdict in words. Reads .npy, .csv or .parquet."
)


def _print_table(
    title: str, rows: list[tuple[str, object, object]], headers: tuple[str, ...]
) -> None:
    from rich.table import Table

    from memlens.commands._ui import make_console

    table = Table(title=title, show_header=True, header_style="bold")
    for h in headers:
        table.add_column(h, justify="left" if h == headers[0] else "right")
    for row in rows:
        table.add_row(*[_cell(v) for v in row[: len(headers)]])
    make_console().print(table)


def _cell(v: object) -> str:
    if v is None:
        return "inf"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def register(app: typer.Typer) -> None:
    prior_app = typer.Typer(help=HELP, no_args_is_help=True)

    @prior_app.command("theory", help=THEORY_HELP)
    def theory(
        gamma: float = typer.Option(2.0, "--gamma", help="Overparameterization ratio d/n."),
        r2: float = typer.Option(1.0, "--r2", help="Signal variance E||theta||^2_Sigma."),
        sigma2: float = typer.Option(0.25, "--sigma2", help="Noise variance."),
        prior: str = typer.Option(
            "isotropic", "--prior", help="isotropic, aligned, misaligned or lowrank."
        ),
        spread: float = typer.Option(
            10.0, "--spread", help="aligned/misaligned: condition number of the two-level Sigma_x."
        ),
        alpha: float = typer.Option(
            1.0, "--alpha", help="aligned/misaligned: prior variance ~ s^(+-alpha)."
        ),
        eta: float = typer.Option(0.1, "--eta", help="lowrank: fraction of strong directions."),
        eps: float = typer.Option(
            0.05, "--eps", help="lowrank: fraction of the signal off the strong directions."
        ),
        n: int = typer.Option(
            0, "--n", help="Also compute exact finite-sample values on one design with n rows."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the finite-sample design."),
        out: options.Out = None,
        as_json: options.Json = False,
    ) -> None:
        from memlens.prior.recipe import THEORY_ROWS, TheoryConfig, run

        config = TheoryConfig(
            gamma=gamma, r2=r2, sigma2=sigma2, prior=prior, spread=spread, alpha=alpha, eta=eta,
            eps=eps, n=n, seed=seed,
        )  # fmt: skip
        result = run(config, out)
        lim, fin = result.summary.limit, result.summary.finite
        if as_json:
            typer.echo(json.dumps(result.summary.to_json(), indent=2))
            return
        rows = [(k, getattr(lim, k), getattr(fin, k) if fin else None) for k in THEORY_ROWS]
        headers = ("quantity", "limit") + ((f"exact, n={fin.n}, d={fin.d}",) if fin else ())
        _print_table(
            f"{lim.prior} prior, gamma={lim.gamma:g}, r2={lim.r2:.4g}, sigma2={lim.sigma2:g}",
            rows,
            headers,
        )
        typer.echo(f"wrote {result.out_dir}")

    @prior_app.command("diagnose", help=DIAGNOSE_HELP, no_args_is_help=True)
    def diagnose(
        x: Path = typer.Option(..., "--X", help="Features: n x d (.npy, .csv or .parquet)."),
        y: Path = typer.Option(..., "--y", help="Responses: n values (.npy, .csv or .parquet)."),
        out: options.Out = None,
        no_center: bool = typer.Option(
            False, "--no-center", help="Fit without an intercept (do not center X and y)."
        ),
        as_json: options.Json = False,
    ) -> None:
        from memlens.prior.recipe import DIAGNOSIS_ROWS, DiagnoseConfig, run

        result = run(DiagnoseConfig(X=str(x), y=str(y), center=not no_center), out)
        s = result.summary
        if as_json:
            typer.echo(json.dumps(s.to_json(), indent=2))
            return
        _print_table(
            "prior diagnose", [(k, getattr(s, k)) for k in DIAGNOSIS_ROWS], ("quantity", "value")
        )
        for k, v in s.answers.items():
            typer.echo(f"{k.replace('_', ' ')}: {v}")
        typer.echo(f"verdict: {s.summary}")
        typer.echo(f"wrote {result.out_dir}")

    app.add_typer(prior_app, name="prior")
