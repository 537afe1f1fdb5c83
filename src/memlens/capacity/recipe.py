"""The capacity lab: how many bits can a GPT of a given shape store?

Reproduces the experiment of Morris et al. 2025, "How much do language models memorize?"
(arXiv:2505.24832), §3-4, on uniform random tokens where every bit a model knows about its
training set is memorization:

1. For each model shape and each dataset size N, draw N sequences of S tokens uniformly from V.
   A sequence holds ``H(x) = S * log2 V`` bits, of which at most ``(S - 1) * log2 V`` can be
   memorized (the first token is coded uniformly and can never count as memorized).
2. Train the model to saturation (all dataset sizes of one shape train together as one batched
   stack of models, :func:`memlens.training.train_to_saturation`).
3. Memorized bits of a run = ``sum_x max(0, H(x) - NLL_bits(x | model))``.
4. Capacity of a shape = max over N of memorized bits; α = least-squares slope of capacity on
   parameter count through the origin (plus each model's own ratio). Predicted memorization of a
   run: ``min(α * P, N * (S - 1) * log2 V)``.

Every capacity is a lower bound (gradient descent need not find the best model): each run
records whether it saturated, and whether the time budget stopped it.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from memlens.capacity.config import CapacityConfig, Shape
from memlens.capacity.fit import summarize
from memlens.capacity.outputs import write_outputs
from memlens.capacity.summary import CapacitySummary
from memlens.config import require_config
from memlens.progress import ProgressFn, emit
from memlens.results import RunResult


def _cell_key(config: CapacityConfig, shape: Shape, sizes: list[int]) -> str:
    from memlens.store import config_hash

    ident = {
        "V": config.vocab_size,
        "S": config.seq_len,
        "shape": shape.model_dump(),
        "sizes": sizes,
        "train": config.train_config(shape).model_dump(),
        "n_head": config.n_head_for(shape),
        "time_budget_s": config.time_budget_s,
        "seed": config.seed,
    }
    return f"L{shape.n_layer}-d{shape.d_model}-{config_hash(ident)}"


def shape_label(config: CapacityConfig, shape: Shape) -> str:
    """The progress label of a shape, e.g. ``L=1 d=16 h=4 (12,528 params)``."""
    params = config.gpt_config(shape).n_params
    return f"L={shape.n_layer} d={shape.d_model} h={config.n_head_for(shape)} ({params:,} params)"


def train_shape(
    config: CapacityConfig,
    shape: Shape,
    shape_index: int,
    *,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Train one shape on all its dataset sizes at once; return the cell's result (JSON-ready).

    ``progress`` receives a :class:`~memlens.progress.ProgressEvent` after every evaluation
    (steps done; note: the best memorized bits per parameter so far).
    """
    import torch

    from memlens.data.synthetic import uniform_sequences
    from memlens.models.gpt import GPT
    from memlens.training import pick_device, train_to_saturation

    dev = pick_device(config.device)
    gcfg = config.gpt_config(shape)
    P = gcfg.n_params
    sizes = config.sizes_for(P)
    K = len(sizes)
    base_seed = config.seed * 1_000_003 + shape_index * 1009
    data = torch.stack(
        [
            torch.nn.functional.pad(
                uniform_sequences(config.vocab_size, config.seq_len, n, seed=base_seed + k),
                (0, 0, 0, max(sizes) - n),
            )
            for k, n in enumerate(sizes)
        ]
    )
    gen = torch.Generator().manual_seed(base_seed)
    model = GPT(gcfg, n_models=K, generator=gen).to(dev)
    res = train_to_saturation(
        model,
        data,
        sizes,
        config.train_config(shape),
        entropy_bits=config.bits_per_sequence(),
        first_token_bits=math.log2(config.vocab_size),
        seed=base_seed,
        device=dev,
        progress=progress,
        task=shape_label(config, shape),
        time_budget_s=config.time_budget_s,
    )
    runs = []
    for k, n in enumerate(sizes):
        c = res.curves[k]
        runs.append(
            {
                "n_sequences": n,
                "dataset_bits": n * config.bits_per_sequence(),
                "memorizable_bits": n * config.memorizable_bits_per_sequence(),
                "memorized_bits": res.final_memorized_bits[k],
                "steps": res.steps,
                "saturated": bool(res.saturated[k]),
                "stopped_by": res.stopped_by,
                "seconds": res.seconds,
                "curve": {
                    "step": c.steps,
                    "seconds": c.seconds,
                    "memorized_bits": c.memorized_bits,
                    "nll_bits_per_token": c.nll_bits_per_token,
                },
            }
        )
    best = max(range(K), key=lambda k: runs[k]["memorized_bits"])
    return {
        "n_layer": shape.n_layer,
        "d_model": shape.d_model,
        "n_head": gcfg.n_head,
        "params": P,
        "capacity_bits": runs[best]["memorized_bits"],
        "bits_per_param": runs[best]["memorized_bits"] / P,
        # the capacity is the max over N; it is saturated when every run of the shape is
        "saturated": all(r["saturated"] for r in runs),
        "runs": runs,
    }


