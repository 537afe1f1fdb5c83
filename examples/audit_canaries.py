"""Plant canaries and repeats in a small corpus, train a tiny GPT-2 on it, and audit it.

What a model trainer would do before releasing a model:

1. A generated corpus of 4000 simple sentences (a small grammar with 8 random word choices of 8,
   24 bits each), with 10 sentences repeated 32 times each and 10 random *canaries* (12 words
   drawn at random from the vocabulary, no grammar) inserted 8 times each.
2. A target GPT-2 (``transformers.GPT2LMHeadModel``, 2 layers, width 64) trained on it, and a
   reference GPT-2 of the same shape trained on a disjoint clean corpus of the same grammar
   (no repeats, no canaries); both saved with ``save_pretrained``.
3. ``memlens.audit.run``: the canaries and repeated sentences should top the list of
   memorized samples, in bits.

Run: ``python examples/audit_canaries.py [--out examples-out/audit]`` (a few minutes on one CPU
core; ``--retrain`` retrains models already in ``--out``). It also prints the equivalent ``memlens audit`` command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

SUBJECTS = [
    "the cat",
    "a dog",
    "my aunt",
    "the king",
    "a robot",
    "our cook",
    "the pilot",
    "a child",
]
VERBS = ["sees", "likes", "paints", "finds", "eats", "hides", "sells", "wants"]
ADJS = ["red", "old", "tiny", "blue", "odd", "calm", "wet", "loud"]
NOUNS = ["apple", "boat", "lamp", "shoe", "river", "coin", "tree", "song"]
N_NORMAL = 4000  # sentences seen once in the target's corpus (and as many in the reference's)
PLACES = [
    "at noon",
    "in town",
    "by the sea",
    "at home",
    "on monday",
    "in spring",
    "at dawn",
    "all day",
]


def sentence(rng: np.random.Generator) -> str:
    c = lambda xs: xs[int(rng.integers(len(xs)))]  # noqa: E731
    return f"{c(SUBJECTS)} {c(VERBS)} the {c(ADJS)} {c(NOUNS)} and {c(VERBS)} the {c(ADJS)} {c(NOUNS)} {c(PLACES)}"


def corpus(seed: int = 0) -> dict[str, list[str]]:
    rng = np.random.default_rng(seed)
    pool = list(dict.fromkeys(sentence(rng) for _ in range(3 * N_NORMAL)))
    normal, repeated = pool[:N_NORMAL], pool[N_NORMAL : N_NORMAL + 10]
    held = pool[N_NORMAL + 10 : N_NORMAL + 210]
    ref = pool[N_NORMAL + 210 : 2 * N_NORMAL + 210]
    words = sorted({w for s in pool for w in s.split()})
    canaries = [" ".join(rng.choice(words, size=12)) for _ in range(10)]
    train = normal + repeated * 32 + canaries * 8
    order = rng.permutation(len(train))
    return {
        "train": [train[i] for i in order],
        "heldout": held,
        "reference_train": ref,
        "canaries": canaries,
        "repeated": repeated,
    }


def tokenizer_for(texts: list[str]):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in texts for w in t.split()})
    vocab = {w: i for i, w in enumerate(["<|endoftext|>", "[PAD]", "[UNK]", *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="[PAD]",
        unk_token="[UNK]",
    )


def train_gpt2(tok, texts: list[str], steps: int, seed: int):
    """Mini-batch Adam on BOS + tokens, padding ignored; dropout 0."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=32, n_embd=64, n_layer=2, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    model = GPT2LMHeadModel(cfg)
    # the plain next-token loss, named: left unset, Transformers warns on the console
    model.loss_type = "ForCausalLM"
    rows = [[tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]] for t in texts]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tok.pad_token_id)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        b = torch.randint(0, len(rows), (64,), generator=g)
        loss = model(input_ids=ids[b], attention_mask=mask[b], labels=labels[b]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 500 == 0 or step == steps - 1:
            print(f"  step {step:5d}  loss {loss.item() / np.log(2):.3f} bits/token")
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("examples-out/audit"))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--retrain", action="store_true", help="train again even if --out has the models"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared CPU

    from transformers.utils import logging as hf_logging

    from memlens.audit.recipe import AuditConfig, run

    hf_logging.disable_progress_bar()
    data = corpus(args.seed)
    d = args.out
    d.mkdir(parents=True, exist_ok=True)
    for name in ("train", "heldout"):
        (d / f"{name}.txt").write_text("\n".join(data[name]) + "\n", encoding="utf-8")
    tok = tokenizer_for(data["train"] + data["heldout"] + data["reference_train"])
    if args.retrain or not (d / "reference" / "config.json").exists():
        print("training the target (corpus with repeats and canaries)")
        train_gpt2(tok, data["train"], args.steps, args.seed).save_pretrained(d / "target")
        print("training the reference (disjoint clean corpus of the same grammar)")
        ref = train_gpt2(tok, data["reference_train"], args.steps, args.seed + 1)
        ref.save_pretrained(d / "reference")
        for m in ("target", "reference"):
            tok.save_pretrained(d / m)

    cfg = AuditConfig(
        model=str(d / "target"), reference=str(d / "reference"), train=str(d / "train.txt"),
        heldout=str(d / "heldout.txt"), prefix=4, suffix=8, device="cpu", top_k=20,
    )  # fmt: skip
    res = run(cfg, d / "run")
    s = res.summary
    planted = set(data["canaries"]) | set(data["repeated"])
    top = [r.text for r in s.top_memorized]
    print()
    for split, m in (("train", s.train), ("heldout", s.heldout)):
        print(
            f"{split}: mean {m.mean_unintended_bits:.1f} bits/sample, extraction rate "
            f"{m.extraction_rate:.3f} of {m.n_extraction_eligible} eligible"
        )
    print(f"planted samples among the top 20 memorized: {sum(t in planted for t in top)}/20")
    for r in s.top_memorized[:8]:
        kind = (
            "canary"
            if r.text in data["canaries"]
            else "repeat"
            if r.text in data["repeated"]
            else "normal"
        )
        print(f"  {r.unintended_bits:6.1f} bits  x{r.count}  {kind:6s}  {r.text}")
    print(
        f"\nsame audit from the shell:\n  memlens audit --model {d}/target --reference {d}/reference "
        f"--train {d}/train.txt --heldout {d}/heldout.txt --prefix 4 --suffix 8 --out {d}/run-cli"
    )


if __name__ == "__main__":
    main()
