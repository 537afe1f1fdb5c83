"""Shadow-model speed: K GPTs trained as one batched stack vs one at a time, in the same run.

Both arms train K = 16 models of the example world's shape (V = 512, S = 64, 2 layers, d = 32,
batch 16 per model) for the same number of steps with the same training loop
(:func:`memlens.training.train_to_saturation`: Adam, warm-up, linear decay, fused output layer) on
their own halves of the same data, with the same thread count, and then score the whole pool
with the shared scoring pass. The batched arm holds the 16 models in one
:class:`~memlens.models.gpt.GPT` (ids ``[16, B, T]``); the baseline is what tools that train
shadow models do (ML Privacy Meter, the LiRA code): one model after another, here through the
very same loop with ``K = 1``. The ratio of wall times is the speed-up; the benchmark also prints
the wall time to 16 usable shadow models (trained and scored) of the example world, measured in
an example run when ``--world`` points to its output, and projected from this run otherwise.

Run: ``.venv/bin/python benchmarks/shadow_speed.py [--steps 150] [--threads 2]
[--world examples-out/shadow-world]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from memlens.data.synthetic import uniform_sequences
from memlens.models.gpt import GPT, GPTConfig
from memlens.scoring import gpt_forward, score_tokens
from memlens.shadow.design import balanced_keep
from memlens.training import TrainConfig, train_to_saturation


def train_and_score(cfg, tokens, rows, steps, batch, seed) -> float:
    """Train ``len(rows)`` models as one stack for ``steps`` and score the pool; wall seconds."""
    K = len(rows)
    t0 = time.perf_counter()
    data = torch.stack([tokens[r] for r in rows])  # [K, n/2, S]
    model = GPT(cfg, n_models=K, generator=torch.Generator().manual_seed(seed))
    tcfg = TrainConfig(lr=1e-2, batch_size=batch, max_steps=steps, min_steps=steps,
                       warmup_steps=min(100, steps), decay_frac=0.3, eval_every=steps)  # fmt: skip
    train_to_saturation(
        model, data, [len(r) for r in rows], tcfg, entropy_bits=0.0, first_token_bits=0.0, seed=seed
    )
    model.eval()
    score_tokens(
        gpt_forward(model), tokens.unsqueeze(0).expand(K, -1, -1), batch_size=16, stats=True,
        argmax=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--n", type=int, default=1330, help="candidate examples (example world: 1330)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--d", type=int, default=32, help="model width (example world: 32)")
    ap.add_argument("--batch", type=int, default=16, help="examples per model per step (16)")
    ap.add_argument("--world", default=None, help="a finished examples/shadow_world.py output")
    ap.add_argument("--example-steps", type=int, default=2000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    K, V, S, B = args.models, 512, 64, args.batch
    cfg = GPTConfig(V, S, 2, args.d, 0)
    tokens = uniform_sequences(V, S, args.n, seed=0)
    keep = balanced_keep(K, args.n, seed=0)
    rows = [np.flatnonzero(keep[k]) for k in range(K)]
    print(
        f"{K} GPTs ({cfg.n_params:,} parameters each; V={V}, S={S}, 2 layers, d={args.d}), "
        f"{args.steps} steps of batch {B} per model on {args.n // 2} examples each, then scoring "
        f"all {args.n}; {args.threads} torch thread(s), {os.cpu_count()} cores"
    )
    # warm-up (imports, allocator) outside the timed arms
    train_and_score(cfg, tokens, rows[:2], 5, B, seed=1)
    t_stack = train_and_score(cfg, tokens, rows, args.steps, B, seed=0)
    print(f"batched: one stack of {K} models         {t_stack:7.1f} s")
    t_one = 0.0
    for k in range(K):
        t_one += train_and_score(cfg, tokens, rows[k : k + 1], args.steps, B, seed=k)
    print(f"one at a time: {K} models in turn         {t_one:7.1f} s")
    print(f"speed-up of the batched stack: {t_one / t_stack:.2f}x")
    per_step = t_stack / args.steps
    print(
        f"projected for the example world ({args.example_steps} steps): "
        f"{per_step * args.example_steps / 60:.1f} min batched, "
        f"{t_one / args.steps * args.example_steps / 60:.1f} min one at a time"
    )
    if args.world:
        p = Path(args.world) / "shadows" / "shadow.json"
        if p.exists():
            s = json.loads(p.read_text())
            stacks = s["stacks"]
            print(
                f"measured in {args.world}: {s['n_models']} usable shadow models in "
                f"{len(stacks)} stack(s), training {s['train_seconds_total']:.0f} s + scoring "
                f"{s['score_seconds_total']:.0f} s of worker time "
                f"(wall of the whole invocation {s['seconds_this_invocation']:.0f} s)"
            )
        else:
            print(f"no finished example world in {args.world} (run examples/shadow_world.py)")


if __name__ == "__main__":
    main()
