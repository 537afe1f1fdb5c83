"""The MemSinks experiment's data: repeated, unrepeated and held-out documents, and the three
training streams (standard, deduplicated, MemSinks) as packed rows.

Synthetic data come from a :class:`~memlens.data.synthetic.MarkovSource` with exact code lengths;
the user's texts are tokenized (UTF-8 bytes, or a tokenizer) and cut into documents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.sinks.config import SinksConfig


@dataclass
class SinksData:
    """Documents and the three training streams (as packed rows), plus evaluation sets.

    ``docs`` holds every training document (unrepeated ones first, then the repeated ones);
    ``repeated`` indexes the repeated documents; evaluation sets are lists of int64 arrays.
    ``n_lead`` tokens (a BOS) start every document and are never extraction targets.
    """

    docs: list[np.ndarray]
    fresh: np.ndarray
    repeated: np.ndarray
    heldout: list[np.ndarray]
    vocab_size: int
    n_lead: int
    source: str
    streams: dict[str, Any] = field(default_factory=dict)
    heldout_floor_bits: float | None = None  # true source's loss on held-out, bits per token
    meta: dict[str, Any] = field(default_factory=dict)


def _dedup_order(n_docs: int, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    reps = math.ceil(n_rows / n_docs)
    return np.concatenate([rng.permutation(n_docs) for _ in range(reps)])


def synthetic_data(cfg: SinksConfig) -> SinksData:
    """Markov-source data: repeated, unrepeated and held-out sequences, exact source code lengths."""
    from memlens.data.synthetic import MarkovSource
    from memlens.sinks.masks import sequence_ids
    from memlens.sinks.train import rows_of_equal_docs

    src = MarkovSource(cfg.vocab_size, cfg.branching, cfg.concentration, seed=cfg.source_seed)
    n_rows = cfg.steps * cfg.batch_size
    n_rep_rows = cfg.n_repeated * cfg.repetitions
    n_fresh = n_rows - n_rep_rows
    S = cfg.seq_len
    rep = src.sample(cfg.n_repeated, S, seed=cfg.seed * 1000 + 1).numpy()
    fresh = src.sample(n_fresh, S, seed=cfg.seed * 1000 + 2).numpy()
    held = src.sample(cfg.n_heldout, S, seed=cfg.seed * 1000 + 3).numpy()
    # Exact deduplication across the three sets (collisions are astronomically rare, but the
    # experiment's definitions must hold exactly): keep first occurrences, repeated set first.
    seen: set[int] = set()
    keep = []
    for arr in (rep, fresh, held):
        ids = sequence_ids(arr)
        mask = np.array([i not in seen and not seen.add(i) for i in ids.tolist()])
        keep.append(arr[mask])
    rep, fresh, held = keep
    docs_arr = np.concatenate([fresh, rep])
    n_f = len(fresh)
    rep_idx = np.arange(n_f, n_f + len(rep))
    rng = np.random.default_rng(cfg.seed)
    std_order = np.concatenate([np.arange(n_f), np.repeat(rep_idx, cfg.repetitions)])
    rng.shuffle(std_order)
    dedup_order = _dedup_order(len(docs_arr), len(std_order), rng)[: len(std_order)]
    streams = {
        "standard": rows_of_equal_docs(docs_arr, std_order),
        "dedup": rows_of_equal_docs(docs_arr, dedup_order),
    }
    streams["memsinks"] = streams["standard"]
    floor = float(src.code_length_bits(held, include_first=False).sum() / (held.shape[0] * (S - 1)))
    return SinksData(
        docs=list(docs_arr),
        fresh=np.arange(n_f),
        repeated=rep_idx,
        heldout=list(held),
        vocab_size=cfg.vocab_size,
        n_lead=0,
        source=(
            f"MarkovSource(V={cfg.vocab_size}, branching={cfg.branching}, "
            f"concentration={cfg.concentration}, seed={cfg.source_seed})"
        ),
        streams=streams,
        heldout_floor_bits=floor,
        meta={"entropy_rate_bits": src.entropy_rate_bits()},
    )


BYTE_BOS = 256


def _tokenize(cfg: SinksConfig, texts: list[str]) -> tuple[list[np.ndarray], int, str]:
    """Token arrays (BOS first) and the vocabulary size: bytes, or the given tokenizer."""
    if cfg.tokenizer is None:
        out = [np.array([BYTE_BOS, *t.encode("utf-8")], dtype=np.int64) for t in texts]
        return out, 257, "UTF-8 bytes (V=257, BOS=256)"
    from memlens.data.text import encode_texts
    from memlens.models.hf import load_tokenizer

    tok = load_tokenizer(cfg.tokenizer)
    enc = encode_texts(texts, tok)
    if enc.bos_token_id is None:
        raise UserError(
            f"tokenizer {cfg.tokenizer} has neither a BOS nor an EOS token to start documents."
        )
    return enc.tokens, len(tok), f"tokenizer {cfg.tokenizer} (V={len(tok)})"


def text_data(cfg: SinksConfig) -> SinksData:
    """The user's texts: documents of at most ``seq_len`` tokens, packed into rows.

    Each text is tokenized (BOS first) and cut into documents of at most ``seq_len`` tokens (each
    starting with the BOS); exact duplicates are removed. ``n_heldout`` documents are held out
    (at most a fifth), ``n_repeated`` of the rest are repeated ``repetitions`` times and every
    other document appears once. ``steps`` is ignored: the standard stream is one pass.
    """
    from memlens.data.text import read_texts
    from memlens.sinks.masks import sequence_ids
    from memlens.sinks.train import pack_documents

    texts, _ = read_texts(cfg.train_path, text_column=cfg.text_column)
    toks, V, how = _tokenize(cfg, texts)
    body = cfg.seq_len - 1
    pieces: list[np.ndarray] = []
    for t in toks:
        bos, rest = t[:1], t[1:]
        for a in range(0, len(rest), body):
            piece = rest[a : a + body]
            if len(piece) >= 2:
                pieces.append(np.concatenate([bos, piece]))
    ids = sequence_ids(pieces)
    _, first = np.unique(ids, return_index=True)
    pieces = [pieces[i] for i in sorted(first.tolist())]
    n = len(pieces)
    n_held = min(cfg.n_heldout, n // 5)
    need = cfg.n_repeated + 2 * max(n_held, 1)
    if n_held < 2 or n < need:
        raise UserError(
            f"{cfg.train_path} gives {n} distinct documents of at most {cfg.seq_len} tokens; "
            f"need at least {max(need, 10)} (and a fifth of them held out) for {cfg.n_repeated} repeated ones."
        )
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n)
    held = [pieces[i] for i in perm[:n_held]]
    rep_docs = [pieces[i] for i in perm[n_held : n_held + cfg.n_repeated]]
    fresh_docs = [pieces[i] for i in perm[n_held + cfg.n_repeated :]]
    docs = fresh_docs + rep_docs
    n_f = len(fresh_docs)
    rep_idx = np.arange(n_f, len(docs))
    std_order = np.concatenate([np.arange(n_f), np.repeat(rep_idx, cfg.repetitions)])
    rng.shuffle(std_order)
    standard = pack_documents(docs, std_order, cfg.seq_len)
    # twice the occurrences so the packed dedup stream surely covers as many rows as standard's
    dedup_rows = pack_documents(docs, _dedup_order(len(docs), 2 * len(std_order), rng), cfg.seq_len)
    n_rows = len(standard)
    dedup_rows.tokens = dedup_rows.tokens[:n_rows]
    dedup_rows.doc_index = dedup_rows.doc_index[:n_rows]
    dedup_rows.positions = dedup_rows.positions[:n_rows]
    return SinksData(
        docs=docs,
        fresh=np.arange(n_f),
        repeated=rep_idx,
        heldout=held,
        vocab_size=V,
        n_lead=1,
        source=f"{cfg.train_path}: {len(texts)} texts, {n} distinct documents, {how}",
        streams={"standard": standard, "dedup": dedup_rows, "memsinks": standard},
    )


def build_data(cfg: SinksConfig) -> SinksData:
    return synthetic_data(cfg) if cfg.train_path is None else text_data(cfg)
