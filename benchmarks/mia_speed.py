"""Speed of memlens's membership-inference attacks against a per-sample baseline.

Both sides compute the same forward-pass attacks (loss, zlib, ref, min_k, min_k_pp, lowercase)
on the same target and reference GPT-2 models and the same texts, in one run:

* **memlens**: :func:`memlens.mia.recipe.score_samples` — one batched, length-sorted scoring pass
  over the texts and their lowercased copies (per-token log2 p and the Min-K%++ vocabulary
  statistics reduced on the device), plus one batched pass of the reference.
* **baseline**: the pattern of the widely used benchmark code (MIMIR, the Min-K% and Min-K%++
  reference implementations): one sequence per forward pass, the full ``[T, V]`` log-softmax
  moved to the CPU, and a Python loop over tokens; the reference and the lowercased text each get
  their own per-sample forward.

The two sides must agree (largest relative score difference is printed and checked). The
``gradnorm`` attack needs one backward pass per sample on both sides, so it is timed separately
with ``--gradnorm`` and not part of the ratio.

Both sides do the same arithmetic; the difference is how it is scheduled. On a CPU with one
thread the work is compute-bound and the ratio is about 1 (measured: 1.0x CPU time for the
``--quick`` and the default model). With several threads the batched matrix products keep the
cores busy while one short sequence at a time does not, and on a shared machine the per-sample
baseline's many small parallel regions suffer most from other jobs. The "about 5x" of the
literature is for a GPU, where a batch of one leaves the device idle and the log-softmax is moved
to the CPU; this script cannot measure that here. Wall and CPU time are both printed.

Run: ``.venv/bin/python benchmarks/mia_speed.py`` (add ``--quick`` for a smaller model).
"""

from __future__ import annotations

import argparse
import math
import time
import zlib

import numpy as np
import torch

ATTACKS = ["loss", "zlib", "ref", "min_k", "min_k_pp", "lowercase"]


def make_texts(n: int, seed: int) -> list[str]:
    """Pseudo-English: capitalized made-up names among common lowercase words."""
    rng = np.random.default_rng(seed)
    syll = [c + v for c in "bdfghklmnprstvz" for v in "aeiou"] + ["an", "el", "or", "is", "um"]
    common = "the a of and to in is was for on with as by at from that it his her they we".split()
    words = ["".join(rng.choice(syll, size=rng.integers(1, 4))) for _ in range(20000)]
    out = []
    for _ in range(n):
        length = int(rng.integers(40, 90))
        toks = []
        for _ in range(length):
            r = rng.random()
            if r < 0.35:
                toks.append(str(rng.choice(common)))
            elif r < 0.55:
                toks.append(str(rng.choice(words)).capitalize())
            else:
                toks.append(str(rng.choice(words)))
        out.append(" ".join(toks) + ".")
    return out


def build_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "[PAD]", "[UNK]"],
        show_progress=False,
    )
    tok.train_from_iterator(texts + [t.lower() for t in texts], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="[PAD]",
        unk_token="[UNK]",
    )


def build_model(vocab: int, layers: int, d: int, ctx: int, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab, n_positions=ctx, n_embd=d, n_layer=layers, n_head=max(1, d // 64),
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg).eval()


# -- the per-sample baseline ---------------------------------------------------------------------


@torch.no_grad()
def baseline_token_stats(model, tokenizer, text: str, want_stats: bool):
    """One text, one forward; full log-softmax to the CPU; Python loop over tokens."""
    ids = [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]
    x = torch.tensor([ids])
    logits = model(input_ids=x).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1).cpu()  # full [T, V] on the host
    if want_stats:
        probs = logp.exp()
        mu = (probs * logp).sum(-1)
        sigma = ((probs * logp.square()).sum(-1) - mu.square()).clamp_min(0).sqrt()
    token_logp, z = [], []
    for t in range(len(ids) - 1):  # Python token loop
        lp = logp[t, ids[t + 1]].item()
        token_logp.append(lp / math.log(2))
        if want_stats:
            z.append((lp - mu[t].item()) / max(sigma[t].item(), 1e-12))
    return token_logp, z


def baseline_scores(
    target, reference, tokenizer, texts: list[str], k: float = 0.2
) -> dict[str, np.ndarray]:
    cols: dict[str, list[float]] = {a: [] for a in ATTACKS}
    for text in texts:
        lp, z = baseline_token_stats(target, tokenizer, text, want_stats=True)
        n = len(lp)
        nll = -sum(lp)
        cols["loss"].append(-nll / n)
        cols["zlib"].append(-nll / len(zlib.compress(text.encode("utf-8"), 9)))
        m = int(math.floor(n * k + 1e-9))
        cols["min_k"].append(float(np.mean(sorted(lp)[:m])) if m else float("nan"))
        cols["min_k_pp"].append(float(np.mean(sorted(z)[:m])) if m else float("nan"))
        ref_lp, _ = baseline_token_stats(reference, tokenizer, text, want_stats=False)
        cols["ref"].append(-sum(ref_lp) - nll)
        low_lp, _ = baseline_token_stats(target, tokenizer, text.lower(), want_stats=False)
        cols["lowercase"].append((-sum(low_lp) / len(low_lp)) / (nll / n))
    return {a: np.asarray(v) for a, v in cols.items()}


