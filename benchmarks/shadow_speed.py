"""Shadow-model speed on a CPU: K GPTs trained as one batched stack vs one at a time, in one run.

Where does holding K = 16 shadow models in one :class:`~memlens.models.gpt.GPT` stack (every
weight with a model axis, ids ``[K, B, T]``) help on a CPU? The benchmark trains the same recipe
both ways, through the very same loop (:func:`memlens.training.train`, AdamW, the fused output
layer :func:`memlens.training.next_token_loss`, per-model random permutations as in
:func:`memlens.training.train_to_saturation`), on its own half of the data per model:

* **batched**: one stack of 16 models, or two stacks of 8 in two processes;
* **one at a time**: one model at a time (``K = 1``) through the same loop and the same model
  code, or 8 in turn in each of two processes: what the stack itself buys;
* **plain** (the fair baseline, what ML Privacy Meter and the LiRA code do): one Hugging Face
  ``GPT2LMHeadModel`` of the same shape at a time, its own loss (``labels=``: logits, then
  cross-entropy) and ``torch.optim.AdamW``, through the same loop with the same learning rate,
  schedule, batches and data: what memlens's whole implementation buys.

for three shapes (V = 512, S = 64, 2 layers): *tiny* (width 16, batch 4 per model: a step is
mostly per-operation overhead), *small* (width 32, batch 4) and the *example* world's (width 32,
batch 16: about 1000 tokens per model per step), and four ways of using the 2 cores, the same for
both sides: one process with 1 thread; one process with 2 threads (torch's default here); the
same with ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning, which
matters when other jobs share the cores); and 2 worker processes of 1 thread each (how
``memlens shadow train --stack-size 8 --workers 2`` runs; the plain side trains 8 models in turn
in each). Every arm runs in a spawned worker process, so each layout gets its own environment.

The machine may be shared, so every (shape, layout) pair is measured in interleaved rounds
(batched, plain, batched, plain, ...) and the ratio is taken per round (median over rounds);
absolute times are printed but only the ratios are comparable. Every shadow model of one shape
does the same work, so the plain arm times one model (per process) for its steps and multiplies
by the models it would train in turn; both arms time optimizer steps only (model built and two
warm-up steps untimed). Step counts are chosen so that each timed arm takes about
``--target-s`` seconds.

Run: ``.venv/bin/python benchmarks/shadow_speed.py [--rounds 3] [--target-s 1]
[--shapes tiny,small,example] [--world examples-out/shadow-world]`` (about 2.5 minutes).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from memlens.models.gpt import GPT, GPTConfig
from memlens.training import TrainConfig, next_token_loss, train
from memlens.training.saturation import PermutationBatches

V, S, LAYERS, N_HALF = 512, 64, 2, 264  # the example world: 527 candidates, halves of 263-264
SHAPES = {"tiny": (16, 4), "small": (32, 4), "example": (32, 16)}  # width, batch per model
# examples/shadow_world.py trains its shadows twice: for the attacks, and to convergence
EXAMPLE_STEPS = ((200, "attacks"), (2000, "counterfactual memorization"))


def _hf_loss(model, tokens):
    """A Hugging Face causal LM's own loss on ``[1, B, S]`` tokens (logits, then cross-entropy)."""
    ids = tokens[0]
    return model(input_ids=ids, labels=ids).loss


