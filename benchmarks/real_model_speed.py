"""Speed and memory of memlens's model work on a real 135M-parameter model, against plain
Hugging Face loops, in one run.

Model: SmolLM2-135M-Instruct (Llama architecture, 30 blocks, width 576, 9 query / 3 KV heads,
vocabulary 49152; the GGUF ``Q4_1`` file dequantized to float32), fetched with
``memlens fetch smollm2-135m``. Texts: ``--n`` speeches of the Shakespeare corpus
(``memlens fetch shakespeare``) of ``--min-chars`` to ``--max-chars`` characters (ragged, about
50-300 tokens).

Both sides compute the same things, checked to agree:

1. scoring: the code length in bits of every text. memlens: one batched pass
   (:func:`memlens.scoring.score_texts`: sorted by length, padded per batch, attention-masked,
   at most ``--batch-size`` texts and, by default, 2^25 / V padded tokens per pass);
   baseline: one forward per text (what a per-sample evaluation loop does).
2. extraction: ``--suffix`` greedy tokens after each text's first ``--prefix`` tokens. memlens:
   batched KV-cached greedy decoding (:func:`memlens.scoring.extraction.k_extraction`); baseline:
   one ``model.generate(do_sample=False)`` per text.

For each side it prints wall time, tokens per second, peak memory (resident set growth during the
phase, sampled every 5 ms; on CUDA the allocator's peak), the useful forward FLOPs per second
(weights ``2 * params`` per token plus causal attention ``2 * 2 * layers * heads * head_dim * t``
at position ``t``; padding not counted) and that figure as a fraction of the machine's fp32
matrix-product peak, timed in the same run (the best of several 2048^3 products, before and after
the work, so a busy machine shows as a gap between the two).

Usage: ``python benchmarks/real_model_speed.py [--n 64] [--batch-size 32] [--max-tokens N]
[--threads N] [--dtype float32] [--sweep]``
"""

from __future__ import annotations

import argparse
import math
import os
import threading
import time
from contextlib import contextmanager

import numpy as np
import torch


def matmul_peak_gflops(
    n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32
) -> float:
    """Best-of-``repeats`` GFLOP/s of an ``n x n`` by ``n x n`` matrix product (``2 n^3`` FLOPs)."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextmanager
def peak_memory(out: dict, key: str, device: torch.device):
    """Record in ``out[key]`` the peak memory growth (bytes) while the block runs."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        yield
        out[key] = torch.cuda.max_memory_allocated(device) - base
        return
    base = _rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(0.005)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        yield
    finally:
        stop.set()
        th.join()
        out[key] = max(peak[0], _rss_bytes()) - base


def forward_flops(lm, lengths: np.ndarray) -> float:
    """Useful forward FLOPs to score sequences of ``lengths`` tokens (padding excluded)."""
    cfg = lm.model.config
    linear = sum(
        m.weight.numel() for m in lm.model.modules() if isinstance(m, torch.nn.Linear)
    )  # every block projection and the output head (tied to the embedding)
    attn_width = cfg.num_attention_heads * getattr(
        cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads
    )
    L = cfg.num_hidden_layers
    T = lengths.astype(np.float64)
    return float((2 * linear * T + 4 * L * attn_width * T * (T + 1) / 2).sum())


def per_sample_scores(lm, token_lists) -> np.ndarray:
    bits = []
    with torch.inference_mode():
        for t in token_lists:
            ids = torch.as_tensor(t, dtype=torch.long)[None].to(lm.device)
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].float(), -1)
            bits.append(-logp.gather(-1, ids[0, 1:, None]).sum().item() / math.log(2))
    return np.array(bits)