def baseline_gradnorm(model, tokenizer, texts: list[str]) -> np.ndarray:
    out = []
    params = list(model.parameters())
    for text in texts:
        ids = torch.tensor(
            [[tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]]
        )
        model.zero_grad(set_to_none=True)
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        loss = -logp.gather(-1, ids[0, 1:, None]).mean() / math.log(2)
        loss.backward()
        out.append(
            math.sqrt(
                sum(float(p.grad.double().square().sum()) for p in params if p.grad is not None)
            )
        )
    return np.asarray(out)


# -- memlens -------------------------------------------------------------------------------------


def memlens_scores(
    target_lm, reference_lm, texts: list[str], batch_size: int
) -> dict[str, np.ndarray]:
    from memlens.mia.recipe import score_samples
    from memlens.scoring import score_texts

    ref_bits = score_texts(reference_lm, texts, batch_size=batch_size).bits
    scores, _ = score_samples(
        target_lm, texts, ATTACKS, references={"ref": ref_bits}, batch_size=batch_size
    )
    return scores


def wrap(model, tokenizer, name: str):
    from memlens.models.hf import CausalLM, context_length_of

    return CausalLM(
        model=model, tokenizer=tokenizer, name=name, source="huggingface", device=torch.device("cpu"),
        dtype=torch.float32, context_length=context_length_of(model.config),
        vocab_size=model.config.vocab_size, n_params=sum(p.numel() for p in model.parameters()),
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-texts", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--repeats", type=int, default=2, help="time each side this many times, keep the fastest"
    )
    ap.add_argument(
        "--gradnorm", action="store_true", help="also time the gradnorm attack on both sides"
    )
    ap.add_argument("--quick", action="store_true", help="a small model and 64 texts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.n_texts, args.layers, args.d_model, args.vocab = 64, 2, 128, 2048

    texts = make_texts(args.n_texts, args.seed)
    tok = build_tokenizer(texts, args.vocab)
    V = len(tok)
    target = build_model(V, args.layers, args.d_model, 256, args.seed)
    reference = build_model(V, args.layers, args.d_model, 256, args.seed + 1)
    n_tok = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)
    n_params = sum(p.numel() for p in target.parameters())
    print(
        f"models: GPT-2, {args.layers} layers, d={args.d_model}, V={V}, {n_params / 1e6:.2f}M params; "
        f"{len(texts)} texts, {n_tok} tokens (mean {n_tok / len(texts):.0f}); "
        f"torch threads {torch.get_num_threads()}; attacks: {', '.join(ATTACKS)}"
    )
    t_lm, r_lm = wrap(target, tok, "target"), wrap(reference, tok, "reference")
    memlens_scores(t_lm, r_lm, texts[:4], args.batch_size)  # warm-up both paths
    baseline_scores(target, reference, tok, texts[:4])

    best_m = best_b = cpu_m = cpu_b = float("inf")
    for _ in range(args.repeats):  # interleaved, so both sides see the same machine load
        t0, c0 = time.perf_counter(), time.process_time()
        ours = memlens_scores(t_lm, r_lm, texts, args.batch_size)
        best_m, cpu_m = min(best_m, time.perf_counter() - t0), min(cpu_m, time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        base = baseline_scores(target, reference, tok, texts)
        best_b, cpu_b = min(best_b, time.perf_counter() - t0), min(cpu_b, time.process_time() - c0)
    worst = max(
        float(np.nanmax(np.abs(ours[a] - base[a]) / (1 + np.abs(base[a])))) for a in ATTACKS
    )
    print(
        f"memlens  (one batched pass, batch {args.batch_size}): wall {best_m:7.2f} s  cpu {cpu_m:7.2f} s"
    )
    print(
        f"baseline (per sample, CPU log-softmax, token loop): wall {best_b:7.2f} s  cpu {cpu_b:7.2f} s"
    )
    print(
        f"speed-up: {best_b / best_m:.1f}x wall, {cpu_b / cpu_m:.1f}x cpu "
        f"(largest relative score difference {worst:.1e})"
    )
    if worst > 1e-4:
        raise SystemExit("memlens and the baseline disagree: the comparison is invalid")

    if args.gradnorm:
        from memlens.data.text import encode_texts
        from memlens.scoring import grad_norms

        enc = encode_texts(texts, tok)
        padded = np.zeros((len(texts), int(enc.lengths.max())), dtype=np.int64)
        for i, t in enumerate(enc.tokens):
            padded[i, : len(t)] = t
        c0 = time.process_time()
        g_m = grad_norms(t_lm.forward(), list(target.parameters()), padded, enc.lengths)
        cm = time.process_time() - c0
        c0 = time.process_time()
        g_b = baseline_gradnorm(target, tok, texts)
        cb = time.process_time() - c0
        rel = float(np.max(np.abs(g_m - g_b) / g_b))
        print(f"gradnorm (one backward per sample on both sides): memlens cpu {cm:.2f} s, "
              f"baseline cpu {cb:.2f} s, ratio {cb / cm:.2f}x, largest relative difference {rel:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
