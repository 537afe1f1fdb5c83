"""Text data for memorization measurements: read, chunk, deduplicate, tokenize.

Sources (:func:`read_texts`):

* ``.txt``: one sample per line (``\\n`` separated, a trailing ``\\r`` removed);
* ``.jsonl``, ``.csv``, ``.parquet``, a directory written by ``datasets``' ``save_to_disk`` or a
  Hugging Face dataset name (needs the hub or its cache) with ``split``: a table with a
  ``text_column`` column, read by :func:`memlens.data.tables.read_table` (one reader and one
  missing-value rule for every table memlens reads: a missing text is an empty text).

Files must be UTF-8. Empty, missing and whitespace-only samples are dropped and counted; every
other text is kept byte for byte, so the same texts in a ``.txt`` and a ``.jsonl`` give identical
samples.

:func:`load_texts` then optionally cuts each text into pieces of ``seq_len`` tokens of a given
tokenizer (:func:`chunk_texts`; the pieces stay *text*, so a reference model with another
tokenizer sees the same strings) and removes exact duplicates (:func:`deduplicate`), keeping the
first occurrence and how many times each text occurred. Exact deduplication matters before any
memorization measurement: 1-2% of truncated web sequences are duplicates (Carlini et al. 2023,
"Quantifying memorization across neural language models").

:func:`encode_texts` turns texts into the scoring engine's format: one int64 array per text, BOS
first (see :mod:`memlens.models.hf` for why this makes bits per text comparable across
tokenizers).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memlens.data.tables import decode_utf8, is_missing, read_table, table_source_kind
from memlens.errors import UserError

FILE_SUFFIXES = (".txt", ".jsonl", ".csv", ".parquet")


@dataclass
class TextSet:
    """Unique texts of one source, with provenance and duplicate counts.

    Attributes
    ----------
    texts: unique samples in order of first occurrence.
    counts: how many times each unique sample occurred in the (chunked) input, >= 1.
    first_index: index of each sample's first occurrence among the raw (chunked, non-empty) samples.
    source: where the texts came from.
    n_raw: samples before deduplication (after dropping empty ones and chunking).
    n_empty_dropped: empty or whitespace-only samples dropped at reading.
    seq_len: the chunk length in tokens, or ``None`` when texts were not chunked.
    """

    texts: list[str]
    counts: np.ndarray
    first_index: np.ndarray
    source: str
    n_raw: int
    n_empty_dropped: int = 0
    seq_len: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_duplicates_removed(self) -> int:
        """Samples removed by exact deduplication."""
        return self.n_raw - len(self.texts)

    def summary(self) -> dict[str, Any]:
        """Counts for reports and manifests."""
        return {
            "source": self.source,
            "n_raw": self.n_raw,
            "n_unique": len(self.texts),
            "n_duplicates_removed": self.n_duplicates_removed,
            "n_empty_dropped": self.n_empty_dropped,
            "seq_len": self.seq_len,
        }


def _read_txt(path: Path) -> list[str]:
    text = decode_utf8(path.read_bytes(), path)
    lines = text.split("\n")
    if lines and lines[-1] == "":  # the newline that ends the last line starts no sample
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def texts_from_column(values: Sequence[Any], column: str, where: str) -> list[str]:
    """A column's values as texts: a missing value (see :mod:`memlens.data.tables`) is the empty
    text; any other value that is not a string is a :class:`UserError`."""
    out = []
    for i, v in enumerate(values):
        if is_missing(v):
            v = ""
        if not isinstance(v, str):
            raise UserError(
                f"row {i} of column '{column}' in {where} is a {type(v).__name__}, not a string."
            )
        out.append(v)
    return out


def read_texts(
    source: str | os.PathLike[str], *, text_column: str = "text", split: str | None = None
) -> tuple[list[str], int]:
    """Read raw samples from a file, a saved dataset directory or a hub dataset name.

    Returns
    -------
    (texts, n_empty_dropped): the non-empty samples in file order and how many empty or
    whitespace-only samples were dropped.

    Raises
    ------
    UserError: missing file, unsupported suffix, non-UTF-8 bytes, missing column, non-string
        values, or no non-empty sample at all.
    """
    name = str(source)
    path = Path(name).expanduser()
    suffix = path.suffix.lower()
    kind = table_source_kind(source, FILE_SUFFIXES)
    if kind == "missing":
        raise UserError(f"data file {path} does not exist.")
    if kind == "file" and suffix not in FILE_SUFFIXES:
        raise UserError(
            f"{path} has an unsupported suffix '{suffix}'; use .txt, .jsonl, .csv or .parquet."
        )
    if kind == "file" and suffix == ".txt":
        if path.stat().st_size == 0:
            raise UserError(f"{path} is empty.")
        raw = _read_txt(path)
    else:
        df = read_table(source, split=split, columns={text_column: "text_column"})
        where = str(path) if kind == "file" or path.is_dir() else f"dataset '{name}'"
        raw = texts_from_column(df[text_column].tolist(), text_column, where)
    texts = [t for t in raw if t.strip()]
    n_empty = len(raw) - len(texts)
    if not texts:
        raise UserError(f"{name} contains no non-empty texts.")
    return texts, n_empty


def deduplicate(texts: Sequence[str]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Exact deduplication keeping first occurrences.

    Returns ``(unique_texts, counts, first_index)``: ``counts[i]`` is how often ``unique_texts[i]``
    occurred, ``first_index[i]`` where it first occurred in ``texts``.
    """
    seen: dict[str, int] = {}
    unique: list[str] = []
    counts: list[int] = []
    first: list[int] = []
    for i, t in enumerate(texts):
        j = seen.get(t)
        if j is None:
            seen[t] = len(unique)
            unique.append(t)
            counts.append(1)
            first.append(i)
        else:
            counts[j] += 1
    return unique, np.array(counts, dtype=np.int64), np.array(first, dtype=np.int64)


