"""K shadow GPTs as batched stacks: the training cell of ``memlens shadow train``.

The K models are split into stacks of ``stack_size`` models; each stack is one
:class:`~memlens.models.gpt.GPT` holding its models side by side (ids ``[K_s, B, T]``), trained in
one pass by the project's training loop :func:`memlens.training.train_to_saturation` (Adam, warm-up,
linear decay, fused output layer), every model on its own half of the pool. A stack is one cell
of :func:`memlens.scale.run_cells`: it runs in this process, in a worker process, or as a Ray
task, and returns plain arrays so the driver writes every file (a remote worker needs no shared
disk). After training, the stack scores *every* example of the pool (candidates and population)
in one :func:`memlens.scoring.score_tokens` pass over ``[K_s, N, S]``.

The number of steps is fixed (``min_steps = max_steps``): shadow models must be trained like the
target they imitate, not to each one's own plateau. Examples are right-padded to the pool's
``seq_len``; the loss averages over each example's real next-token targets only (``lengths``),
so no capacity goes to predicting padding and the training loss is the loss the scores measure. Evaluation inside the training loop (the
memorization curve) runs ``n_evals`` times and reports progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


def stack_layout(n_models: int, stack_size: int) -> list[list[int]]:
    """Model ids of each stack: consecutive runs of ``stack_size`` (the last may be shorter)."""
    return [list(range(s, min(s + stack_size, n_models))) for s in range(0, n_models, stack_size)]


def train_stack(
    job: dict[str, Any], progress: Callable[[Any], None] | None = None
) -> dict[str, Any]:
    """Train one stack and score the whole pool with it.

    ``job`` holds: ``index``, ``models`` (ids), ``gpt`` (a GPTConfig dict), ``train`` (a
    SaturationConfig dict), ``tokens [N, S]``, ``lengths [N]``, ``rows`` (per model, the pool rows it
    trains on), ``seed``, ``device``, ``score_batch``, ``first_token_bits`` and
    ``entropy_bits [N]`` (or None). Returns the stack's weights (a state dict of CPU tensors),
    its signals and per-token scores on all N examples, and timings.
    """
    import torch

    from memlens.models.gpt import GPT, GPTConfig
    from memlens.progress import emit
    from memlens.scoring import gpt_forward, score_tokens
    from memlens.shadow.signals import signals_from_scores
    from memlens.training import SaturationConfig, pick_device, train_to_saturation

    device = pick_device(job["device"])
    cfg = GPTConfig(**job["gpt"])
    tcfg = SaturationConfig(**job["train"])
    tokens = torch.as_tensor(np.asarray(job["tokens"]), dtype=torch.long)
    rows = [np.asarray(r, dtype=np.int64) for r in job["rows"]]
    Ks = len(rows)
    sizes = [len(r) for r in rows]
    n_max = max(sizes)
    data = torch.zeros(Ks, n_max, tokens.shape[1], dtype=torch.long)
    H = job.get("entropy_bits")
    ent = np.zeros((Ks, n_max))
    pool_lengths = np.asarray(job["lengths"], dtype=np.int64)
    lengths = np.zeros((Ks, n_max), dtype=np.int64)  # rows past a model's half: never drawn
    for j, r in enumerate(rows):
        data[j, : len(r)] = tokens[r]
        lengths[j, : len(r)] = pool_lengths[r]
        if H is not None:
            ent[j, : len(r)] = np.asarray(H)[r]
    gen = torch.Generator().manual_seed(int(job["seed"]))
    model = GPT(cfg, n_models=Ks, generator=gen).to(device)
    t0 = time.perf_counter()

    def report(event: Any) -> None:  # the stack's own task name, relayed from any worker
        emit(progress, f"stack {job['index']}", event.completed, tcfg.max_steps)

    res = train_to_saturation(
        model,
        data,
        sizes,
        tcfg,
        entropy_bits=ent,
        first_token_bits=float(job["first_token_bits"]),
        seed=int(job["seed"]),
        device=device,
        progress=report,
        lengths=lengths,  # the loss averages over real tokens only: padding is not trained on
    )
    train_seconds = time.perf_counter() - t0
    model.eval()
    t1 = time.perf_counter()
    stacked = tokens.unsqueeze(0).expand(Ks, -1, -1)
    scores = score_tokens(
        gpt_forward(model),
        stacked,
        lengths=pool_lengths,
        batch_size=int(job["score_batch"]),
        device=device,
        stats=True,
        argmax=True,
    )
    sig = signals_from_scores(scores)
    score_seconds = time.perf_counter() - t1
    return {
        "index": job["index"],
        "models": list(job["models"]),
        "state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "signals": sig.arrays(),
        "log2p": scores.log2p.astype(np.float32),
        "mu_log2p": scores.mu_log2p.astype(np.float32),
        "sigma_log2p": scores.sigma_log2p.astype(np.float32),
        "steps": res.steps,
        "train_seconds": train_seconds,
        "score_seconds": score_seconds,
        "finite": bool(np.isfinite(sig.loglik_bits).all()),
    }
