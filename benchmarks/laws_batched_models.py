"""Benchmark: the MIA experiment's K models of one shape trained in one batched stack vs one at a time.

Trains K = 5 GPTs of the ``laws mia-experiment --preset quick`` shape (L=1, d=16, V=256, S=32,
batch 64) for the same number of Adam steps, (a) as one ``GPT(n_models=5)`` stack and (b) as five
``GPT(n_models=1)`` models in turn, and prints the CPU-time and wall-time ratios (a shared machine
inflates wall time; CPU time of this process is the steadier number). Run::

    .venv/bin/python benchmarks/laws_batched_models.py [--steps 100] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch

from memlens.models.gpt import GPT, GPTConfig


def train(model: GPT, data: torch.Tensor, steps: int, batch: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.98), foreach=True)
    K, N, _ = data.shape
    rows = torch.arange(K).view(K, 1)
    for _ in range(steps):
        idx = torch.randint(0, N, (K, batch), generator=g)
        x = data[rows, idx]
        logits = model(x[..., :-1])
        loss = (
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[..., 1:].reshape(-1)
            )
            * K
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--models", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = GPTConfig(256, 32, 1, 16)
    K = args.models
    data = torch.randint(0, 256, (K, 2000, 32), generator=torch.Generator().manual_seed(0))

    def timed(fn) -> tuple[float, float]:
        c, w = time.process_time(), time.perf_counter()
        fn()
        return time.process_time() - c, time.perf_counter() - w

    train(GPT(cfg, n_models=K), data, 5, 64, 0)  # warm-up
    batched = timed(lambda: train(GPT(cfg, n_models=K), data, args.steps, 64, 0))
    single = timed(
        lambda: [train(GPT(cfg, n_models=1), data[k : k + 1], args.steps, 64, k) for k in range(K)]
    )
    print(
        f"{K} models x {args.steps} steps, L=1 d=16 V=256 S=32 batch 64, {args.threads} thread(s)"
    )
    print(f"batched stack : cpu {batched[0]:.2f} s, wall {batched[1]:.2f} s")
    print(f"one at a time : cpu {single[0]:.2f} s, wall {single[1]:.2f} s")
    print(
        f"speed-up of the batched stack: cpu x{single[0] / batched[0]:.2f}, wall x{single[1] / batched[1]:.2f}"
    )


if __name__ == "__main__":
    main()
