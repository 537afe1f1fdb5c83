"""Memorization audit of a trained causal LM: unintended bits, k-extraction, rarity.

* :mod:`memlens.audit.unintended`: ``max(0, NLL_ref - NLL_target)`` per sample, in bits, and the
  target's capacity ``alpha * params`` (Morris et al. 2025, arXiv:2505.24832).
* k-extraction (Carlini et al. 2023): :func:`memlens.scoring.k_extraction`, batched greedy
  decoding under the one eligibility rule of :mod:`memlens.scoring.extraction`.
* :mod:`memlens.audit.rarity`: TF-IDF rarity (zlib size: :func:`memlens.units.zlib_bytes`).
* :mod:`memlens.audit.recipe`: the whole audit (:func:`~memlens.audit.recipe.run`) over two
  text sources, writing a run directory; :mod:`memlens.audit.config`: its settings;
  :mod:`memlens.audit.summary`: ``audit.json``'s fields; :mod:`memlens.audit.plots`: its figures.
"""

from memlens.audit.config import AuditConfig
from memlens.audit.plots import plot_audit
from memlens.audit.rarity import TfidfCorpus, tfidf_rarity
from memlens.audit.recipe import AuditResult, audit_texts, run
from memlens.audit.summary import AuditSummary
from memlens.audit.unintended import unintended_bits

__all__ = [
    "AuditConfig",
    "AuditResult",
    "AuditSummary",
    "TfidfCorpus",
    "audit_texts",
    "plot_audit",
    "run",
    "tfidf_rarity",
    "unintended_bits",
]
