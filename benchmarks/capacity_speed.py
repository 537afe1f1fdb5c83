"""Capacity lab speed: the implementation's speed-up and the recipe's gain, as two ratios, one run.

One shape of the quick preset trains on its two datasets (1.0x and 1.3x of its expected capacity,
uniform tokens), every side scored by the same engine (:mod:`memlens.scoring`) at the same
cadence, single-threaded. Times are the CPU seconds of this process (``time.process_time``): on a
machine shared with other jobs they do not count the time other processes took, and on an idle
machine they equal wall time (one thread).

1. **memlens**: :func:`memlens.training.train_to_saturation`, both datasets as one stack of K = 2
   models, the output layer fused with its cross-entropy, the quick recipe (Adam β = 0.9, 0.98,
   peak lr 8e-2 after 300 warm-up steps, linear decay over 60% and a 20% hold, batch 64, heads of
   size 4, per-model epoch permutations).
2. **plain loop, same recipe**: the loop people write (one model at a time, logits then
   ``F.cross_entropy``), with exactly that recipe: learning rate, schedule, batch, head size,
   sampling, the same number of steps. *Implementation speed-up* = plain loop time / memlens time
   for the same work (both models).
3. **plain loop, Adam at a constant 1e-3** (batch 128, random mini-batches: the untuned baseline),
   on the 1.0x dataset. *Recipe gain* = its time to reach the bits/param the tuned plain loop
   reaches on that dataset / the tuned plain loop's time to get there. If it does not get there
   within ``--cap`` times the tuned loop's time, the ratio is a lower bound (">="), and an exact
   ratio is printed at the best level it did reach.

Run: ``.venv/bin/python benchmarks/capacity_speed.py [--d 16 --layers 1 --steps 5400 --cap 4]``
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from memlens.capacity import Shape, load_config
from memlens.data.synthetic import uniform_sequences
from memlens.models.gpt import GPT, GPTConfig
from memlens.training import evaluate_memorization, make_schedule, train_to_saturation
from memlens.units import PUBLISHED_ALPHA


def plain_loop(
    cfg: GPTConfig,
    data: torch.Tensor,
    *,
    steps: int,
    lr_at: Callable[[int], float],
    batch: int,
    permutations: bool,
    eval_every: int,
    seed: int,
    target_bits: float | None = None,
    cap_s: float | None = None,
) -> list[tuple[int, float, float]]:
    """Train one model on ``data [N, S]`` the plain way; return its curve ``(step, seconds, bits)``.

    Stops after ``steps``, at ``target_bits`` (when given) or after ``cap_s`` seconds.
    """
    torch.manual_seed(seed)
    model = GPT(cfg, n_models=1, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=lr_at(0), betas=(0.9, 0.98))
    N, S = data.shape
    V = cfg.vocab_size
    g = torch.Generator().manual_seed(seed)
    order, ptr = torch.randperm(N, generator=g), 0
    curve: list[tuple[int, float, float]] = []
    start = time.process_time()
    for step in range(steps):
        if permutations:  # every sequence once per epoch
            idx = []
            while len(idx) < batch:
                if ptr == N:
                    order, ptr = torch.randperm(N, generator=g), 0
                take = min(batch - len(idx), N - ptr)
                idx += order[ptr : ptr + take].tolist()
                ptr += take
            idx = torch.tensor(idx)
        else:
            idx = torch.randint(0, N, (batch,), generator=g)
        x = data[idx][None]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = model(x[..., :-1])
        loss = F.cross_entropy(logits.reshape(-1, V), x[..., 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            bits, _ = evaluate_memorization(model, data[None], [N], S * math.log2(V), math.log2(V))
            curve.append((step + 1, time.process_time() - start, bits[0]))
            if target_bits is not None and bits[0] >= target_bits:
                break
            if cap_s is not None and time.process_time() - start > cap_s:
                break
    return curve


def row(label: str, text: str) -> None:
    print(f"{label:<30}: {text}")


def first_time_at(curve: list[tuple[int, float, float]], level: float) -> float | None:
    """Seconds at the first evaluation with at least ``level`` bits."""
    return next((t for _, t, b in curve if b >= level), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--d", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--steps", type=int, default=None, help="step budget (default: quick's)")
    ap.add_argument("--baseline-lr", type=float, default=1e-3)
    ap.add_argument("--baseline-batch", type=int, default=128)
    ap.add_argument("--cap", type=float, default=4.0, help="untuned loop's cap, x tuned time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    quick = load_config("quick")
    shape = Shape(n_layer=a.layers, d_model=a.d)
    steps = a.steps or next(
        (
            quick.steps_for_shape(s)
            for s in quick.shapes
            if (s.n_layer, s.d_model) == (a.layers, a.d)
        ),
        quick.train.max_steps,
    )
    cfg = GPTConfig(a.vocab, a.seq_len, a.layers, a.d, quick.n_head_for(shape))
    P, V, S = cfg.n_params, a.vocab, a.seq_len
    H = S * math.log2(V)
    sizes = [math.ceil(m * PUBLISHED_ALPHA * P / H) for m in quick.capacity_multiples]
    data = [uniform_sequences(V, S, n, seed=a.seed + k) for k, n in enumerate(sizes)]
    stack = torch.stack([F.pad(d, (0, 0, 0, max(sizes) - len(d))) for d in data])
    t = quick.train.model_copy(update={"max_steps": steps})
    print(
        f"shape L={a.layers} d={a.d} heads={cfg.n_head} V={V} S={S}: {P:,} params; N = "
        f"{' and '.join(map(str, sizes))}; recipe: lr {t.lr:g}, warm-up {t.warmup_steps}, "
        f"decay {t.decay_frac:.0%} + hold {t.plateau_frac:.0%}, batch {t.batch_size}, {steps} steps"
    )

    # 1. memlens: both datasets as one stack, fused output layer, the quick recipe
    model = GPT(cfg, n_models=len(sizes), generator=torch.Generator().manual_seed(a.seed))
    t0 = time.process_time()
    res = train_to_saturation(
        model, stack, sizes, t, entropy_bits=H, first_token_bits=math.log2(V), seed=a.seed
    )
    t_mem = time.process_time() - t0
    mem_bpp = [b / P for b in res.final_memorized_bits]
    row(f"memlens, K={len(sizes)} models stacked", f"{t_mem:7.1f} CPU s, {res.steps} steps, bits/param "
        + " / ".join(f"{b:.3f}" for b in mem_bpp))  # fmt: skip

    # 2. the plain loop with the same recipe, one model after the other, the same steps
    sched = make_schedule(
        "wsd", t.lr, res.steps, t.warmup_steps, decay_frac=t.decay_frac,
        final_lr_frac=t.final_lr_frac, hold_frac=t.plateau_frac,
    )  # fmt: skip
    plain = [
        plain_loop(cfg, d, steps=res.steps, lr_at=sched.lr_at, batch=t.batch_size,
                   permutations=True, eval_every=t.eval_every, seed=a.seed)
        for d in data
    ]  # fmt: skip
    t_plain = sum(c[-1][1] for c in plain)
    row("plain loop, same recipe", f"{t_plain:7.1f} CPU s, {res.steps} steps each, bits/param "
        + " / ".join(f"{c[-1][2] / P:.3f}" for c in plain))  # fmt: skip
    row("implementation speed-up", f"{t_plain / t_mem:.2f}x (memlens vs plain loop, same recipe)")

    # 3. the untuned plain loop on the 1.0x dataset, until it reaches the tuned loop's level
    tuned = plain[0]
    target, t_tuned = tuned[-1][2], tuned[-1][1]
    base = plain_loop(
        cfg, data[0], steps=10**9, lr_at=lambda s: a.baseline_lr, batch=a.baseline_batch,
        permutations=False, eval_every=t.eval_every, seed=a.seed, target_bits=target,
        cap_s=a.cap * t_tuned,
    )  # fmt: skip
    best_step, t_best, best = max(base, key=lambda r: r[2])
    reached = first_time_at(base, target)
    label = f"plain loop, Adam {a.baseline_lr:g} constant"
    if reached is not None:
        row(label, f"{best / P:.3f} bits/param in {reached:7.1f} CPU s ({best_step} steps)")
        row("recipe gain", f"{reached / first_time_at(tuned, target):.2f}x (plain loops, time to "
            f"{target / P:.3f} bits/param)")  # fmt: skip
    else:
        at = first_time_at(tuned, best)
        row(label, f"best {best / P:.3f} bits/param after {base[-1][1]:7.1f} CPU s "
            f"({base[-1][0]} steps), never reached {target / P:.3f}")  # fmt: skip
        row("recipe gain", f">= {a.cap:.1f}x (lower bound: stopped at the cap)")
        if at:
            row(f"recipe gain at {best / P:.3f} bits/param", f"{t_best / at:.2f}x (untuned "
                f"{t_best:.1f} s, tuned {at:.1f} s, both plain loops)")  # fmt: skip


if __name__ == "__main__":
    main()
