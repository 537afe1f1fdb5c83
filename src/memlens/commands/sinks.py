"""``memlens sinks``: standard vs deduplicated vs MemSinks training at equal compute (thin wrapper
over :func:`memlens.sinks.run`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from memlens.commands import options

HELP = (
    "Can memorization of repeated sequences be trained into removable MLP units? Trains standard, "
    "deduplicated and MemSinks models (Ghosal et al. 2025) at equal compute on repeated + unrepeated "
    "sequences, reports validation loss, memorization gap and extraction (bits per token) with sinks "
    "kept and dropped, and localizes memorization by top-k vs random-k neuron ablation. Writes "
    "sinks.json, arms.csv and plots."
)


def register(app: typer.Typer) -> None:
    @app.command("sinks", help=HELP)
    def sinks(
        preset: str = typer.Option("quick", "--preset", help="smoke (seconds) or quick (minutes)."),
        out: options.Out = None,
        train: str | None = typer.Option(
            None,
            "--train",
            "--train-path",
            help="Your texts instead of the synthetic source: .txt (one per line), .jsonl, .csv, .parquet or a dataset.",
        ),
        tokenizer: str | None = typer.Option(
            None, "--tokenizer", help="Tokenizer directory for --train (default: UTF-8 bytes)."
        ),
        text_column: options.TextColumn = "text",
        n_repeated: int | None = typer.Option(
            None, "--n-repeated", help="Sequences that are repeated."
        ),
        repetitions: int | None = typer.Option(
            None, "--repetitions", help="Times each one appears."
        ),
        steps: int | None = typer.Option(
            None, "--steps", help="Optimizer steps per arm (synthetic data)."
        ),
        batch_size: int | None = typer.Option(None, "--batch-size", help="Rows per step."),
        lr: float | None = typer.Option(None, "--lr", help="Peak learning rate (AdamW, cosine)."),
        seq_len: int | None = typer.Option(None, "--seq-len", help="Tokens per sequence / row."),
        d_model: int | None = typer.Option(
            None, "--d-model", help="Model width (MLP width is 4x)."
        ),
        n_layer: int | None = typer.Option(None, "--n-layer", help="Transformer blocks."),
        p_gen: float | None = typer.Option(
            None, "--p-gen", help="Fraction of MLP units that are general (0.7)."
        ),
        p_mem: float | None = typer.Option(
            None, "--p-mem", help="Fraction of the sink pool on per sequence (0.3)."
        ),
        drop_scale: float | None = typer.Option(
            None,
            "--drop-scale",
            help="Factor on general units with sinks dropped (default (p_gen+p_mem)/p_gen).",
        ),
        prefix: int | None = typer.Option(
            None, "--prefix", help="Extraction prompt length (default half a sequence)."
        ),
        seed: options.Seed = None,
        threads: options.Threads = 1,
        backend: options.Backend = "local",
        workers: options.Workers = None,
        ray_address: options.RayAddress = None,
        ray_cpus_per_cell: options.RayCpusPerCell = 1,
        ray_gpus_per_cell: options.RayGpusPerCell = 0,
    ) -> None:
        from memlens.commands._ui import progress_bars
        from memlens.sinks import get_preset, run, with_overrides

        options.set_threads(threads)
        cfg = with_overrides(
            get_preset(preset),
            train_path=train,
            tokenizer=tokenizer,
            text_column=text_column if train else None,
            n_repeated=n_repeated,
            repetitions=repetitions,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seq_len=seq_len,
            d_model=d_model,
            n_layer=n_layer,
            p_gen=p_gen,
            p_mem=p_mem,
            drop_scale=drop_scale,
            extraction_prefix=prefix,
            seed=seed,
        )
        scale = options.scale_kwargs(
            backend, workers, ray_address, ray_cpus_per_cell, ray_gpus_per_cell
        )
        with progress_bars() as progress:
            result = run(cfg, out, progress=progress, **scale)
        _print_summary(result.summary, result.out_dir, result.reused)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _finite(v: float | None) -> float | None:
    """``None`` for a missing or NaN rate (a cell stored by an earlier memlens kept NaN)."""
    return None if v is None or v != v else v


def _print_summary(s: Any, out_dir: Path | None, reused: list[str] | None = None) -> None:
    """Print a :class:`memlens.sinks.SinksSummary`."""
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    table = Table(title=f"MemSinks, preset {s.preset}: losses in bits per token")
    table.add_column("model", no_wrap=True)
    for col in ("val loss", "repeated", "mem gap", "extracted", "held-out"):
        table.add_column(col, justify="right")
    labels = {
        "standard": "standard",
        "dedup": "dedup",
        "memsinks": "MemSinks, own mask",
        "memsinks_sinks_scaled": "  sinks x p_mem",
        "memsinks_sinks_dropped": "  sinks dropped",
        "memsinks_sinks_dropped_unscaled": "  dropped, no rescale",
    }
    for name, label in labels.items():
        r = getattr(s, name)
        e = r.extraction
        table.add_row(
            label,
            f"{r.val_loss:.4f}",
            f"{r.repeated_loss:.4f}",
            f"{r.mem_gap:+.4f}",
            _fmt(_finite(e["repeated_rate"])),
            _fmt(_finite(e["heldout_rate"])),
        )
    console.print(table)
    e = s.standard.extraction
    if _finite(e["repeated_rate"]) is None or _finite(e["heldout_rate"]) is None:
        console.print(
            f"extracted, held-out: '-' where no document is long enough for the extraction "
            f"prefix of {e['prefix_tokens']} tokens and 4 more ({e['n_repeated_eligible']} "
            f"repeated, {e['n_heldout_eligible']} held-out documents are); lower --prefix."
        )
    c = s.claim
    floor = s.data.get("heldout_source_floor_bits_per_token")
    if floor is not None:
        console.print(f"true source on the held-out sequences: {floor:.4f} bits per token")
    if c.get("gap_closed_fraction") is None:  # no gap: say why and what to change
        console.print(
            f"standard training shows no memorization gap here ({s.standard.mem_gap:+.4f} bits "
            "per token: the repeated sequences are not predicted better than held-out ones), so "
            "there is nothing for the sinks to remove and the published claim cannot be tested; "
            "train longer (--steps) or repeat the sequences more (--repetitions)."
        )
    else:
        verdict = "holds" if c["holds"] else "does not hold"
        console.print(
            f"dropping sinks closes {c['gap_closed_fraction']:.1%} of standard's memorization gap; "
            f"val loss {c['val_loss_ratio_dropped_to_standard']:.4f}x standard's. Published claim "
            f"(>= 50% closed, val within 2%): {verdict} here."
        )
    loc = s.localization
    if "standard" in loc:
        lt = Table(
            title="localization: share of the memorization gap removed by ablating k MLP units"
        )
        lt.add_column("model", no_wrap=True)
        for col in ("k", "top-k", "random k", "val cost top-k", "sinks in top-k"):
            lt.add_column(col, justify="right")
        for arm in ("standard", "memsinks"):
            for r in loc[arm]["ks"]:
                share = r["top_share_sink_units"]
                lt.add_row(
                    arm,
                    str(r["k"]),
                    _fmt(r["top_removed"]),
                    _fmt(r["random_removed"]),
                    f"{r['top_collateral']:+.4f}",
                    "-" if share is None else f"{share:.2f}",
                )
        console.print(lt)
        gaps = ", ".join(f"{arm} {loc[arm]['mean_gap']:.4f}" for arm in ("standard", "memsinks"))
        console.print(
            f"memorization gap before ablation (held-out minus repeated loss, bits per token): "
            f"{gaps}; a share above 1 means the ablated sequences are predicted worse than "
            "held-out ones, and a gap near 0 makes the shares unstable."
        )
        no_gap = [arm for arm in ("standard", "memsinks") if loc[arm]["mean_gap"] <= 0]
        if no_gap:
            console.print(
                f"no positive gap to remove for {' and '.join(no_gap)}: the shares there are "
                "undefined (-)."
            )
    secs = s.compute["train_seconds"]
    console.print(
        "training seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in secs.items())
        + f"; this invocation {s.seconds_total_this_invocation:.0f} s"
    )
    if reused:  # the training seconds above are those of the earlier run
        console.print(
            f"reused {len(reused)} trained arm(s) from an earlier run in this directory: "
            + ", ".join(reused)
        )
    console.print(
        f"wrote {out_dir}/sinks.json, arms.csv, sinks_summary.png, sinks_curves.png, sinks_localization.png"
    )
