"""``memlens audit``: memorization audit of a trained causal LM (thin wrapper over
:func:`memlens.audit.recipe.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from memlens.commands import options
from memlens.units import PUBLISHED_ALPHA

HELP = (
    "How many bits of each training sample did the model memorize beyond a reference model, "
    "can those samples be extracted by greedy decoding (versus held-out samples), and are they "
    "the rare ones? Writes audit.json, samples.parquet and plots."
)


def register(app: typer.Typer) -> None:
    @app.command("audit", help=HELP, no_args_is_help=True)
    def audit(
        model: options.Model,
        reference: options.Reference = None,
        adapter: options.Adapter = None,
        train: str = typer.Option(
            ...,
            "--train",
            help="Training texts: .txt (one per line), .jsonl, .csv, .parquet or a dataset.",
        ),
        heldout: str = typer.Option(
            ..., "--heldout", help="Held-out texts from the same distribution (same formats)."
        ),
        out: options.Out = None,
        text_column: options.TextColumn = "text",
        split: str | None = typer.Option(
            None,
            "--split",
            help="Dataset split of --train (and of --heldout unless --heldout-split).",
        ),
        heldout_split: str | None = typer.Option(
            None, "--heldout-split", help="Dataset split of --heldout."
        ),
        seq_len: options.SeqLen = None,
        prefix: int = typer.Option(32, "--prefix", help="Extraction prompt length in tokens."),
        suffix: int = typer.Option(32, "--suffix", help="Extraction target length in tokens."),
        window_stride: options.WindowStride = None,
        tokenizer: options.Tokenizer = None,
        reference_tokenizer: str | None = typer.Option(
            None, "--reference-tokenizer", help="Tokenizer of the reference."
        ),
        dtype: options.Dtype = "auto",
        device: options.Device = "auto",
        batch_size: options.BatchSize = 32,
        alpha: options.Alpha = PUBLISHED_ALPHA,
        top: int = typer.Option(10, "--top", min=0, help="Top memorized samples to list."),
        no_dedup: bool = typer.Option(False, "--no-dedup", help="Keep exact duplicates."),
    ) -> None:
        from memlens.audit.recipe import AuditConfig, run
        from memlens.commands._ui import progress_bars
        from memlens.config import build_config

        config = build_config(
            AuditConfig,
            model=model,
            reference=reference,
            adapter=adapter,
            train=train,
            heldout=heldout,
            tokenizer=tokenizer,
            reference_tokenizer=reference_tokenizer,
            text_column=text_column,
            split=split,
            heldout_split=heldout_split,
            seq_len=seq_len,
            dedup=not no_dedup,
            prefix=prefix,
            suffix=suffix,
            batch_size=batch_size,
            window_stride=window_stride,
            dtype=dtype,
            device=device,
            alpha=alpha,
            top_k=top,
        )
        with progress_bars() as progress:
            result = run(config, out, progress=progress)
        _print_summary(result.summary, result.out_dir, result.reused)


def _fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def _rho(v: float | None, why: str | None) -> str:
    """A Spearman rho, or why it is undefined (an audit.json written before ``why`` existed: -)."""
    if v is None and why:
        return f"undefined ({why})"
    return _fmt(v, "+.3f")


def _print_summary(s: Any, out_dir: Path | None, reused_stages: list[str] | None = None) -> None:
    """Print an :class:`~memlens.audit.summary.AuditSummary`."""
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    target = s.target["name"]
    if s.target.get("adapter"):
        target += f" + adapter {s.target['adapter']['path']} (merged)"
    table = Table(title=f"memorization audit of {target} (reference: {s.reference['name']})")
    table.add_column("split")
    for col in (
        "n",
        "dups removed",
        "mean bits",
        "total bits",
        "extraction rate",
        "match fraction",
    ):
        table.add_column(col, justify="right")
    for split, m in (("train", s.train), ("heldout", s.heldout)):
        table.add_row(
            split,
            str(m.n),
            str(m.n_duplicates_removed),
            _fmt(m.mean_unintended_bits, ".2f"),
            _fmt(m.total_unintended_bits, ".1f"),
            f"{_fmt(m.extraction_rate, '.3f')} of {m.n_extraction_eligible}",
            _fmt(m.mean_match_fraction, ".3f"),
        )
    console.print(table)
    cap = s.capacity
    console.print(
        f"extraction rate train - held-out: {_fmt(s.extraction_rate_difference, '+.3f')}; "
        f"train memorized {cap.train_total_unintended_bits:.0f} bits = "
        f"{cap.fraction_of_capacity:.2e} of capacity ({cap.alpha_bits_per_param} bits/param x {cap.n_params:,} params)"
    )
    tfidf_detail = s.tfidf_spearman_detail.get("positive_train") or {}
    dup_detail = s.duplicate_spearman_detail.model_dump()
    console.print(
        f"Spearman(unintended bits, TF-IDF) on positive train samples: "
        f"{_rho(s.tfidf_spearman, tfidf_detail.get('why'))}; "
        f"with duplicate count: {_rho(s.duplicate_spearman, dup_detail.get('why'))}"
    )
    if s.first_token == "uniform":
        console.print(
            "only one of the two tokenizers starts texts with a BOS: both models' first text "
            "token is charged log2 V of its own vocabulary."
        )
    if s.top_memorized:
        top = Table(title="top memorized training samples")
        top.add_column("bits", justify="right")
        top.add_column("count", justify="right")
        top.add_column("extracted")
        top.add_column("text")
        for r in s.top_memorized:
            text = r.text if len(r.text) <= 70 else r.text[:67] + "..."
            top.add_row(
                f"{r.unintended_bits:.1f}",
                str(r.count),
                "yes" if r.extracted else "no",
                text,
            )
        console.print(top)
    from memlens.cli import cli_message

    for w in s.warnings:
        console.print(f"[yellow]warning:[/yellow] {cli_message(w)}")
    if reused_stages:
        console.print(
            f"reused {len(reused_stages)} finished stage(s) from an earlier run: "
            + ", ".join(reused_stages)
        )
    if out_dir is not None:
        console.print(
            f"wrote {out_dir}/audit.json, samples.parquet, unintended_hist.png, unintended_vs_tfidf.png"
        )
