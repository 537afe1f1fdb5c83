"""Capacity lab speed: the implementation's speed-up and the recipe's gain, as two ratios, one run.

One shape of the quick preset trains on its two datasets (1.0x and 1.3x of its expected capacity,
uniform tokens), every side scored by the same engine (:mod:`memlens.scoring`) every 100 steps,
single-threaded:

1. **memlens**: :func:`memlens.training.train_to_saturation`, both datasets as one stack of K = 2
   models, the output layer fused with its cross-entropy, the quick recipe (Adam β = 0.9, 0.98,
   peak lr 8e-2 after 300 warm-up steps, linear decay over 60% and a 20% hold, batch 64, heads of
   size 4, per-model epoch permutations).
2. **plain loop, same recipe**: the loop people write (one model at a time, logits then
   ``F.cross_entropy``), with exactly that recipe: learning rate, schedule, batch, head size,
   sampling and number of steps. *Implementation speed-up* = the plain loops' time for both
   models / memlens's time.
3. **plain loop, Adam at a constant 1e-3** (batch 128, random mini-batches: the untuned baseline),
   on the 1.0x dataset. *Recipe gain* = its time to reach the bits/param the tuned plain loop
   reaches on that dataset / the tuned plain loop's time to get there. If it does not get there
   within ``--cap`` times the tuned loop's time, the ratio is a lower bound (">="), and an exact
   ratio is printed at the best level it did reach.

The three trainings are interleaved in blocks of 100 steps (memlens's evaluation callback advances
the plain loops to the same step), so a machine shared with other jobs slows all of them alike;
times are the CPU seconds each side spent (``time.process_time``, one thread: on an idle machine,
wall time).

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


class PlainLoop:
    """One model trained the plain way on ``data [N, S]``, advanced block by block.

    ``curve`` holds ``(step, CPU seconds spent so far, memorized bits)`` after every block.
    """

    def __init__(
        self,
        cfg: GPTConfig,
        data: torch.Tensor,
        lr_at: Callable[[int], float],
        batch: int,
        permutations: bool,
        seed: int,
    ) -> None:
        torch.manual_seed(seed)
        self.model = GPT(cfg, n_models=1, generator=torch.Generator().manual_seed(seed))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=lr_at(0), betas=(0.9, 0.98))
        self.data, self.lr_at, self.batch, self.permutations = data, lr_at, batch, permutations
        self.g = torch.Generator().manual_seed(seed)
        self.order, self.ptr = torch.randperm(len(data), generator=self.g), 0
        self.step, self.cpu = 0, 0.0
        self.curve: list[tuple[int, float, float]] = []

    def rows(self) -> torch.Tensor:
        N = len(self.data)
        if not self.permutations:
            return torch.randint(0, N, (self.batch,), generator=self.g)
        idx: list[int] = []  # every sequence once per epoch
        while len(idx) < self.batch:
            if self.ptr == N:
                self.order, self.ptr = torch.randperm(N, generator=self.g), 0
            take = min(self.batch - len(idx), N - self.ptr)
            idx += self.order[self.ptr : self.ptr + take].tolist()
            self.ptr += take
        return torch.tensor(idx)

    def advance(self, to_step: int) -> None:
        """Train up to ``to_step``, then measure memorized bits."""
        t0 = time.process_time()
        V = self.model.config.vocab_size
        self.model.train()
        while self.step < to_step:
            x = self.data[self.rows()][None]
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step)
            logits = self.model(x[..., :-1])
            loss = F.cross_entropy(logits.reshape(-1, V), x[..., 1:].reshape(-1))
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.step += 1
        N, S = self.data.shape
        bits, _ = evaluate_memorization(
            self.model, self.data[None], [N], S * math.log2(V), math.log2(V)
        )
        self.cpu += time.process_time() - t0
        self.curve.append((self.step, self.cpu, bits[0]))


def first_time_at(curve: list[tuple[int, float, float]], level: float) -> float | None:
    """CPU seconds at the first measurement with at least ``level`` bits."""
    return next((t for _, t, b in curve if b >= level), None)


def row(label: str, text: str) -> None:
    print(f"{label:<34}: {text}")


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
    a = ap.parse_args()
    torch.set_num_threads(1)

    quick = load_config("quick")
    shape = Shape(n_layer=a.layers, d_model=a.d)
    steps = a.steps or next(
        (quick.steps_for_shape(s) for s in quick.shapes if (s.n_layer, s.d_model) == (a.layers, a.d)),
        quick.train.max_steps,
    )  # fmt: skip
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

    # the plain loops: the same recipe on each dataset, and the untuned one on the 1.0x dataset
    sched = make_schedule(
        "wsd", t.lr, steps, t.warmup_steps, decay_frac=t.decay_frac,
        final_lr_frac=t.final_lr_frac, hold_frac=t.plateau_frac,
    )  # fmt: skip
    plain = [PlainLoop(cfg, d, sched.lr_at, t.batch_size, True, a.seed) for d in data]
    untuned = PlainLoop(cfg, data[0], lambda s: a.baseline_lr, a.baseline_batch, False, a.seed)
    in_callback = 0.0

    def interleave(model: GPT, step: int) -> None:  # after every memlens evaluation
        nonlocal in_callback
        t0 = time.process_time()
        for p in (*plain, untuned):
            p.advance(step)
        in_callback += time.process_time() - t0

    model = GPT(cfg, n_models=len(sizes), generator=torch.Generator().manual_seed(a.seed))
    t0 = time.process_time()
    res = train_to_saturation(
        model, stack, sizes, t, entropy_bits=H, first_token_bits=math.log2(V), seed=a.seed,
        callbacks=[interleave],
    )  # fmt: skip
    t_mem = time.process_time() - t0 - in_callback
    t_plain = sum(p.cpu for p in plain)
    row(
        f"memlens, K={len(sizes)} models stacked",
        f"{t_mem:7.1f} CPU s, {res.steps} steps, bits/param "
        + " / ".join(f"{b / P:.3f}" for b in res.final_memorized_bits),
    )
    row(
        "plain loop, same recipe",
        f"{t_plain:7.1f} CPU s, {res.steps} steps each, bits/param "
        + " / ".join(f"{p.curve[-1][2] / P:.3f}" for p in plain),
    )
    row("implementation speed-up", f"{t_plain / t_mem:.2f}x (memlens vs plain loop, same recipe)")

    # the untuned loop goes on alone until it reaches the tuned loop's level (or its cap)
    tuned = plain[0].curve
    target, t_tuned = tuned[-1][2], tuned[-1][1]
    while untuned.curve[-1][2] < target and untuned.cpu < a.cap * t_tuned:
        untuned.advance(untuned.step + t.eval_every)
    reached = first_time_at(untuned.curve, target)
    best_step, t_best, best = max(untuned.curve, key=lambda r: r[2])
    label = f"plain loop, Adam {a.baseline_lr:g} constant"
    if reached is not None:
        row(label, f"{best / P:.3f} bits/param in {reached:7.1f} CPU s ({best_step} steps)")
        row(
            "recipe gain",
            f"{reached / first_time_at(tuned, target):.2f}x (plain loops, time to "
            f"{target / P:.3f} bits/param)",
        )
    else:
        at = first_time_at(tuned, best)
        row(
            label,
            f"best {best / P:.3f} bits/param after {untuned.cpu:7.1f} CPU s "
            f"({untuned.step} steps), never reached {target / P:.3f}",
        )
        row("recipe gain", f">= {a.cap:.1f}x (lower bound: stopped at the cap)")
        if at:
            row(
                f"recipe gain at {best / P:.3f} bits/param",
                f"{t_best / at:.2f}x (untuned {t_best:.1f} CPU s, tuned {at:.1f} CPU s)",
            )


if __name__ == "__main__":
    main()