def time_steps(
    d: int, batch: int, n_models: int, steps: int, threads: int, seed: int, hf: bool = False
) -> float:
    """Seconds for ``steps`` optimizer steps of an ``n_models`` stack (after 2 untimed steps);
    ``hf``: one ``GPT2LMHeadModel`` of the same shape and initialization with its own loss."""
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    data = torch.randint(0, V, (n_models, N_HALF, S), generator=g)
    model = GPT(GPTConfig(V, S, LAYERS, d, 0), n_models=n_models, generator=g)
    loss_of = next_token_loss
    if hf:
        from memlens.models.loading import quiet_transformers

        with quiet_transformers():
            model = model.to_hf().train()
        model.loss_type = "ForCausalLM"  # GPT2LMHeadModel has none; this is its default loss
        loss_of = _hf_loss
    batches = PermutationBatches([N_HALF] * n_models, batch, g)
    index = torch.arange(n_models).view(n_models, 1)
    optimizer = TrainConfig().make_optimizer(model.parameters())

    def run(n: int, start: int) -> float:
        cfg = TrainConfig(lr=1e-3, batch_size=batch, max_steps=start + n, warmup_steps=10)
        t0 = time.perf_counter()
        train(
            model, cfg, lambda step: data[index, batches.next()], loss_of,
            optimizer=optimizer, start_step=start, check_every=start + n,
        )  # fmt: skip
        return time.perf_counter() - t0

    run(2, 0)
    return run(steps, 2)


MODES = {
    # name: (processes, threads per process, OpenMP wait policy)
    "1 proc x 1 thread": (1, 1, None),
    "1 proc x 2 threads": (1, 2, None),
    "1 proc x 2 thr passive": (1, 2, "PASSIVE"),
    "2 procs x 1 thread": (2, 1, None),
}


def _warm(threads: int) -> int:
    torch.set_num_threads(threads)
    return torch.get_num_threads()


class Layouts:
    """Worker pools (spawned, so each imports torch with its own environment): one process, one
    with ``OMP_WAIT_POLICY=PASSIVE`` (read by OpenMP when torch loads), and two processes.
    Every arm runs in a worker; the driver only times and prints."""

    def __init__(self, modes: list[str]) -> None:
        ctx = mp.get_context("spawn")
        self.pools: dict[tuple[int, str | None], ProcessPoolExecutor] = {}
        for m in modes:
            procs, _, policy = MODES[m]
            if (procs, policy) in self.pools:
                continue
            old = os.environ.get("OMP_WAIT_POLICY")
            if policy is not None:
                os.environ["OMP_WAIT_POLICY"] = policy
            pool = ProcessPoolExecutor(max_workers=procs, mp_context=ctx)
            list(pool.map(_warm, [1] * procs))  # start the workers now, with this environment
            if policy is not None:
                if old is None:
                    del os.environ["OMP_WAIT_POLICY"]
                else:
                    os.environ["OMP_WAIT_POLICY"] = old
            self.pools[(procs, policy)] = pool

    def run(
        self, mode: str, d: int, b: int, k: int, steps: int, seed: int, hf: bool = False
    ) -> float:
        """Seconds of ``steps`` steps of a ``k``-model stack (or one HF model) in every process
        of ``mode`` at once (the slowest process's timed steps)."""
        procs, threads, policy = MODES[mode]
        pool = self.pools[(procs, policy)]
        futures = [
            pool.submit(time_steps, d, b, k, steps, threads, seed + i, hf) for i in range(procs)
        ]
        return max(f.result() for f in futures)

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown()


