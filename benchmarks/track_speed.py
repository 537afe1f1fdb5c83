"""Benchmark: the tracker's batched observation against naive per-example loops, and its overhead.

Same model (the ``track --preset quick`` GPT, briefly trained so some examples are extractable),
same 576 tracked examples of 32 tokens. Three ways to record code length and greedy extraction:

* tracker: one batched teacher-forced pass through the shared scoring engine; extraction is read
  off the argmax of the suffix positions (exactly equivalent to greedy decoding, see
  :mod:`memlens.track`);
* naive A: one forward per example, then a Python loop over its tokens (how a widely used MIA
  benchmark scores, docs/concepts.md section 4), extraction from the same argmax;
* naive B: naive A plus extraction by actually decoding greedily, one example at a time, one
  token at a time (no KV cache).

All three must agree (checked). Then the overhead: the wall time of one observation against the
time of one training step, projected over the quick preset's log schedule (3000 steps).

Run: ``.venv/bin/python benchmarks/track_speed.py [--repeats 3] [--train-steps 600]``
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from memlens.models.gpt import GPT, GPTConfig
from memlens.track import QuickConfig, Schedule, Tracker, epoch_batch, quick_data
from memlens.training import next_token_loss
from memlens.training import train as train_loop


def naive_scores(model: GPT, tokens: list[np.ndarray], prefix: int, suffix: int, generate: bool):
    bits, extracted = [], []
    with torch.inference_mode():
        for t in tokens:
            ids = torch.as_tensor(t)[None, None]
            logp = torch.log_softmax(model(ids)[0, 0].float(), -1)
            total, hits = 0.0, 0
            for j in range(1, len(t)):
                total -= float(logp[j - 1, t[j]]) / math.log(2)
                if prefix <= j < prefix + suffix:
                    hits += int(int(logp[j - 1].argmax()) == int(t[j]))
            if generate:
                ctx = list(t[:prefix])
                for _ in range(suffix):
                    nxt = int(model(torch.tensor(ctx)[None, None])[0, 0, -1].argmax())
                    ctx.append(nxt)
                ok = ctx[prefix:] == list(t[prefix : prefix + suffix])
            else:
                ok = hits == suffix
            bits.append(total)
            extracted.append(ok)
    return np.array(bits), np.array(extracted)


def timed(fn, repeats: int):
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--train-steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    cfg = QuickConfig()
    train, examples, _ = quick_data(cfg)
    torch.manual_seed(0)
    model = GPT(GPTConfig(cfg.vocab_size, cfg.seq_len, cfg.n_layer, cfg.d_model))
    tcfg = cfg.train_config().model_copy(update={"max_steps": args.train_steps})
    t0 = time.perf_counter()
    train_loop(  # the quick preset's training (memlens.training), for a model to observe
        model, tcfg, lambda step: train[epoch_batch(len(train), cfg.batch_size, step, cfg.seed)][None],
        next_token_loss,
    )  # fmt: skip
    step_s = (time.perf_counter() - t0) / args.train_steps
    model.eval()

    def tracker_obs():
        tr = Tracker(
            examples,
            schedule=Schedule.every(1),
            prefix=cfg.prefix,
            suffix=cfg.suffix,
            batch_size=256,
        )
        tr.observe(model, 0)
        o = tr.observations()
        return o.code_bits[:, 0], o.extracted[:, 0]

    first = math.log2(cfg.vocab_size)
    (bits_t, ext_t), t_tracker = timed(tracker_obs, args.repeats)
    (bits_a, ext_a), t_a = timed(
        lambda: naive_scores(model, examples.tokens, cfg.prefix, cfg.suffix, False), args.repeats
    )
    (bits_b, ext_b), t_b = timed(
        lambda: naive_scores(model, examples.tokens, cfg.prefix, cfg.suffix, True), 1
    )
    np.testing.assert_allclose(bits_t, bits_a + first, rtol=1e-4)
    np.testing.assert_allclose(bits_t, bits_b + first, rtol=1e-4)
    assert (ext_t == ext_a).all() and (ext_t == ext_b).all(), "extraction flags disagree"

    n, T = len(examples), int(examples.lengths.max())
    print(
        f"{n} examples x {T} tokens, GPT {cfg.n_layer} layers d={cfg.d_model}, {args.threads} thread(s)"
    )
    print(f"  results agree: code bits (rtol 1e-4) and {int(ext_t.sum())} extracted examples")
    print(f"  tracker (batched, one pass):                {t_tracker:8.3f} s")
    print(
        f"  naive A (per example, Python token loop):   {t_a:8.3f} s   ratio {t_a / t_tracker:6.1f}x"
    )
    print(
        f"  naive B (A + per-example greedy decoding):  {t_b:8.3f} s   ratio {t_b / t_tracker:6.1f}x"
    )
    n_obs = len(Schedule.log(cfg.points_per_decade).steps_until(cfg.steps)) + 1
    train_total = step_s * cfg.steps
    print(f"  training step (batch {cfg.batch_size}): {1e3 * step_s:.1f} ms")
    print(
        f"  projected for the quick preset: {n_obs} observations x {t_tracker:.3f} s = {n_obs * t_tracker:.1f} s "
        f"vs {cfg.steps} steps x {1e3 * step_s:.1f} ms = {train_total:.1f} s training "
        f"-> overhead {n_obs * t_tracker / train_total:.1%} (naive B: {n_obs * t_b / train_total:.0%})"
    )


if __name__ == "__main__":
    main()
