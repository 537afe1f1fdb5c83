"""Option groups shared by the commands: one spelling, one help text, one default each.

Each is an ``Annotated`` type for a typer parameter, e.g.::

    def capacity(out: options.Out = None, seed: options.Seed = None, **scale: ...) -> None:

Groups: run directory and output (:data:`Out`, :data:`Json`, :data:`Seed`, :data:`Threads`),
models (:data:`Model`, :data:`Reference`, :data:`References`, :data:`Adapter`, :data:`Tokenizer`, :data:`Dtype`,
:data:`Device`, :data:`BatchSize`, :data:`WindowStride`), texts (:data:`TextColumn`,
:data:`Split`, :data:`SeqLen`) and scale-out (:data:`Backend`, :data:`Workers`,
:data:`RayAddress`, :data:`RayCpusPerCell`, :data:`RayGpusPerCell`; see :func:`scale_kwargs`).
:func:`fpr_levels` reads ``--fpr`` for the commands that report TPR at low FPR.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memlens.errors import UserError
from memlens.units import PUBLISHED_ALPHA

# -- run directory and output ------------------------------------------------------------------
Out = Annotated[
    Path | None,
    typer.Option("--out", help="Run directory (default: a timestamped one under memlens-runs/)."),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result JSON to stdout.")]
Seed = Annotated[
    int | None, typer.Option("--seed", help="Seed for data, initialization and batches.")
]
Threads = Annotated[
    int,
    typer.Option(
        "--threads",
        min=0,
        help="Torch CPU threads (0: torch's default; 1 is fastest for tiny models).",
    ),
]
Preset = Annotated[str, typer.Option("--preset", help="Built-in settings to start from.")]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config", help="TOML or YAML file of settings (over the preset, if any; flags win)."
    ),
]

# -- models ---------------------------------------------------------------------------------------
Model = Annotated[
    str,
    typer.Option(
        "--model",
        help="Target model: a directory, a .gguf file, a fetched name (smollm2-135m), a memlens GPT "
        "checkpoint or a hub name.",
    ),
]
Reference = Annotated[
    str | None,
    typer.Option(
        "--reference",
        help="Reference model (same family, trained on a superset, or the best available).",
    ),
]
References = Annotated[
    list[str] | None,
    typer.Option(
        "--reference",
        "--references",
        help="Reference model (same family, trained on a superset, or the best available); repeatable.",
    ),
]
Adapter = Annotated[
    str | None,
    typer.Option(
        "--adapter",
        help="PEFT/LoRA adapter directory over --model, merged into the weights at load "
        "(--reference then defaults to the bare --model).",
    ),
]
Tokenizer = Annotated[
    str | None,
    typer.Option("--tokenizer", help="Tokenizer of the target (default: its directory)."),
]
Dtype = Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16.")]
Device = Annotated[
    str,
    typer.Option(
        "--device",
        help="auto, cpu, cuda, cuda:N, mps, or map (a model split across devices by accelerate).",
    ),
]
TrainDevice = Annotated[
    str, typer.Option("--device", help="Where models train: auto, cpu, cuda, cuda:N or mps.")
]
BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        help=(
            "Most sequences per forward pass (with a Hugging Face model a pass also holds at most "
            "2^25 / vocabulary padded tokens)."
        ),
    ),
]
WindowStride = Annotated[
    int | None,
    typer.Option(
        "--window-stride",
        help="Score texts longer than the context with a sliding window of this stride.",
    ),
]
Alpha = Annotated[
    float,
    typer.Option(
        "--alpha",
        help=f"Capacity in bits per parameter (default {PUBLISHED_ALPHA}, Morris et al. 2025).",
    ),
]

# -- texts ----------------------------------------------------------------------------------------
TextColumn = Annotated[
    str, typer.Option("--text-column", help="Text field of .jsonl/.csv/.parquet/datasets.")
]
Split = Annotated[
    str | None, typer.Option("--split", help="Dataset split (Hugging Face datasets).")
]
SeqLen = Annotated[
    int | None, typer.Option("--seq-len", help="Cut texts into pieces of this many tokens.")
]

# -- scale-out ------------------------------------------------------------------------------------
Backend = Annotated[str, typer.Option("--backend", help="local or ray.")]
Workers = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Local worker processes (default: one per CPU core)."),
]
RayAddress = Annotated[
    str | None, typer.Option("--ray-address", help="Join an existing Ray cluster (host:port).")
]
RayCpusPerCell = Annotated[
    float, typer.Option("--ray-cpus-per-cell", min=0, help="CPUs each Ray task asks for.")
]
RayGpusPerCell = Annotated[
    float,
    typer.Option(
        "--ray-gpus-per-cell", min=0, help="GPUs each Ray task asks for (0.25: four per GPU)."
    ),
]


def scale_kwargs(
    backend: str,
    workers: int | None,
    ray_address: str | None,
    ray_cpus_per_cell: float,
    ray_gpus_per_cell: float,
) -> dict[str, Any]:
    """The scale-out options as the keyword arguments of :func:`memlens.scale.run_cells`."""
    return {
        "backend": backend,
        "workers": workers,
        "ray_address": ray_address,
        "ray_num_cpus": ray_cpus_per_cell,
        "ray_num_gpus": ray_gpus_per_cell,
    }


def fpr_levels(values: list[str] | None) -> list[float] | None:
    """``--fpr`` values (repeated and/or comma-separated) as sorted distinct floats; ``None``
    when none were given (the config's default). Which levels are allowed is the config's rule
    (the MIA: strictly between 0 and 1; shadow attacks: 0 too)."""
    if not values:
        return None
    out = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(float(part))
            except ValueError:
                raise UserError(
                    f"--fpr {part!r} is not a number; use e.g. --fpr 0.001,0.01."
                ) from None
    return sorted(set(out))


def set_threads(n: int) -> None:
    """Set torch's CPU threads (``0`` keeps torch's default)."""
    if n > 0:
        from memlens.training.devices import set_threads as _set

        _set(n)
