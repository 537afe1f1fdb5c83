"""The candidate pool of a shadow-model experiment: token ids, texts and the population split.

Two kinds of world:

* **text**: a pool file in any format of :func:`memlens.data.text.read_texts` (``.txt`` one
  example per line, ``.jsonl``/``.csv``/``.parquet`` with a text column, a saved dataset). The
  pool is *not* deduplicated: an example that occurs several times is several examples (that is
  what makes repeated examples less counterfactually memorized). A text longer than
  ``seq_len - 1`` tokens is cut into pieces of that many tokens (:func:`memlens.data.text.chunk_texts`),
  each piece an example. Every example starts with a BOS token (free, not scored), so all its
  tokens are predicted. Tokens come from the given tokenizer, or from a byte-level BPE tokenizer
  trained on the pool with the ``tokenizers`` library (``vocab_size`` tokens, ``<|endoftext|>``
  as BOS and padding), saved with the shadows.
* **synthetic**: ``uniform`` (tokens i.i.d. uniform over ``V``) or ``markov`` (a seeded
  :class:`~memlens.data.synthetic.MarkovSource`): worlds whose code length under the true source
  is exact, so what a model does better than the source on an example is memorization. The
  first token is coded uniformly by every model alike and is not scored.

Examples shorter than ``seq_len`` are right-padded with the padding id; the padded positions
are neither trained on (the training loss averages over each example's real next-token targets,
``lengths`` of :func:`memlens.training.train_to_saturation`) nor scored: causal attention keeps
them from changing any real token's prediction.

A share ``population_frac`` of the examples (chosen among texts that occur once) is the
*population*: OUT for every shadow model, scored by all of them, the ``z`` samples of RMIA.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.shadow.design import copy_groups
from memlens.units import memorizable_bits, uniform_code_bits

BOS_TEXT = "<|endoftext|>"
MIN_VOCAB = 257  # 256 byte symbols + <|endoftext|>


@dataclass
class Pool:
    """All examples of a world (candidates and population).

    Attributes
    ----------
    tokens: ``[N, S]`` int64 ids, right-padded with ``pad_id``.
    lengths: ``[N]`` real tokens of each example (BOS included for text).
    texts: the example texts (``None`` for a synthetic world).
    counts: ``[N]`` how many examples of the pool hold the same token sequence.
    population: ``[N]`` True for the RMIA population (OUT for every shadow).
    vocab_size, pad_id: the vocabulary and the padding id.
    entropy_bits: ``[N]`` exact code length of the predicted tokens under the source (synthetic).
    tokenizer: the Hugging Face tokenizer (text worlds).
    source: a one-line description; ``pool_sha256`` fingerprints the pool as read.
    """

    tokens: np.ndarray
    lengths: np.ndarray
    texts: list[str] | None
    counts: np.ndarray
    population: np.ndarray
    vocab_size: int
    pad_id: int
    source: str
    pool_sha256: str
    entropy_bits: np.ndarray | None = None
    tokenizer: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def candidates(self) -> np.ndarray:
        """Indices of the candidate examples (the balanced design's columns)."""
        return np.flatnonzero(~self.population)

    @property
    def population_index(self) -> np.ndarray:
        return np.flatnonzero(self.population)

    def fingerprint(self) -> str:
        """A hash of the token ids, lengths and population split: equal pools, equal hashes."""
        h = hashlib.sha256()
        for a in (self.tokens, self.lengths, self.population):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(str(self.vocab_size).encode())
        return h.hexdigest()[:16]


def texts_sha256(texts: list[str]) -> str:
    """Fingerprint of a list of texts (order and content)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (``tokenizers``), as a fast HF tokenizer.

    ``<|endoftext|>`` is the BOS, EOS and padding token. Deterministic for the same texts.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB:
        raise UserError(
            f"a byte-level tokenizer needs a vocabulary of at least {MIN_VOCAB}, got {vocab_size}."
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS_TEXT, eos_token=BOS_TEXT, pad_token=BOS_TEXT
    )


def _population(counts: np.ndarray, frac: float, seed: int) -> np.ndarray:
    """Choose ``round(frac * N)`` examples among those that occur once."""
    n = counts.size
    want = int(round(frac * n))
    pop = np.zeros(n, dtype=bool)
    if want == 0:
        return pop
    unique = np.flatnonzero(counts == 1)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x909]))
    pop[rng.permutation(unique)[: min(want, unique.size)]] = True
    return pop


def _counts(tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """How many copies of its text (the same token sequence) each example has in the pool."""
    groups = copy_groups(tokens, lengths)
    return np.bincount(groups)[groups].astype(np.int64)


def text_pool(
    source: str,
    *,
    seq_len: int,
    tokenizer: str | None = None,
    vocab_size: int = 1024,
    text_column: str = "text",
    population_frac: float = 0.2,
    seed: int = 0,
) -> Pool:
    """Read a pool file and tokenize it (see the module docstring)."""
    from memlens.data.text import bos_token_id, chunk_texts, encode_texts, read_texts

    raw, _ = read_texts(source, text_column=text_column)
    if tokenizer is None:
        tok = train_tokenizer(raw, vocab_size)
        how = f"byte-level BPE trained on the pool (V={len(tok)})"
    else:
        from memlens.models.hf import load_tokenizer

        tok = load_tokenizer(tokenizer)
        how = f"tokenizer {tokenizer} (V={len(tok)})"
    bos = bos_token_id(tok)
    if bos is None:
        raise UserError(
            f"tokenizer {tokenizer} has neither a BOS nor an EOS token to start examples."
        )
    texts = chunk_texts(raw, tok, seq_len - 1)
    if len(texts) < 2:  # counted after chunking: one long text is many examples
        raise UserError(
            f"the pool needs at least 2 examples to split into halves, got {len(texts)}."
        )
    enc = encode_texts(texts, tok)
    N = len(texts)
    pad = tok.pad_token_id if isinstance(tok.pad_token_id, int) else bos
    tokens = np.full((N, seq_len), pad, dtype=np.int64)
    lengths = np.zeros(N, dtype=np.int64)
    for i, ids in enumerate(enc.tokens):
        if len(ids) > seq_len:  # a piece re-tokenized alone may gain a token at its edges
            ids = ids[:seq_len]
            texts[i] = tok.decode(ids[1:].tolist())
        tokens[i, : len(ids)] = ids
        lengths[i] = len(ids)
    V = len(tok)
    if int(tokens.max()) >= V:
        raise UserError(f"tokenizer ids reach {int(tokens.max())}, beyond its {V} tokens.")
    counts = _counts(tokens, lengths)
    return Pool(
        tokens=tokens,
        lengths=lengths,
        texts=texts,
        counts=counts,
        population=_population(counts, population_frac, seed),
        vocab_size=V,
        pad_id=int(pad),
        source=f"{source}: {len(raw)} texts -> {N} examples of at most {seq_len} tokens; {how}",
        pool_sha256=texts_sha256(raw),
        tokenizer=tok,
        meta={"n_texts": len(raw), "bos_token_id": bos, "tokenizer": how},
    )


def synthetic_pool(
    kind: str,
    *,
    n_examples: int,
    seq_len: int,
    vocab_size: int,
    branching: int = 4,
    population_frac: float = 0.2,
    seed: int = 0,
) -> Pool:
    """A synthetic world with exact code lengths (``uniform`` or ``markov``)."""
    from memlens.data.synthetic import MarkovSource, uniform_sequences

    if n_examples < 2:
        raise UserError(
            f"the pool needs at least 2 examples to split into halves, got {n_examples}."
        )
    if kind == "uniform":
        tokens = uniform_sequences(vocab_size, seq_len, n_examples, seed=seed).numpy()
        H = np.full(n_examples, memorizable_bits(seq_len, vocab_size))
        source = f"uniform tokens, V={vocab_size}, S={seq_len}"
    elif kind == "markov":
        src = MarkovSource(vocab_size, branching=branching, seed=seed)
        tokens = src.sample(n_examples, seq_len, seed=seed + 1).numpy()
        H = src.code_length_bits(tokens, include_first=False)
        source = f"Markov source V={vocab_size}, branching {branching}, S={seq_len}"
    else:
        raise UserError(f"unknown synthetic world {kind!r}; choose uniform or markov.")
    lengths = np.full(n_examples, seq_len, dtype=np.int64)
    counts = _counts(tokens, lengths)
    return Pool(
        tokens=tokens.astype(np.int64),
        lengths=lengths,
        texts=None,
        counts=counts,
        population=_population(counts, population_frac, seed),
        vocab_size=vocab_size,
        pad_id=0,
        source=source,
        pool_sha256=hashlib.sha256(tokens.tobytes()).hexdigest()[:16],
        entropy_bits=H,
        meta={"first_token_bits": uniform_code_bits(vocab_size)},
    )
