"""Memorization audit of a trained causal LM: unintended bits, k-extraction, rarity.

* :mod:`memlens.audit.unintended`: ``max(0, NLL_ref - NLL_target)`` per sample, in bits, and the
  target's capacity ``alpha * params`` (Morris et al. 2025, arXiv:2505.24832).
* :mod:`memlens.audit.extraction`: batched greedy k-extraction (Carlini et al. 2023).
* :mod:`memlens.audit.rarity`: TF-IDF rarity (zlib size: :func:`memlens.units.zlib_bytes`).
* :mod:`memlens.audit.recipe`: the whole audit (:func:`~memlens.audit.recipe.run_audit`) over two
  text sources, writing a run directory.
"""

from memlens.audit.extraction import ExtractionResult, greedy_continue, k_extraction
from memlens.audit.rarity import TfidfCorpus, tfidf_rarity
from memlens.audit.recipe import AuditConfig, AuditResult, audit_texts, run_audit
from memlens.audit.unintended import unintended_bits

__all__ = [
    "AuditConfig",
    "AuditResult",
    "ExtractionResult",
    "TfidfCorpus",
    "audit_texts",
    "greedy_continue",
    "k_extraction",
    "tfidf_rarity",
    "unintended_bits",
    "run_audit",
]
