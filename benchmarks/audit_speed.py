"""Speed of the audit's model work against a per-sample loop, measured in the same run.

Both sides compute the same two things on the same model and texts:

1. the code length in bits of every text (log-probabilities of every token);
2. greedy k-extraction: ``--suffix`` greedy tokens after each text's ``--prefix``-token prompt.

memlens: one batched scoring pass (:func:`memlens.scoring.score_texts`: length-sorted,
padded, attention-masked) and batched KV-cached greedy decoding
(:func:`memlens.audit.extraction.k_extraction`). Baseline: what the most used benchmark does,
one sequence per forward pass for scoring and one ``model.generate`` call per sample.
The results are checked to agree (bits to 1e-3, identical greedy tokens).

Both run with one torch thread (``--threads``) so the ratio reflects batching, not thread
scheduling on a shared machine. The model is a randomly initialised GPT-2 (speed does not depend
on the weights): 4 layers, width 128, vocabulary 8192, context 128.

By default every text is a 64-token chunk (what ``memlens audit --seq-len 64`` produces; the
Pythia 32+32 setting, every sample extraction-eligible); ``--ragged`` uses texts of 45-115
tokens instead. Scoring is compute-bound on a CPU (one long sequence already makes a decent
matrix product), so most of the gain comes from batched decoding, where a per-sample ``generate``
pays the framework's per-step overhead for a single row.

Usage: ``python benchmarks/audit_speed.py [--n 128] [--prefix 32] [--suffix 32] [--threads 1] [--ragged]``
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers_hf import make_sentences, save_lm, wordlevel_tokenizer  # noqa: E402
from memlens.audit.extraction import k_extraction  # noqa: E402
from memlens.models.hf import load_causal_lm
from memlens.scoring import score_texts


def build(n: int, seed: int, ragged: bool) -> tuple[Path, list[str]]:
    """A random GPT-2 and ``n`` texts: 64-token chunks (``--seq-len 64``), or ragged 45-115 tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from memlens.data.text import chunk_texts

    torch.manual_seed(seed)
    tok = wordlevel_tokenizer()
    cfg = GPT2Config(
        vocab_size=8192,
        n_positions=128,
        n_embd=128,
        n_layer=4,
        n_head=4,
        bos_token_id=0,
        eos_token_id=0,
    )
    path = save_lm(GPT2LMHeadModel(cfg), tok, Path(tempfile.mkdtemp(prefix="audit-speed-")))
    rng = np.random.default_rng(seed)
    sentences = make_sentences(2000, seed)
    # 3 to 7 sentences per text: 45 to 115 word tokens
    texts = [
        " ".join(rng.choice(sentences, size=int(rng.integers(3, 8)), replace=False))
        for _ in range(4 * n)
    ]
    if ragged:
        return path, texts[:n]
    chunks = [c.strip() for c in chunk_texts(texts, tok, 64)]
    return path, [c for c in chunks if len(tok(c, add_special_tokens=False)["input_ids"]) == 64][:n]


def per_sample(lm, texts: list[str], prefix: int, suffix: int):
    """The baseline: one forward per text, one ``generate`` per eligible text."""
    bits, gens = [], []
    t_score = t_gen = 0.0
    with torch.inference_mode():
        for text in texts:
            t0 = time.perf_counter()
            ids = torch.tensor(
                [[lm.bos_token_id] + lm.tokenizer(text, add_special_tokens=False)["input_ids"]]
            )
            logp = torch.log_softmax(lm.model(input_ids=ids).logits[0, :-1].float(), -1)
            bits.append(-logp.gather(-1, ids[0, 1:, None]).sum().item() / math.log(2))
            t1 = time.perf_counter()
            t_score += t1 - t0
            if ids.shape[1] - 1 >= prefix + suffix:
                prompt = ids[:, : 1 + prefix]
                out = lm.model.generate(
                    prompt,
                    attention_mask=torch.ones_like(prompt),
                    do_sample=False,
                    max_new_tokens=suffix,
                    min_new_tokens=suffix,
                    eos_token_id=None,
                    pad_token_id=0,
                )
                gens.append(out[0, 1 + prefix :].numpy())
                t_gen += time.perf_counter() - t1
            else:
                gens.append(None)
    return np.array(bits), gens, (t_score, t_gen)


def batched(lm, texts: list[str], prefix: int, suffix: int, batch_size: int):
    t0 = time.perf_counter()
    res = score_texts(lm, texts, batch_size=batch_size)
    t1 = time.perf_counter()
    ext = k_extraction(
        lm.model,
        res.tokens,
        prefix=prefix,
        suffix=suffix,
        n_lead=1,
        context_length=lm.context_length,
        batch_size=batch_size,
    )
    return res.bits, ext.generated, (t1 - t0, time.perf_counter() - t1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--prefix", type=int, default=32)
    ap.add_argument("--suffix", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ragged", action="store_true", help="texts of 45-115 tokens instead of 64-token chunks"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path, texts = build(args.n, args.seed, args.ragged)
    lm = load_causal_lm(path, device="cpu", dtype="float32")
    batched(lm, texts[:4], args.prefix, args.suffix, args.batch_size)  # warm-up both paths
    per_sample(lm, texts[:2], args.prefix, args.suffix)

    t0 = time.perf_counter()
    bits_m, gen_m, (s_m, g_m) = batched(lm, texts, args.prefix, args.suffix, args.batch_size)
    t_mem = time.perf_counter() - t0
    t0 = time.perf_counter()
    bits_b, gen_b, (s_b, g_b) = per_sample(lm, texts, args.prefix, args.suffix)
    t_base = time.perf_counter() - t0

    assert np.allclose(bits_m, bits_b, atol=1e-3), np.abs(bits_m - bits_b).max()
    n_elig = sum(g is not None for g in gen_b)
    assert all((a is None) == (b is None) for a, b in zip(gen_m, gen_b, strict=True))
    same = sum(np.array_equal(a, b) for a, b in zip(gen_m, gen_b, strict=True) if a is not None)
    shape = "ragged 45-115-token texts" if args.ragged else "64-token texts"
    print(
        f"audit model work: {len(texts)} {shape}, {n_elig} extraction-eligible, prefix {args.prefix}, "
        f"suffix {args.suffix}, GPT-2 4x128 V=8192, batch {args.batch_size}, {args.threads} thread(s)"
    )
    print(f"{'':12s}{'memlens':>10s}{'baseline':>10s}{'ratio':>8s}")
    for name, a, b in [("scoring", s_m, s_b), ("extraction", g_m, g_b), ("total", t_mem, t_base)]:
        print(f"{name:12s}{a:9.2f}s{b:9.2f}s{b / a:7.1f}x")
    print(
        f"agreement: max |bits diff| = {np.abs(bits_m - bits_b).max():.2e}, identical greedy suffixes {same}/{n_elig}"
    )


if __name__ == "__main__":
    main()