def compare(lay: Layouts, name: str, mode: str, K: int, rounds: int, target_s: float) -> dict:
    """Interleaved rounds of batched vs plain for one shape and layout; per-round ratios."""
    d, b = SHAPES[name]
    procs = MODES[mode][0]
    per_proc = K // procs  # models each process holds (batched) or trains in turn (plain)

    def batched(n: int, r: int) -> float:  # seconds for n steps of all K models
        return lay.run(mode, d, b, per_proc, n, seed=100 * r)

    def single(n: int, r: int) -> float:  # seconds for n steps of one model per process
        return lay.run(mode, d, b, 1, n, seed=100 * r + 50)

    def plain(n: int, r: int) -> float:  # the same with one HF GPT2LMHeadModel
        return lay.run(mode, d, b, 1, n, seed=100 * r + 50, hf=True)

    # calibrate step counts so that each arm takes about target_s
    n_b = max(2, math.ceil(target_s / max(batched(2, 99) / 2, 1e-4)))
    n_s = max(2, math.ceil(target_s / max(single(4, 99) / 4, 1e-4)))
    n_p = max(2, math.ceil(target_s / max(plain(4, 99) / 4, 1e-4)))
    ratios, ratios_p, tb, ts, tp = [], [], [], [], []
    for r in range(rounds):
        sb = batched(n_b, r) / n_b  # seconds per step of all K models
        ss = single(n_s, r) / n_s * per_proc  # per step of K models, one at a time per process
        sp = plain(n_p, r) / n_p * per_proc  # the same, plain HF models
        ratios.append(ss / sb)
        ratios_p.append(sp / sb)
        tb.append(sb)
        ts.append(ss)
        tp.append(sp)
    return {
        "shape": name,
        "mode": mode,
        "batched_s_per_step": statistics.median(tb),
        "single_s_per_step": statistics.median(ts),
        "plain_s_per_step": statistics.median(tp),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_plain": statistics.median(ratios_p),
        "ratio_plain_min": min(ratios_p),
        "ratio_plain_max": max(ratios_p),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--target-s", type=float, default=1.0, help="seconds per timed arm")
    ap.add_argument("--shapes", default="tiny,small,example")
    ap.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated layouts of the 2 cores",
    )  # fmt: skip
    ap.add_argument("--world", default=None, help="a finished examples/shadow_world.py output")
    args = ap.parse_args()
    K = args.models
    shapes = args.shapes.split(",")
    modes = args.modes.split(",")
    print(
        f"{K} shadow GPTs (V={V}, S={S}, {LAYERS} layers) on halves of {2 * N_HALF} examples; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start"
    )
    for name in shapes:
        d, b = SHAPES[name]
        cfg = GPTConfig(V, S, LAYERS, d, 0)
        print(f"  {name:8s} width {d:3d}, batch {b:2d} per model: {cfg.n_params:,} parameters")
    t0 = time.perf_counter()
    lay = Layouts(modes)
    rows = []
    try:
        for name in shapes:
            for mode in modes:
                rows.append(compare(lay, name, mode, K, args.rounds, args.target_s))
                r = rows[-1]
                print(
                    f"{name:8s} {mode:24s} batched {r['batched_s_per_step'] * 1000:7.1f} ms/step; "
                    f"one at a time {r['single_s_per_step'] * 1000:7.1f} "
                    f"({r['ratio']:.2f}x, {r['ratio_min']:.2f}-{r['ratio_max']:.2f}); "
                    f"plain HF one at a time {r['plain_s_per_step'] * 1000:7.1f} "
                    f"({r['ratio_plain']:.2f}x, {r['ratio_plain_min']:.2f}-{r['ratio_plain_max']:.2f})",
                    flush=True,
                )
    finally:
        lay.close()
    print(
        f"(ms per step of all {K} models; speed-up = other side's time / batched, median of "
        f"{args.rounds} interleaved rounds, range in brackets; {time.perf_counter() - t0:.0f} s, "
        f"load average {os.getloadavg()[0]:.1f} at the end)"
    )
    example = [r for r in rows if r["shape"] == "example"]
    if example:
        fast = min(example, key=lambda r: r["batched_s_per_step"])
        for steps, what in EXAMPLE_STEPS:
            print(
                f"fastest for the example shape: batched, {fast['mode']}: "
                f"{fast['batched_s_per_step'] * steps / 60:.1f} min for the example's {steps} "
                f"steps of {K} models ({what}) at this load"
            )
    if args.world:
        for sub in ("shadows", "shadows-converged"):
            p = Path(args.world) / sub / "shadow.json"
            if not p.exists():
                print(f"no finished {sub} in {args.world} (run examples/shadow_world.py)")
                continue
            s = json.loads(p.read_text())
            print(
                f"measured in {args.world}/{sub}: {s['n_models']} usable shadow models, "
                f"{s['steps']} steps, in {len(s['stacks'])} stack(s), training "
                f"{s['train_seconds_total']:.0f} s + scoring {s['score_seconds_total']:.0f} s of "
                f"worker time (wall of the whole invocation {s['seconds_this_invocation']:.0f} s)"
            )


if __name__ == "__main__":
    main()
