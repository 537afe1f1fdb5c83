"""Memorization audit of a trained causal LM: unintended bits, k-extraction, rarity.

* :mod:`memlens.audit.unintended`: ``max(0, NLL_ref - NLL_target)`` per sample, in bits, and the
  target's capacity ``alpha * params`` (Morris et al. 2025, arXiv:2505.24832).
* :mod:`memlens.audit.extraction`: batched greedy k-extraction (Carlini et al. 2023).
* :mod:`memlens.audit.rarity`: TF-IDF rarity and zlib size.
* :mod:`memlens.audit.run`: the whole audit (:func:`~memlens.audit.run.run_audit`) over two
  text sources, writing a run directory.
"""

from memlens.audit.extraction import ExtractionResult, greedy_continue, k_extraction
from memlens.audit.rarity import TfidfCorpus, tfidf_rarity, zlib_bytes
from memlens.audit.unintended import DEFAULT_ALPHA, capacity_bits, unintended_bits

__all__ = [
    "DEFAULT_ALPHA",
    "ExtractionResult",
    "TfidfCorpus",
    "capacity_bits",
    "greedy_continue",
    "k_extraction",
    "tfidf_rarity",
    "unintended_bits",
    "zlib_bytes",
]