def chunk_texts(texts: Sequence[str], tokenizer: Any, seq_len: int) -> list[str]:
    """Cut each text into consecutive pieces of ``seq_len`` tokens of ``tokenizer``, as text.

    Piece boundaries are the character offsets of every ``seq_len``-th token, so the pieces
    concatenate back to the original text and can be re-tokenized by any other tokenizer. A
    piece re-tokenized alone may differ from ``seq_len`` tokens by a token at its edges (merges
    across the cut). The last piece of a text may be shorter. Whitespace-only pieces are dropped.
    """
    if seq_len < 1:
        raise UserError(f"`seq_len` must be at least 1, got {seq_len}.")
    if not getattr(tokenizer, "is_fast", False):
        raise UserError("chunking by tokens needs a fast tokenizer (one with a tokenizer.json).")
    out: list[str] = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = enc["offset_mapping"]
        if len(offsets) <= seq_len:
            out.append(text)
            continue
        cuts = [0] + [offsets[k][0] for k in range(seq_len, len(offsets), seq_len)] + [len(text)]
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            piece = text[a:b]
            if piece.strip():
                out.append(piece)
    return out


def load_texts(
    source: str | os.PathLike[str],
    *,
    text_column: str = "text",
    split: str | None = None,
    tokenizer: Any = None,
    seq_len: int | None = None,
    dedup: bool = True,
) -> TextSet:
    """Read, optionally chunk (``seq_len`` tokens of ``tokenizer``) and exactly deduplicate texts.

    With ``dedup=False`` every sample is kept and ``counts`` are all 1.
    """
    texts, n_empty = read_texts(source, text_column=text_column, split=split)
    if seq_len is not None:
        if tokenizer is None:
            raise UserError("`seq_len` needs a tokenizer to count tokens.")
        texts = chunk_texts(texts, tokenizer, seq_len)
    n_raw = len(texts)
    if dedup:
        unique, counts, first = deduplicate(texts)
    else:
        unique, counts, first = list(texts), np.ones(n_raw, dtype=np.int64), np.arange(n_raw)
    return TextSet(
        texts=unique,
        counts=counts,
        first_index=first,
        source=str(source),
        n_raw=n_raw,
        n_empty_dropped=n_empty,
        seq_len=seq_len,
    )


def bos_token_id(tokenizer: Any) -> int | None:
    """The id memlens prepends to every text: ``bos_token_id``, else ``eos_token_id``, else ``None``.

    GPT-2 has no separate BOS and marks document starts with ``<|endoftext|>`` (its EOS); LLaMA has
    a real BOS. With neither, the first token is coded at ``log2 V`` bits.
    """
    for attr in ("bos_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return None


@dataclass
class EncodedTexts:
    """Texts as token ids in the scoring engine's format.

    Attributes
    ----------
    tokens: one int64 array per text, BOS first when the tokenizer has one.
    bos_token_id: the prepended id or ``None``.
    first_token_bits: bits charged for the first text token outside the model (0 with a BOS,
        ``log2 V`` without one).
    """

    tokens: list[np.ndarray]
    bos_token_id: int | None
    first_token_bits: float

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.tokens], dtype=np.int64)

    @property
    def n_text_tokens(self) -> np.ndarray:
        """Tokens of each text, not counting the BOS."""
        return self.lengths - (1 if self.bos_token_id is not None else 0)


def encode_texts(texts: Sequence[str], tokenizer: Any, *, add_bos: bool = True) -> EncodedTexts:
    """Tokenize texts (no special tokens added by the tokenizer) and prepend the BOS id.

    Raises :class:`UserError` for no texts, a single string instead of a list of them, a text
    that is not a string, and a text that tokenizes to nothing.
    """
    if isinstance(texts, (str, bytes)):
        raise UserError("`texts` must be a list of strings, not a single string.")
    texts = list(texts)
    if not texts:
        raise UserError("there are no texts to score.")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise UserError(f"text {bad} is not a string (got {type(texts[bad]).__name__}).")
    bos = bos_token_id(tokenizer) if add_bos else None
    enc = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    tokens = []
    for i, ids in enumerate(enc):
        if not ids:
            raise UserError(f"text {i} ({texts[i][:40]!r}) tokenizes to no tokens.")
        arr = np.asarray(([bos] if bos is not None else []) + list(ids), dtype=np.int64)
        tokens.append(arr)
    first_bits = 0.0 if bos is not None else math.log2(len(tokenizer))
    return EncodedTexts(tokens=tokens, bos_token_id=bos, first_token_bits=first_bits)
