"""``memlens capacity``: how many bits per parameter can a GPT of this shape store?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from memlens.commands import options


def register(app: typer.Typer) -> None:
    app.command(name="capacity")(capacity)


def capacity(
    preset: options.Preset = "quick",
    config: options.ConfigFile = None,
    out: options.Out = None,
    seed: options.Seed = None,
    precision: str | None = typer.Option(None, "--precision", help="fp32 or bf16."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    vocab: int | None = typer.Option(None, "--vocab", "--vocab-size", help="Vocabulary size V."),
    seq_len: int | None = typer.Option(None, "--seq-len", help="Sequence length S."),
    n_sequences: str | None = typer.Option(
        None,
        "--n-sequences",
        help="Comma-separated dataset sizes N (instead of capacity multiples).",
    ),
    max_steps: int | None = typer.Option(
        None, "--max-steps", help="Step budget for every shape (replaces per-shape budgets)."
    ),
    head_dim: int | None = typer.Option(
        None, "--head-dim", help="Attention head size (n_head = d_model / head_dim); 0: auto."
    ),
    time_budget_s: float | None = typer.Option(
        None, "--time-budget-s", help="Wall-clock cap per shape, in seconds."
    ),
    threads: options.Threads = 0,
    backend: options.Backend = "local",
    workers: options.Workers = None,
    ray_address: options.RayAddress = None,
    ray_cpus_per_cell: options.RayCpusPerCell = 1,
    ray_gpus_per_cell: options.RayGpusPerCell = 0,
    json_out: options.Json = False,
) -> None:
    """Train small GPTs on uniform random tokens to saturation and measure bits per parameter.

    Memorized bits per run = Σ max(0, H(x) − NLL_bits(x)); capacity = max over dataset sizes;
    α = least-squares slope of capacity on parameters (Morris et al. 2025, arXiv:2505.24832).
    Presets: smoke (about a minute), quick (default, 7-15 min on two CPU cores), paper (GPU).
    """
    from memlens import capacity as cap
    from memlens.commands._ui import make_console, progress_bars
    from memlens.errors import UserError
    from memlens.store import to_json

    options.set_threads(threads)
    sizes = None
    if n_sequences is not None:
        try:
            sizes = [int(x) for x in n_sequences.split(",") if x.strip()]
        except ValueError:
            raise UserError(
                f"`n_sequences` must be comma-separated integers, got {n_sequences!r}."
            ) from None
    cfg = cap.load_config(
        preset, config, seed=seed, precision=precision, device=device, vocab_size=vocab,
        seq_len=seq_len, max_steps=max_steps, head_dim=head_dim, n_sequences=sizes,
        time_budget_s=time_budget_s,
    )  # fmt: skip
    console = make_console(stderr=json_out)
    scale = options.scale_kwargs(
        backend, workers, ray_address, ray_cpus_per_cell, ray_gpus_per_cell
    )
    with progress_bars(console, enabled=not json_out, transient=False) as progress:
        result = cap.run(cfg, out, progress=progress, **scale)
    if json_out:
        typer.echo(to_json(result.summary.to_json()))
        return
    print_summary(console, result.summary, result.out_dir)


def print_summary(console: Any, s: Any, out_dir: Path | None) -> None:
    """The table of shapes, α beside the published like-for-like figures, time and where."""
    from rich.table import Table

    t = Table(title=f"Capacity (V={s.vocab_size}, S={s.seq_len}, {s.precision})")
    for col in (
        "L",
        "d",
        "heads",
        "params",
        "N per run",
        "capacity bits",
        "bits/param",
        "saturated",
    ):
        t.add_column(col, justify="right")
    for m in s.models:
        t.add_row(
            str(m.n_layer),
            str(m.d_model),
            str(m.n_head),
            f"{m.params:,}",
            "/".join(str(r.n_sequences) for r in m.runs),
            f"{m.capacity_bits:,.0f}",
            f"{m.bits_per_param:.2f}",
            "yes" if m.saturated else "[red]no[/]",
        )
    console.print(t)
    p = s.published_alpha
    console.print(
        f"α = [bold]{s.alpha_bits_per_param:.2f}[/] bits/param ({s.alpha_method}; "
        + (f"± {s.alpha_se:.2f} s.e.)" if s.alpha_se is not None else "one shape: no s.e.)")
        + f"; mean of per-model ratios {s.alpha_mean_per_model:.2f}. "
        f"Published {s.precision}: slope {p['slope']:.2f}, mean of per-model ratios "
        f"{p['mean_per_model']:.2f}."
    )
    if s.stopped_by_time_budget:
        console.print(
            f"[yellow]{s.stopped_by_time_budget} run(s) stopped by the time budget "
            f"({s.time_budget_s:g} s per shape): not saturated, so their bits are lower bounds.[/]"
        )
    shapes = "shape" if s.reused_cells == 1 else "shapes"
    reused = f" ({s.reused_cells} {shapes} reused from an earlier run)" if s.reused_cells else ""
    console.print(f"training time {s.wall_seconds:.0f} s{reused}; results in {out_dir}")
