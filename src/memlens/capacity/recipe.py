"""The capacity lab: how many bits can a GPT of a given shape store?

Reproduces the experiment of Morris et al. 2025, "How much do language models memorize?"
(arXiv:2505.24832), §3-4, on uniform random tokens where every bit a model knows about its
training set is memorization:

1. For each model shape and each dataset size N, draw N sequences of S tokens uniformly from V.
   A sequence holds ``H(x) = S * log2 V`` bits (the first token is coded uniformly and can never
   count as memorized).
2. Train the model to saturation (all dataset sizes of one shape train together as one batched
   stack of models, see :mod:`memlens.training`).
3. Memorized bits of a run = ``sum_x max(0, H(x) - NLL_bits(x | model))``.
4. Capacity of a shape = max over N of memorized bits; α = least-squares slope of capacity on
   parameter count through the origin (plus each model's own ratio). Predicted memorization of a
   run: ``min(α * P, H(dataset))``.

Every capacity is a lower bound (gradient descent need not find the best model): each run
records whether it saturated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memlens.capacity.config import CapacityConfig, Shape
from memlens.capacity.fit import summarize
from memlens.capacity.outputs import write_outputs


def _cell_key(config: CapacityConfig, shape: Shape, sizes: list[int]) -> str:
    from memlens.store import config_hash

    ident = {
        "V": config.vocab_size,
        "S": config.seq_len,
        "shape": shape.model_dump(),
        "sizes": sizes,
        "train": config.train.model_dump(),
        "n_head": config.n_head_for(shape),
        "steps": config.steps_for_shape(shape),
        "precision": config.precision,
        "seed": config.seed,
    }
    return f"L{shape.n_layer}-d{shape.d_model}-{config_hash(ident)}"


def train_shape(
    config: CapacityConfig,
    shape: Shape,
    shape_index: int,
    device: str | None = None,
    progress: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Train one shape on all its dataset sizes at once; return the cell's result dict.

    ``progress`` (optional) receives ``(step, best memorized bits so far)`` after each evaluation.
    """
    import torch

    from memlens.data.synthetic import uniform_sequences
    from memlens.models.gpt import GPT
    from memlens.training import pick_device, train_to_saturation

    dev = pick_device(device or config.device)
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
    tcfg = config.train.to_train_config(
        max_steps=config.steps_for_shape(shape), precision=config.precision
    )
    h_seq = config.bits_per_sequence()
    res = train_to_saturation(
        model,
        data,
        sizes,
        tcfg,
        entropy_bits=h_seq,
        first_token_bits=math.log2(config.vocab_size),
        seed=base_seed,
        device=dev,
        progress=(lambda step, totals: progress((step, max(totals)))) if progress else None,
        time_budget_s=config.time_budget_s,
    )
    runs = []
    for k, n in enumerate(sizes):
        c = res.curves[k]
        runs.append(
            {
                "n_sequences": n,
                "dataset_bits": n * h_seq,
                "memorized_bits": res.final_memorized_bits[k],
                "steps": res.steps,
                "saturated": bool(res.saturated[k]),
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
        "seconds": res.seconds,
    }


def run(
    config: CapacityConfig,
    out: str | Path,
    *,
    console: Any | None = None,
    backend: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    ray_cpus_per_cell: float = 1,
    ray_gpus_per_cell: float = 0,
) -> dict[str, Any]:
    """Run (or resume) a capacity sweep into ``out`` and return ``capacity.json``'s content.

    Each shape is one cell (all its dataset sizes train together); cells run on ``backend``
    (``local``: one worker process per core by default; ``ray``: one Ray task per cell, see
    :mod:`memlens.scale`; each task asks Ray for ``ray_cpus_per_cell`` CPUs and
    ``ray_gpus_per_cell`` GPUs, fractions allowed). Finished cells are stored at once and reused when the same command is
    rerun with the same ``out``; a finished sweep returns at once.
    """
    from memlens.scale import check_backend, run_cells
    from memlens.store import RunDir

    check_backend(backend, ray_address)
    rd = RunDir(out, "capacity", config.model_dump(), config.seed)
    previous_wall = 0.0
    old = rd.load_cell("_wall")
    if old:
        previous_wall = float(old.get("wall_seconds", 0.0))
    rd.write_manifest(status="running")
    start = time.perf_counter()
    params = [config.gpt_config(s).n_params for s in config.shapes]
    keys = [
        _cell_key(config, s, config.sizes_for(p))
        for s, p in zip(config.shapes, params, strict=True)
    ]
    results: list[dict[str, Any] | None] = [rd.load_cell(k) for k in keys]
    reused = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]
    if console is not None and reused:
        console.print(f"resuming: {reused} of {len(keys)} shapes already finished in {rd.path}")

    def save(j: int, r: dict[str, Any]) -> None:
        i = todo[j]
        rd.save_cell(keys[i], r)
        results[i] = r
        rd.save_cell("_wall", {"wall_seconds": previous_wall + time.perf_counter() - start})

    cells = [(train_shape, (config, config.shapes[i], i)) for i in todo]
    if todo:
        with _progress(
            console, config, [config.shapes[i] for i in todo], [params[i] for i in todo]
        ) as on_progress:
            run_cells(
                cells,
                backend=backend,
                workers=workers,
                on_result=save,
                on_progress=on_progress,
                ray_address=ray_address,
                ray_num_cpus=ray_cpus_per_cell,
                ray_num_gpus=ray_gpus_per_cell,
            )

    finished = [r for r in results if r is not None]
    wall = previous_wall + time.perf_counter() - start
    rd.save_cell("_wall", {"wall_seconds": wall})
    summary = summarize(config, finished, wall_seconds=wall)
    summary["reused_cells"] = reused
    summary["backend"] = backend
    write_outputs(rd, summary, finished)
    rd.write_manifest(status="finished", reused_cells=reused, cells=len(keys), backend=backend)
    return summary


class _progress:
    """Rich progress bars, one per shape, fed by progress reports from the cells."""

    def __init__(
        self, console: Any | None, config: CapacityConfig, shapes: list[Shape], params: list[int]
    ):
        self.console, self.config, self.shapes, self.params = console, config, shapes, params
        self.prog = None

    def __enter__(self) -> Callable[[int, Any], None]:
        if self.console is None:
            return lambda i, payload: None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.prog = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("step {task.completed:>6.0f}"),
            TextColumn("{task.fields[bpp]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.prog.__enter__()
        self.tasks = [
            self.prog.add_task(
                f"[bold]L={s.n_layer} d={s.d_model} h={self.config.n_head_for(s)}[/] ({p:,} params)",
                total=self.config.steps_for_shape(s),
                bpp="",
            )
            for s, p in zip(self.shapes, self.params, strict=True)
        ]

        def update(i: int, payload: Any) -> None:
            step, best = payload
            self.prog.update(
                self.tasks[i], completed=step, bpp=f"best {best / self.params[i]:.2f} bits/param"
            )

        return update

    def __exit__(self, *exc: Any) -> None:
        if self.prog is not None:
            self.prog.__exit__(*exc)
