"""Tiny Hugging Face models, tokenizers and corpora built locally for tests (no hub access).

Plain functions, importable from every test folder (``tests/`` is on ``sys.path``); the pytest
fixtures built on them (``one_thread``, ``word_tokenizer``, ``tiny_gpt2_dir``, ``tiny_llama_dir``,
``overfit``) are in ``tests/conftest.py``, so a test only names them as arguments::

    def test_something(overfit, word_tokenizer): ...

* :func:`make_sentences`: a seeded toy language (a small grammar with random word choices), so a
  model can learn structure from it and memorize individual sentences beyond it.
* :func:`wordlevel_tokenizer` / :func:`bpe_tokenizer`: a word-level and a character-BPE
  ``PreTrainedTokenizerFast`` trained on given texts, each with ``<|endoftext|>`` as BOS/EOS
  (GPT-2 style) and a ``[PAD]`` token. Two different tokenizers for cross-tokenizer tests.
* :func:`tiny_gpt2`, :func:`tiny_llama`, :func:`uniform_gpt2` (all weights zero, so every
  prediction is uniform over the vocabulary: the code length of ``n`` predicted tokens is exactly
  ``n * log2 V`` bits, a closed form for tests).
* :func:`train_lm`: full-batch Adam on texts (BOS prepended, padding ignored), deterministic.
* :func:`overfit_bundle`: a target GPT-2 trained to memorize 30 sentences, a reference GPT-2 of
  the same shape trained on 30 *other* sentences of the same language, held-out sentences, all
  saved with ``save_pretrained``; built once per process (about 10 s on one CPU core).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["<|endoftext|>", "[PAD]", "[UNK]"]

_SUBJECTS = [
    "the cat",
    "a dog",
    "my aunt",
    "the king",
    "a robot",
    "our cook",
    "the pilot",
    "a child",
]
_VERBS = ["sees", "likes", "paints", "finds", "eats", "hides", "sells", "wants"]
_ADJS = ["red", "old", "tiny", "blue", "odd", "calm", "wet", "loud"]
_NOUNS = ["apple", "boat", "lamp", "shoe", "river", "coin", "tree", "song"]
_PLACES = [
    "at noon",
    "in town",
    "by the sea",
    "at home",
    "on monday",
    "in spring",
    "at dawn",
    "all day",
]


def make_sentences(n: int, seed: int) -> list[str]:
    """``n`` distinct sentences ``<subject> <verb> the <adj> <noun> and the <adj> <noun> <place>``.

    Each sentence carries 8 independent uniform choices of 8 (24 bits) beyond the grammar;
    about 13-17 word tokens.
    """
    rng = np.random.default_rng(seed)
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        s, v, a1, n1, a2, n2, p, v2 = (int(x) for x in rng.integers(0, 8, size=8))
        text = (
            f"{_SUBJECTS[s]} {_VERBS[v]} the {_ADJS[a1]} {_NOUNS[n1]} and "
            f"{_VERBS[v2]} the {_ADJS[a2]} {_NOUNS[n2]} {_PLACES[p]}"
        )
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def all_words() -> list[str]:
    """Every word the toy language can produce, sorted."""
    words: set[str] = set()
    for group in (_SUBJECTS, _VERBS, _ADJS, _NOUNS, _PLACES, ["the", "and"]):
        for phrase in group:
            words.update(phrase.split())
    return sorted(words)


def _wrap(tok, model_max_length: int = 1024):
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="[PAD]",
        unk_token="[UNK]",
        model_max_length=model_max_length,
    )


def wordlevel_tokenizer(words: list[str] | None = None):
    """A whitespace word-level tokenizer: ids 0-2 are ``<|endoftext|>``, ``[PAD]``, ``[UNK]``,
    then ``words`` (default: :func:`all_words`) in the given order."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = all_words() if words is None else words
    vocab = {w: i for i, w in enumerate(SPECIALS + [w for w in words if w not in SPECIALS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return _wrap(tok)


def bpe_tokenizer(texts: list[str], vocab_size: int = 60):
    """A character-level BPE tokenizer (whitespace pre-tokenized) trained on ``texts``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return _wrap(tok)


def tiny_gpt2(
    vocab_size: int, n_positions: int = 64, n_layer: int = 1, n_embd: int = 32, seed: int = 0
):
    """A randomly initialised ``GPT2LMHeadModel`` (dropout 0), deterministic in ``seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_llama(vocab_size: int, max_positions: int = 64, seed: int = 0):
    """A randomly initialised ``LlamaForCausalLM`` (RoPE, 1 layer, width 32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    return LlamaForCausalLM(cfg).eval()


def uniform_gpt2(vocab_size: int, n_positions: int = 64):
    """A ``GPT2LMHeadModel`` with every weight zero: logits are 0, predictions uniform over V."""
    model = tiny_gpt2(vocab_size, n_positions=n_positions)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def save_lm(model, tokenizer, path: str | Path) -> Path:
    """``save_pretrained`` the model and tokenizer into ``path``; returns the path."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


def encode_batch(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids, mask)``: BOS + tokens, right-padded with the pad id; mask marks real tokens."""
    rows = [
        [tokenizer.bos_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"]
        for t in texts
    ]
    T = max(map(len, rows))
    ids = torch.full((len(rows), T), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = True
    return ids, mask


def train_lm(model, tokenizer, texts: list[str], steps: int = 300, lr: float = 3e-3, seed: int = 0):
    """Full-batch Adam on ``texts`` (next-token loss on real tokens only); returns the model in eval mode."""
    torch.manual_seed(seed)
    ids, mask = encode_batch(tokenizer, texts)
    labels = ids.masked_fill(~mask, -100)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        out = model(input_ids=ids, attention_mask=mask.long(), labels=labels)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return model.eval()


@contextlib.contextmanager
def single_thread():
    """Run torch on one intra-op thread, then restore the previous count.

    Tiny models gain nothing from a second thread, and on a shared, busy CPU two OpenMP threads
    that wait for each other can be tens of times slower than one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class OverfitBundle:
    """Saved models and texts for audit tests (see :func:`overfit_bundle`)."""

    root: Path
    target: Path  # GPT-2 trained to memorize ``train``
    reference: Path  # same shape and tokenizer, trained on ``ref_train`` (disjoint)
    train: tuple[str, ...]
    heldout: tuple[str, ...]
    ref_train: tuple[str, ...]


@functools.cache
def overfit_bundle(steps: int = 250) -> OverfitBundle:
    """Train and save a memorizing target and a reference GPT-2 once per process.

    Two models of one shape (2 layers, width 64, context 32) are trained together as one memlens
    :class:`~memlens.models.gpt.GPT` stack (K = 2, full-batch Adam, ``steps`` steps): model 0 on
    30 ``train`` sentences, model 1 on 30 disjoint ``ref_train`` sentences, and exported with
    ``GPT.to_hf``. ``heldout`` holds 30 further sentences of the same language.
    """
    with single_thread():
        return _overfit_bundle(steps)


def _overfit_bundle(steps: int) -> OverfitBundle:
    from memlens.models.gpt import GPT, GPTConfig

    sentences = make_sentences(90, seed=1234)
    train, heldout, ref_train = sentences[:30], sentences[30:60], sentences[60:90]
    tok = wordlevel_tokenizer()
    ids_t, mask_t = encode_batch(tok, train)
    ids_r, mask_r = encode_batch(tok, ref_train)
    T = max(ids_t.shape[1], ids_r.shape[1])

    def pad(ids, mask):
        extra = T - ids.shape[1]
        return (
            torch.nn.functional.pad(ids, (0, extra), value=tok.pad_token_id),
            torch.nn.functional.pad(mask, (0, extra), value=False),
        )

    ids_t, mask_t = pad(ids_t, mask_t)
    ids_r, mask_r = pad(ids_r, mask_r)
    ids = torch.stack([ids_t, ids_r])  # [2, 30, T]
    mask = torch.stack([mask_t, mask_r])
    targets = ids[..., 1:].masked_fill(~mask[..., 1:], -100)

    g = torch.Generator().manual_seed(0)
    model = GPT(
        GPTConfig(vocab_size=len(tok), seq_len=32, n_layer=2, d_model=64, n_head=4),
        n_models=2,
        generator=g,
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        logits = model(ids[..., :-1])
        # Sum over the two models so each gets its own mean loss gradient.
        loss = sum(
            torch.nn.functional.cross_entropy(
                logits[k].reshape(-1, logits.shape[-1]), targets[k].reshape(-1), ignore_index=-100
            )
            for k in range(2)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    root = Path(tempfile.mkdtemp(prefix="memlens-overfit-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    target = save_lm(model.to_hf(0), tok, root / "target")
    reference = save_lm(model.to_hf(1), tok, root / "reference")
    return OverfitBundle(root, target, reference, tuple(train), tuple(heldout), tuple(ref_train))


def write_lines(path: str | Path, texts: list[str] | tuple[str, ...]) -> Path:
    """Write texts one per line (UTF-8)."""
    path = Path(path)
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: str | Path, texts: list[str] | tuple[str, ...], column: str = "text") -> Path:
    """Write texts as JSON lines ``{column: text}``."""
    import json

    path = Path(path)
    path.write_text("".join(json.dumps({column: t}) + "\n" for t in texts), encoding="utf-8")
    return path
