"""Watch a fine-tuning run memorize: repeated sentences first, unique ones later, held-out never.

What a model trainer would do:

1. A *base* GPT-2 (``transformers.GPT2LMHeadModel``, 2 layers, width 64) pre-trained on 3000
   sentences of a small grammar (8 random word choices of 8 per sentence: 24 bits beyond the
   grammar), saved with ``save_pretrained``.
2. A fine-tuning corpus of 400 *new* sentences, plus 8 sentences repeated 32 times each.
3. ``memlens track`` (here :func:`memlens.track.run_text`) fine-tunes the base model with a
   Hugging Face ``Trainer`` and tracks the 8 repeated sentences, 40 of the unique ones and 40
   held-out sentences of the same grammar. The reference for unintended bits is the base model
   itself: bits the fine-tuned model saves on a text beyond what it knew before fine-tuning.

Run: ``python examples/track_finetune.py [--out examples-out/track]`` (a few minutes on one CPU
core). It prints the equivalent ``memlens track`` command.
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


def tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(
        {
            w
            for group in (SUBJECTS, VERBS, ADJS, NOUNS, PLACES, ["the", "and"])
            for p in group
            for w in p.split()
        }
    )
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


def pretrain(tok, texts: list[str], steps: int, seed: int):
    """Mini-batch AdamW on BOS + tokens, padding ignored, dropout 0."""
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
        if step % 200 == 0 or step == steps - 1:
            print(f"  pre-training step {step:4d}  loss {loss.item() / np.log(2):.3f} bits/token")
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("examples-out/track"))
    ap.add_argument("--steps", type=int, default=400, help="fine-tuning steps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared CPU

    from transformers.utils import logging as hf_logging

    from memlens.track import TextTrackConfig, run_text

    hf_logging.disable_progress_bar()
    rng = np.random.default_rng(args.seed)
    pool = list(dict.fromkeys(sentence(rng) for _ in range(6000)))
    base_texts, unique, repeated, held = (
        pool[:3000],
        pool[3000:3400],
        pool[3400:3408],
        pool[3408:3448],
    )
    d = args.out
    d.mkdir(parents=True, exist_ok=True)
    finetune = unique + repeated * 32
    order = rng.permutation(len(finetune))
    (d / "finetune.txt").write_text("\n".join(finetune[i] for i in order) + "\n", encoding="utf-8")
    (d / "track.txt").write_text("\n".join(repeated + unique[:40] + held) + "\n", encoding="utf-8")
    if not (d / "base" / "config.json").exists():
        tok = tokenizer()
        print("pre-training the base model on 3000 sentences of the grammar")
        pretrain(tok, base_texts, 600, args.seed).save_pretrained(d / "base")
        tok.save_pretrained(d / "base")

    cfg = TextTrackConfig(
        model=str(d / "base"), train=str(d / "finetune.txt"), track=str(d / "track.txt"),
        reference=str(d / "base"), steps=args.steps, lr=3e-3, batch_size=16, prefix=4, suffix=8,
        seed=args.seed,
    )  # fmt: skip
    res = run_text(cfg, d / "run")
    for g, m in res.summary.groups.items():
        print(
            f"{g:8s} n={m.n:3d} seen {m.training_occurrences:.0f}x: memorized {m.fraction_memorized:.2f}, "
            f"median first step {m.median_first_memorized_step}, mean unintended bits {m.mean_unintended_bits_final:.1f}"
        )
    print(
        f"\nsame run from the shell:\n  memlens track --model {d}/base --reference {d}/base --train {d}/finetune.txt "
        f"--track {d}/track.txt --steps {args.steps} --lr 3e-3 --batch-size 16 --prefix 4 --suffix 8 --out {d}/run-cli"
    )


if __name__ == "__main__":
    main()
