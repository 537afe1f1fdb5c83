"""``memlens size``: where a model and dataset sit before training (a thin layer over
:func:`memlens.laws.size`)."""

from __future__ import annotations

from pathlib import Path

import typer

from memlens.commands import options

HELP = (
    "Before training: capacity bits (alpha * params), dataset bits, capacity ratio and regime, "
    "tokens per parameter and the predicted membership-inference F1 (corrected law of Morris et "
    "al. 2025); --target-f1 answers the inverse questions."
)


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1e4:
        return f"{x:,.0f}" if abs(x) < 1e15 else f"{x:.4g}"
    return f"{x:.{digits}g}"


def _print(rep) -> None:  # rep: memlens.laws.SizeReport
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    table = Table(title="memlens size", show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("note", style="dim")
    if rep.config is not None and rep.config["kind"] == "hf":
        c = rep.config
        table.add_row(
            "model config", c["model_type"], f"{c['path']}; tied embeddings: {c['tied_embeddings']}"
        )
    if rep.params is not None:
        table.add_row("parameters", _fmt(rep.params), "")
    table.add_row("alpha (bits/param)", f"{rep.alpha:.4g}", rep.alpha_source)
    if rep.capacity_bits is not None:
        table.add_row("capacity (bits)", _fmt(rep.capacity_bits), "alpha * params")
    if rep.n_sequences is not None:
        table.add_row("dataset (sequences)", _fmt(rep.n_sequences), f"{rep.seq_len} tokens each")
        table.add_row("dataset (tokens)", _fmt(rep.tokens), "")
    if rep.dataset_bits is not None:
        table.add_row("dataset bits", _fmt(rep.dataset_bits), rep.bits_source or "")
    if rep.capacity_ratio is not None:
        table.add_row("capacity ratio", f"{rep.capacity_ratio:.4g}", "dataset bits / capacity bits")
        table.add_row("regime", rep.regime, "<0.5 memorization, <2 critical, else generalization")
    if rep.tokens_per_param is not None:
        table.add_row("tokens per parameter", f"{rep.tokens_per_param:.4g}", "")
    if rep.predicted_mia_f1 is not None:
        table.add_row(
            "predicted MIA F1",
            f"{rep.predicted_mia_f1:.4f}",
            "loss attack; 0.5 = chance",
        )
    if rep.inverse is not None:
        inv = rep.inverse
        t = inv["target_f1"]
        if "max_params" in inv:
            v = "any size" if inv["max_params"] is None else _fmt(inv["max_params"])
            table.add_row(f"largest model for F1 <= {t:g}", v, "parameters, for this dataset")
        if "min_n_sequences" in inv:
            table.add_row(
                f"smallest dataset for F1 <= {t:g}",
                _fmt(inv["min_n_sequences"]),
                f"sequences ({_fmt(inv['min_tokens'])} tokens), for this model",
            )
    console.print(table)
    console.print(f"[dim]{rep.law['note']}[/dim]")
    for w in rep.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def register(app: typer.Typer) -> None:
    @app.command("size", help=HELP)
    def size_cmd(
        params: float = typer.Option(None, "--params", "-p", help="Parameter count of the model."),
        n_sequences: float = typer.Option(
            None, "--n-sequences", "-n", help="Dataset size in sequences."
        ),
        tokens: float = typer.Option(
            None, "--tokens", help="Dataset size in tokens (instead of --n-sequences)."
        ),
        seq_len: int = typer.Option(
            64, "--seq-len", "-S", help="Tokens per sequence (the MIA law used 64)."
        ),
        vocab: int = typer.Option(
            None,
            "--vocab",
            "--vocab-size",
            "-V",
            help="Vocabulary size, for the uniform S*log2(V) bound.",
        ),
        bits_per_token: float = typer.Option(
            None, "--bits-per-token", help="Measured entropy in bits/token, instead of log2(V)."
        ),
        alpha: float = typer.Option(
            None, "--alpha", help="Capacity in bits per parameter (default 3.64)."
        ),
        target_f1: float = typer.Option(
            None,
            "--target-f1",
            help="Largest model / smallest dataset keeping predicted MIA F1 at or below this.",
        ),
        config: Path = typer.Option(
            None,
            "--config",
            "-c",
            help="A Hugging Face config.json (parameter count) or a memlens capacity.json (measured alpha).",
        ),  # fmt: skip
        as_json: options.Json = False,
        out: Path | None = typer.Option(
            None, "--out", help="Also write size.json and manifest.json to this directory."
        ),
    ) -> None:
        from memlens.laws import SizeConfig, run_size
        from memlens.store import to_json

        question = SizeConfig(
            params=params,
            n_sequences=n_sequences,
            tokens=tokens,
            seq_len=seq_len,
            vocab_size=vocab,
            bits_per_token=bits_per_token,
            alpha=alpha,
            target_f1=target_f1,
            config=str(config) if config is not None else None,
        )
        rep = run_size(question, out).summary
        if as_json:
            typer.echo(to_json(rep.to_dict()))
        else:
            _print(rep)
