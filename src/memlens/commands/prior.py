"""``memlens prior``: when is memorization optimal? (thin wrappers over :mod:`memlens.prior.recipe`).

Cheng & Barber, "Is Memorization Helpful or Harmful? Prior Information Sets the Threshold",
COLT 2026, arXiv:2602.09405.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

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
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    for h in headers:
        table.add_column(h, justify="left" if h == headers[0] else "right")
    for row in rows:
        table.add_row(*[_cell(v) for v in row[: len(headers)]])
    Console().print(table)


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
        out: Path | None = typer.Option(
            None, "--out", help="Run directory (default: memlens-runs/prior-theory-<time>)."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the table as JSON on stdout."),
    ) -> None:
        from memlens.prior.recipe import TheoryConfig, run_theory

        config = TheoryConfig(gamma, r2, sigma2, prior, spread, alpha, eta, eps, n, seed)
        table, path = run_theory(config, out)
        if as_json:
            typer.echo(json.dumps(table, indent=2))
            return
        lim, fin = table["limit"], table.get("finite")
        keys = [
            "minnorm_risk", "bayes_risk", "ridge_opt_risk", "lambda_opt", "lambda_min",
            "train_bayes", "train_bayes_lower", "train_bayes_upper", "J", "V",
            "threshold_memorization", "threshold_overfitting", "lambda_sigma",
            "sigma2_sign_change", "regime",
        ]  # fmt: skip
        rows = [(k, lim[k], fin[k] if fin else None) for k in keys]
        headers = ("quantity", "limit") + ((f"exact, n={fin['n']}, d={fin['d']}",) if fin else ())
        _print_table(
            f"{lim['prior']} prior, gamma={lim['gamma']:g}, r2={lim['r2']:.4g}, sigma2={lim['sigma2']:g}",
            rows,
            headers,
        )
        typer.echo(f"wrote {path}")

    @prior_app.command("diagnose", help=DIAGNOSE_HELP, no_args_is_help=True)
    def diagnose(
        x: Path = typer.Option(..., "--X", help="Features: n x d (.npy, .csv or .parquet)."),
        y: Path = typer.Option(..., "--y", help="Responses: n values (.npy, .csv or .parquet)."),
        out: Path | None = typer.Option(
            None, "--out", help="Run directory (default: memlens-runs/prior-diagnose-<time>)."
        ),
        no_center: bool = typer.Option(
            False, "--no-center", help="Fit without an intercept (do not center X and y)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the diagnosis as JSON on stdout."
        ),
    ) -> None:
        from memlens.prior.recipe import run_diagnose

        table, path = run_diagnose(x, y, out, center=not no_center)
        if as_json:
            typer.echo(json.dumps(table, indent=2))
            return
        keys = [
            "n", "d", "gamma", "lambda_opt", "lambda_min", "loo_opt", "loo_interp", "loo_null",
            "gcv_lambda_opt", "train_opt", "train_interp", "sigma2_hat", "signal_var_hat", "snr",
            "alpha_hat", "alpha_pvalue", "threshold_memorization", "threshold_overfitting",
            "regime", "verdict",
        ]  # fmt: skip
        _print_table("prior diagnose", [(k, table[k]) for k in keys], ("quantity", "value"))
        for k, v in table["answers"].items():
            typer.echo(f"{k.replace('_', ' ')}: {v}")
        typer.echo(f"verdict: {table['summary']}")
        typer.echo(f"wrote {path}")

    app.add_typer(prior_app, name="prior")
