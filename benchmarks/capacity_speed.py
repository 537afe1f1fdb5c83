"""Capacity lab speed: memlens's trainer vs a plain single-model PyTorch loop.

Both train the same shape on the same uniform-token dataset and are scored by the same engine
(:mod:`memlens.scoring`), with the quick preset's head size. memlens runs its recipe (fused output
layer, warm-up/stable/decay schedule, the quick preset's learning rate and batch, plateau check);
the baseline is the loop people write first: one model, Adam at a constant learning rate, batch
128, random mini-batches. We record the wall time each needs to reach the bits/param that memlens
ends at, and print the ratio. If the baseline never gets there within ``--cap`` times memlens's
time, that ratio is a lower bound (marked ">="), and we also print an exact ratio at the level the
baseline did reach: its time to its best against memlens's first time at or above that level.

Run: ``.venv/bin/python benchmarks/capacity_speed.py [--d 16 --layers 1 --vocab 512 --seq-len 32]``
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from memlens.capacity import Shape, load_config
from memlens.capacity.config import PUBLISHED_ALPHA
from memlens.data.synthetic import uniform_sequences
from memlens.models.gpt import GPT, GPTConfig
from memlens.training import evaluate_memorization, train_to_saturation


def baseline(
    cfg: GPTConfig, data: torch.Tensor, target_bits: float, lr: float, cap_s: float, seed: int
):
    """Plain loop: one model, Adam(lr) constant, batch 128.

    Returns (seconds to target or None, best bits, steps, seconds at which the best was reached).
    """
    torch.manual_seed(seed)
    model = GPT(cfg, n_models=1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    N, S = data.shape[1], data.shape[2]
    H = S * math.log2(cfg.vocab_size)
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    best, step, t_best = 0.0, 0, 0.0
    while time.perf_counter() - start < cap_s:
        idx = torch.randint(0, N, (128,), generator=g)
        batch = data[0, idx][None]
        logits = model(batch[..., :-1])
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, cfg.vocab_size), batch[..., 1:].reshape(-1)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            bits, _ = evaluate_memorization(model, data, [N], H, math.log2(cfg.vocab_size))
            if bits[0] > best:
                best, t_best = bits[0], time.perf_counter() - start
            if best >= target_bits:
                return t_best, best, step, t_best
    return None, best, step, t_best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--multiple", type=float, default=1.2, help="dataset bits / (3.64 * params)")
    ap.add_argument("--baseline-lr", type=float, default=1e-3)
    ap.add_argument(
        "--cap", type=float, default=6.0, help="baseline time cap, in multiples of memlens's time"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--steps", type=int, default=None, help="memlens step budget (default: quick's)"
    )
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    quick = load_config("quick")
    shape = Shape(n_layer=a.layers, d_model=a.d)
    cfg = GPTConfig(a.vocab, a.seq_len, a.layers, a.d, quick.n_head_for(shape))
    P = cfg.n_params
    H = a.seq_len * math.log2(a.vocab)
    N = math.ceil(a.multiple * PUBLISHED_ALPHA * P / H)
    data = uniform_sequences(a.vocab, a.seq_len, N, seed=a.seed)[None]
    steps = next(
        (
            quick.steps_for_shape(s)
            for s in quick.shapes
            if (s.n_layer, s.d_model) == (a.layers, a.d)
        ),
        quick.train.max_steps,
    )
    tcfg = quick.train.to_train_config(max_steps=a.steps or steps)
    print(
        f"shape L={a.layers} d={a.d} heads={cfg.n_head} V={a.vocab} S={a.seq_len}: {P:,} params, "
        f"N={N} ({N * H:,.0f} bits)"
    )

    torch.manual_seed(a.seed)
    model = GPT(cfg, n_models=1, generator=torch.Generator().manual_seed(a.seed))
    t0 = time.perf_counter()
    res = train_to_saturation(
        model, data, [N], tcfg, entropy_bits=H, first_token_bits=math.log2(a.vocab), seed=a.seed
    )
    t_mem = time.perf_counter() - t0
    target = res.final_memorized_bits[0]
    print(
        f"memlens trainer : {target / P:.3f} bits/param in {t_mem:7.1f} s "
        f"({res.steps} steps, saturated={res.saturated[0]})"
    )

    t_base, best, steps, t_best = baseline(cfg, data, target, a.baseline_lr, a.cap * t_mem, a.seed)
    if t_base is None:
        print(
            f"plain loop      : best {best / P:.3f} bits/param after {a.cap * t_mem:7.1f} s ({steps} steps), "
            "never reached the target"
        )
        print(
            f"speed ratio     : >= {a.cap:.1f}x (lower bound: the baseline was stopped at the cap)"
        )
        curve = res.curves[0]
        t_mem_at = next(
            (t for t, b in zip(curve.seconds, curve.memorized_bits, strict=True) if b >= best), None
        )
        if t_mem_at is not None and t_mem_at > 0:
            print(
                f"at {best / P:.3f} bits/param : plain loop {t_best:7.1f} s, memlens {t_mem_at:7.1f} s, "
                f"ratio {t_best / t_mem_at:.1f}x"
            )
    else:
        print(f"plain loop      : {best / P:.3f} bits/param in {t_base:7.1f} s ({steps} steps)")
        print(f"speed ratio     : {t_base / t_mem:.1f}x")


if __name__ == "__main__":
    main()