def per_sample_generate(lm, prompts: np.ndarray, suffix: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.as_tensor(p, dtype=torch.long)[None].to(lm.device)
            g = lm.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=suffix,
                min_new_tokens=suffix,
                eos_token_id=None,
                pad_token_id=lm.tokenizer.pad_token_id or 0,
            )
            out.append(g[0, ids.shape[1] :].cpu().numpy())
    return np.stack(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--n", type=int, default=64, help="texts")
    ap.add_argument("--min-chars", type=int, default=200)
    ap.add_argument("--max-chars", type=int, default=1200)
    ap.add_argument("--batch-size", type=int, default=32, help="texts per pass (the audit's 32)")
    ap.add_argument(
        "--max-tokens", type=int, default=None,
        help="padded tokens per scoring pass (default: memlens's, 2^25 / vocabulary)",
    )  # fmt: skip
    ap.add_argument("--prefix", type=int, default=32)
    ap.add_argument("--suffix", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--dtype", default="float32", help="float32 or bfloat16 (both sides)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--sweep",
        action="store_true",
        help="only time memlens's batched scoring over batch sizes, thread counts and dtypes",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from memlens.data.corpora import load_corpus
    from memlens.data.text import encode_texts
    from memlens.models.hf import load_causal_lm
    from memlens.models.loading import quiet_transformers
    from memlens.scoring import score_texts
    from memlens.scoring.extraction import greedy_continue

    peak0 = matmul_peak_gflops()
    lm = load_causal_lm("smollm2-135m", device=args.device, dtype=args.dtype)
    pool = load_corpus("shakespeare", min_chars=args.min_chars, max_chars=args.max_chars)
    rng = np.random.default_rng(args.seed)
    texts = [pool[i] for i in rng.choice(len(pool), size=args.n, replace=False)]
    enc = encode_texts(texts, lm.tokenizer)
    lengths = enc.lengths
    n_tokens = int((lengths - 1).sum())  # predicted tokens
    flops_score = forward_flops(lm, lengths)

    if args.sweep:
        return sweep(lm, texts, flops_score, n_tokens, peak0, args)
    with quiet_transformers():
        score_texts(lm, texts[:2], batch_size=2)  # warm-up both paths
        per_sample_scores(lm, enc.tokens[:2])

        mem: dict[str, int] = {}
        t0 = time.perf_counter()
        with peak_memory(mem, "score_memlens", lm.device):
            bits_m = score_texts(
                lm, texts, batch_size=args.batch_size, max_tokens=args.max_tokens
            ).bits
        t_score_m = time.perf_counter() - t0
        t0 = time.perf_counter()
        with peak_memory(mem, "score_base", lm.device):
            bits_b = per_sample_scores(lm, enc.tokens)
        t_score_b = time.perf_counter() - t0

        p = 1 + args.prefix  # BOS + prefix text tokens
        elig = [t for t in enc.tokens if len(t) - 1 >= args.prefix + args.suffix]
        prompts = np.stack([t[:p] for t in elig])
        n_gen = len(elig) * args.suffix
        per_gen = forward_flops(lm, np.array([p]))  # prompt, then one token at positions p..
        flops_gen = len(elig) * (
            per_gen
            + sum(
                forward_flops(lm, np.array([p + k + 1])) - forward_flops(lm, np.array([p + k]))
                for k in range(args.suffix - 1)
            )
        )
        t0 = time.perf_counter()
        with peak_memory(mem, "gen_memlens", lm.device):
            gen_m = greedy_continue(
                lm.model, prompts, args.suffix, batch_size=args.batch_size
            ).numpy()
        t_gen_m = time.perf_counter() - t0
        t0 = time.perf_counter()
        with peak_memory(mem, "gen_base", lm.device):
            gen_b = per_sample_generate(lm, prompts, args.suffix)
        t_gen_b = time.perf_counter() - t0
    peak1 = matmul_peak_gflops()
    peak = max(peak0, peak1)

    per_tok = np.abs(bits_m - bits_b) / np.maximum(lengths - 1, 1)
    same = int((gen_m == gen_b).all(axis=1).sum())
    print(
        f"SmolLM2-135M ({lm.n_params / 1e6:.1f}M params, {lm.dtype}, {lm.device}), "
        f"{torch.get_num_threads()} thread(s); {args.n} texts of {lengths.min() - 1}-{lengths.max() - 1} "
        f"tokens ({n_tokens} scored), batch {args.batch_size}; extraction {len(elig)} texts x "
        f"{args.prefix}+{args.suffix} tokens"
    )
    print(
        f"fp32 matmul peak (2048^3): {peak0:.0f} GFLOP/s before, {peak1:.0f} after; "
        f"fractions below use {peak:.0f}"
    )
    rows = [
        ("scoring", "memlens batched", t_score_m, n_tokens, flops_score, mem["score_memlens"]),
        ("scoring", "per-sample loop", t_score_b, n_tokens, flops_score, mem["score_base"]),
        ("extraction", "memlens KV batch", t_gen_m, n_gen, flops_gen, mem["gen_memlens"]),
        ("extraction", "generate per text", t_gen_b, n_gen, flops_gen, mem["gen_base"]),
    ]
    print(
        f"{'':11s}{'side':18s}{'wall s':>8s}{'tokens/s':>10s}{'GFLOP/s':>9s}{'% peak':>8s}{'peak MB':>9s}"
    )
    for phase, side, t, n, fl, m in rows:
        print(
            f"{phase:11s}{side:18s}{t:8.1f}{n / t:10.1f}{fl / t / 1e9:9.1f}"
            f"{100 * fl / t / 1e9 / peak:7.1f}%{m / 2**20:9.0f}"
        )
    print(
        f"ratios (baseline time / memlens time): scoring {t_score_b / t_score_m:.2f}x, "
        f"extraction {t_gen_b / t_gen_m:.2f}x, both {(t_score_b + t_gen_b) / (t_score_m + t_gen_m):.2f}x"
    )
    print(
        f"agreement: max |bits diff| per token {per_tok.max():.1e}; identical greedy suffixes "
        f"{same}/{len(elig)}"
    )


def sweep(lm, texts, flops, n_tokens, peak, args) -> None:
    """What was tried on the batched scoring path: batch size (with no token budget, and
    memlens's default budget) x threads, and bfloat16."""
    from memlens.models.hf import load_causal_lm
    from memlens.scoring import score_texts

    ref = None
    print(f"{len(texts)} texts, {n_tokens} tokens; fp32 matmul peak {peak:.0f} GFLOP/s")
    print(
        f"{'dtype':9s}{'threads':>8s}{'batch':>6s}{'tokens':>8s}{'wall s':>8s}{'tokens/s':>10s}{'% peak':>8s}{'max |dbits|/tok':>16s}"
    )
    for dtype in ("float32", "bfloat16"):
        model = (
            lm
            if dtype == "float32"
            else load_causal_lm("smollm2-135m", device=args.device, dtype=dtype)
        )
        for threads in (1, 2):
            torch.set_num_threads(threads)
            arms = [(1, None), (4, 10**9), (16, 10**9), (64, 10**9), (64, None)]
            for bs, budget in arms if dtype == "float32" else [(16, 10**9)]:
                sub = texts if dtype == "float32" else texts[:4]
                t0 = time.perf_counter()
                sc = score_texts(model, sub, batch_size=bs, max_tokens=budget)
                t = time.perf_counter() - t0
                n_tok = sum(len(x) - 1 for x in sc.tokens)
                if ref is None:
                    ref = sc.bits
                diff = np.max(
                    np.abs(sc.bits - ref[: len(sub)])
                    / np.maximum([len(x) - 1 for x in sc.tokens], 1)
                )
                frac = flops * n_tok / n_tokens / t / 1e9 / peak
                limit = "any" if budget else f"{2**25 // model.vocab_size}"
                print(
                    f"{dtype:9s}{threads:8d}{bs:6d}{limit:>8s}{t:8.1f}{n_tok / t:10.1f}{100 * frac:7.1f}%{diff:16.1e}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
