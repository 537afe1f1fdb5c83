"""``memlens sinks``: standard vs deduplicated vs MemSinks training at equal compute (thin wrapper
over :func:`memlens.sinks.recipe.run`)."""

from __future__ import annotations

from pathlib import Path

import typer

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
        out: Path | None = typer.Option(
            None,
            "--out",
            help="Run directory (default: memlens-runs/sinks-<time>); rerun to resume.",
        ),
        train: str | None = typer.Option(
            None,
            "--train",
            help="Your texts instead of the synthetic source: .txt (one per line), .jsonl, .csv, .parquet or a dataset.",
        ),
        tokenizer: str | None = typer.Option(
            None, "--tokenizer", help="Tokenizer directory for --train (default: UTF-8 bytes)."
        ),
        text_column: str = typer.Option(
            "text", "--text-column", help="Text field of --train tables."
        ),
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
        seed: int | None = typer.Option(
            None, "--seed", help="Seed for data, initialization and order."
        ),
        threads: int = typer.Option(
            1, "--threads", help="Torch CPU threads (tiny models: 1 is fastest on shared cores)."
        ),
        backend: str = typer.Option(
            "local", "--backend", help="local or ray (the arms as parallel Ray tasks)."
        ),
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="Join an existing Ray cluster (default: start a local one)."
        ),
        ray_cpus_per_cell: float = typer.Option(
            1, "--ray-cpus-per-cell", min=0, help="CPUs each Ray task asks for."
        ),
        ray_gpus_per_cell: float = typer.Option(
            0, "--ray-gpus-per-cell", min=0, help="GPUs each Ray task asks for (fractions allowed)."
        ),
    ) -> None:
        from memlens.sinks.recipe import get_preset, run, with_overrides

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
        result = _run_with_progress(
            run, cfg, out, threads, backend=backend, ray_address=ray_address,
            ray_cpus_per_cell=ray_cpus_per_cell, ray_gpus_per_cell=ray_gpus_per_cell,
        )  # fmt: skip
        _print_summary(result.summary, result.out_dir)


def _run_with_progress(run, cfg, out, threads, **scale):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(), transient=True,
    ) as bar:  # fmt: skip
        tasks: dict[str, int] = {}

        def progress(arm: str, done: int, total: int) -> None:
            if arm not in tasks:
                tasks[arm] = bar.add_task(f"training {arm}", total=total)
            if done % 10 == 0 or done == total:
                bar.update(tasks[arm], completed=done)

        return run(cfg, out, progress=progress, threads=threads, **scale)


def _print_summary(s: dict, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"MemSinks, preset {s['preset']}: losses in bits per token")
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
        r = s[name]
        e = r["extraction"]
        table.add_row(
            label,
            f"{r['val_loss']:.4f}",
            f"{r['repeated_loss']:.4f}",
            f"{r['mem_gap']:+.4f}",
            f"{e['repeated_rate']:.3f}",
            f"{e['heldout_rate']:.3f}",
        )
    console.print(table)
    c = s["claim"]
    floor = s["data"].get("heldout_source_floor_bits_per_token")
    if floor is not None:
        console.print(f"true source on the held-out sequences: {floor:.4f} bits per token")
    verdict = "holds" if c["holds"] else "does not hold"
    console.print(
        f"dropping sinks closes {c['gap_closed_fraction']:.1%} of standard's memorization gap; "
        f"val loss {c['val_loss_ratio_dropped_to_standard']:.4f}x standard's. Published claim "
        f"(>= 50% closed, val within 2%): {verdict} here."
    )
    loc = s["localization"]
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
                    f"{r['top_removed']:.3f}",
                    f"{r['random_removed']:.3f}",
                    f"{r['top_collateral']:+.4f}",
                    "-" if share is None else f"{share:.2f}",
                )
        console.print(lt)
    secs = s["compute"]["train_seconds"]
    console.print(
        "training seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in secs.items())
        + f"; this invocation {s['seconds_total_this_invocation']:.0f} s"
    )
    console.print(
        f"wrote {out_dir}/sinks.json, arms.csv, sinks_summary.png, sinks_curves.png, sinks_localization.png"
    )
