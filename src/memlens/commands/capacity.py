"""``memlens capacity``: how many bits per parameter can a GPT of this shape store?"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(name="capacity")(capacity)


def capacity(
    preset: str = typer.Option(
        "quick", help="smoke (<60 s), quick (default, <10 min), paper (GPU)."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="TOML or YAML file overriding the preset."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Run directory (default: a timestamped one)."
    ),
    seed: int | None = typer.Option(None, help="Seed for data, initialization and batches."),
    precision: str | None = typer.Option(None, help="fp32 or bf16."),
    device: str | None = typer.Option(None, help="auto, cpu, cuda or mps."),
    vocab: int | None = typer.Option(None, "--vocab", help="Vocabulary size V."),
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
    backend: str = typer.Option("local", help="local or ray."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Local worker processes (default: one per CPU core)."
    ),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Join an existing Ray cluster."
    ),
    ray_cpus_per_cell: float = typer.Option(
        1, "--ray-cpus-per-cell", min=0, help="CPUs each Ray task (one shape) asks for."
    ),
    ray_gpus_per_cell: float = typer.Option(
        0,
        "--ray-gpus-per-cell",
        min=0,
        help="GPUs each Ray task asks for (0.25: four shapes per GPU).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print capacity.json to stdout."),
) -> None:
    """Train small GPTs on uniform random tokens to saturation and measure bits per parameter.

    Memorized bits per run = Σ max(0, H(x) − NLL_bits(x)); capacity = max over dataset sizes;
    α = least-squares slope of capacity on parameters (Morris et al. 2025, arXiv:2505.24832).
    """
    from rich.console import Console

    from memlens import capacity as cap
    from memlens.errors import UserError
    from memlens.store import default_out_dir, to_json

    if backend not in ("local", "ray"):
        raise UserError(f"unknown backend {backend!r}; choose local or ray.")
    sizes = None
    if n_sequences is not None:
        try:
            sizes = [int(x) for x in n_sequences.split(",") if x.strip()]
        except ValueError:
            raise UserError(
                f"--n-sequences must be comma-separated integers, got {n_sequences!r}."
            ) from None
    overrides = {
        "seed": seed,
        "precision": precision,
        "device": device,
        "vocab_size": vocab,
        "seq_len": seq_len,
        "max_steps": max_steps,
        "head_dim": head_dim,
    }
    if sizes is not None:
        overrides["n_sequences"] = sizes
    if preset is None and config is None:
        preset = "quick"
    cfg = cap.load_config(preset, config, **overrides)
    console = Console(stderr=json_out)
    out_dir = out or default_out_dir("capacity")
    result = cap.run(
        cfg, out_dir, console=console, backend=backend, workers=workers, ray_address=ray_address,
        ray_cpus_per_cell=ray_cpus_per_cell, ray_gpus_per_cell=ray_gpus_per_cell,
    )  # fmt: skip
    if json_out:
        typer.echo(to_json(result))
        return
    print_summary(console, result, out_dir)


def print_summary(console, result: dict, out_dir: Path) -> None:
    from rich.table import Table

    t = Table(
        title=f"Capacity (V={result['vocab_size']}, S={result['seq_len']}, {result['precision']})"
    )
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
    for m in result["models"]:
        t.add_row(
            str(m["n_layer"]),
            str(m["d_model"]),
            str(m.get("n_head", "")),
            f"{m['params']:,}",
            "/".join(str(r["n_sequences"]) for r in m["runs"]),
            f"{m['capacity_bits']:,.0f}",
            f"{m['bits_per_param']:.2f}",
            "yes" if m["saturated"] else "[red]no[/]",
        )
    console.print(t)
    console.print(
        f"α = [bold]{result['alpha_bits_per_param']:.2f}[/] bits/param ({result['alpha_method']}; "
        f"± {result['alpha_se']:.2f} s.e.); mean of per-model ratios {result['alpha_mean_per_model']:.2f}. "
        f"Published: 3.64 headline, 3.83 fp32 mean."
    )
    console.print(
        f"training time {result['wall_seconds']:.0f} s"
        + (
            f" ({result['reused_cells']} shapes reused from an earlier run)"
            if result.get("reused_cells")
            else ""
        )
        + f"; results in {out_dir}"
    )
