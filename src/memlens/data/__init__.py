"""Data: synthetic sources with exact entropy, user texts and tables, fetchable corpora.

* :mod:`memlens.data.synthetic`: :func:`uniform_sequences` and :class:`MarkovSource` (seeded,
  exact code lengths under the source).
* :mod:`memlens.data.text`: :func:`read_texts` / :func:`load_texts` (txt, jsonl, csv, parquet,
  Hugging Face datasets; chunking, exact deduplication with counts) into a :class:`TextSet`;
  :func:`encode_texts` (BOS-prefixed token ids).
* :mod:`memlens.data.tables`: :func:`read_table`, the one table reader and missing-value rule.
* :mod:`memlens.data.corpora`, :mod:`memlens.data.cache`: the corpora ``memlens fetch`` downloads
  and the cache they live in.

Names are loaded on first use (PEP 562), so importing the package does not import torch.
"""

from __future__ import annotations

from memlens._lazy import lazy

_NAMES: dict[str, str] = {
    "MarkovSource": "memlens.data.synthetic",
    "uniform_sequences": "memlens.data.synthetic",
    "TextSet": "memlens.data.text",
    "EncodedTexts": "memlens.data.text",
    "encode_texts": "memlens.data.text",
    "load_texts": "memlens.data.text",
    "read_texts": "memlens.data.text",
    "read_table": "memlens.data.tables",
    "CORPORA": "memlens.data.corpora",
    "fetch_corpus": "memlens.data.corpora",
    "load_corpus": "memlens.data.corpora",
    "cache_dir": "memlens.data.cache",
}

__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy(__name__, _NAMES)