def run(
    config: CapacityConfig,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    ray_num_cpus: float = 1,
    ray_num_gpus: float = 0,
) -> RunResult[CapacitySummary]:
    """Run (or resume) a capacity sweep into ``out`` and return its :class:`CapacitySummary`.

    Each shape is one cell (all its dataset sizes train together); cells run on ``backend``
    (``local``: ``workers`` processes, one per CPU core by default; ``ray``: one Ray task per
    cell, each asking for ``ray_num_cpus`` CPUs and ``ray_num_gpus`` GPUs, fractions allowed; see
    :mod:`memlens.scale`). Finished cells are stored at once and reused when the run is repeated
    with the same ``out``; a finished sweep returns at once. ``out=None`` writes to a fresh
    timestamped directory. Writes ``manifest.json``, ``capacity.json``, ``runs.csv``,
    ``curves.csv`` and two plots.
    """
    require_config(config, CapacityConfig)
    from memlens.scale import check_backend, run_stored_cells
    from memlens.store import RunDir, default_out_dir

    check_backend(backend, ray_address, config.device)
    rd = RunDir(out or default_out_dir("capacity"), "capacity", config, config.seed)
    old = rd.load_cell("_wall")
    previous_wall = float(old.get("wall_seconds", 0.0)) if old else 0.0
    rd.write_manifest(status="running")
    start = time.perf_counter()
    keys = [
        _cell_key(config, s, config.sizes_for(config.gpt_config(s).n_params)) for s in config.shapes
    ]
    cells = [
        (k, train_shape, (config, s, i))
        for i, (k, s) in enumerate(zip(keys, config.shapes, strict=True))
    ]

    def save(key: str, result: dict[str, Any]) -> None:
        rd.save_cell(key, result)
        rd.save_cell("_wall", {"wall_seconds": previous_wall + time.perf_counter() - start})

    for key, shape in zip(keys, config.shapes, strict=True):
        if rd.load_cell(key) is None:  # one bar per shape to train, in the sweep's order
            emit(progress, shape_label(config, shape), 0, config.steps_for_shape(shape))
    done = run_stored_cells(
        rd, cells, save=save, progress=progress, backend=backend, workers=workers,
        ray_address=ray_address, ray_num_cpus=ray_num_cpus, ray_num_gpus=ray_num_gpus,
    )  # fmt: skip
    wall = previous_wall + time.perf_counter() - start
    rd.save_cell("_wall", {"wall_seconds": wall})
    summary = summarize(
        config, done.results, wall_seconds=wall, reused_cells=len(done.reused), backend=backend
    )
    write_outputs(rd, summary, done.results)
    rd.write_manifest(
        status="finished", reused_cells=len(done.reused), cells=len(keys), backend=backend
    )
    return RunResult(summary, rd.path, done.reused)
