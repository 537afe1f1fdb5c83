"""What ``memlens audit`` writes to ``audit.json``, as typed models.

The field names are the JSON keys; the recipe (:mod:`memlens.audit.recipe`) builds these models,
the command line prints them and the report (:mod:`memlens.report.headline`) reads them, so each
key is spelled once. Units: bits (``alpha`` in bits per parameter).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from memlens.results import Summary


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class SplitSummary(_Open):
    """One split (``train`` or ``heldout``) of an audit.

    ``n`` unique texts audited; the text source's counts (``source``, ``n_raw``, ``n_unique``,
    ``n_duplicates_removed``, ``n_empty_dropped``, ``seq_len``; held-out also
    ``n_overlap_with_train_removed``); unintended bits per sample (mean, total, median, how many
    positive); mean code lengths under the target and the reference (bits, and bits per target
    token); extraction among the ``n_extraction_eligible`` texts long enough for prefix + suffix.
    """

    n: int
    source: str = ""
    n_raw: int = 0
    n_unique: int = 0
    n_duplicates_removed: int = 0
    n_empty_dropped: int = 0
    seq_len: int | None = None
    mean_unintended_bits: float | None = None
    total_unintended_bits: float = 0.0
    median_unintended_bits: float | None = None
    n_positive_unintended: int = 0
    mean_target_bits: float | None = None
    mean_reference_bits: float | None = None
    mean_target_bits_per_token: float | None = None
    n_extraction_eligible: int = 0
    extraction_rate: float | None = None
    mean_match_fraction: float | None = None


class CapacityShare(_Open):
    """The training split's unintended bits as a fraction of ``alpha * params``."""

    alpha_bits_per_param: float
    n_params: int
    capacity_bits: float
    train_total_unintended_bits: float
    fraction_of_capacity: float


class Spearman(_Open):
    """Spearman's rho, its p-value and n (``rho`` is ``None`` when undefined: n < 3 or constant)."""

    rho: float | None = None
    p_value: float | None = None
    n: int = 0


class TopSample(_Open):
    """One of the most memorized training samples (``text`` cut at 200 characters)."""

    sample: int
    unintended_bits: float
    target_bits: float
    reference_bits: float
    count: int
    tfidf: float | None = None
    extracted: bool
    text: str


class AuditSummary(Summary):
    """``audit.json``: what the audit found (Morris et al. 2025; Carlini et al. 2023).

    Attributes
    ----------
    target, reference: the models' descriptions.
    first_token: how both models' first text token is charged (``model``: each model codes it
        after its BOS; ``uniform``: ``log2 V`` of each tokenizer, because only one of them has a
        BOS; see :func:`memlens.scoring.comparable_bits`).
    train, heldout: :class:`SplitSummary` of each split.
    extraction_rate_difference, mean_unintended_bits_difference: train minus held-out.
    capacity: :class:`CapacityShare`.
    tfidf_spearman: Spearman of unintended bits with TF-IDF rarity over the training samples
        with positive memorization; duplicate_spearman: with the duplicate count.
    top_memorized: the most memorized training samples.
    warnings: what the numbers cannot show (e.g. no text long enough for extraction), and why.
    """

    kind: ClassVar[str] = "audit"
    file: ClassVar[str] = "audit.json"

    target: dict[str, Any]
    reference: dict[str, Any]
    code_length_convention: str = ""
    first_token: str = "model"
    first_token_bits: dict[str, float] = {}
    unintended_definition: str = ""
    extraction: dict[str, Any] = {}
    train: SplitSummary
    heldout: SplitSummary
    extraction_rate_difference: float | None = None
    mean_unintended_bits_difference: float | None = None
    capacity: CapacityShare
    tfidf_spearman: float | None = None
    tfidf_spearman_detail: dict[str, Any] = {}
    duplicate_spearman: float | None = None
    duplicate_spearman_detail: Spearman = Spearman()
    top_memorized: list[TopSample] = []
    warnings: list[str] = []

    def headline(self) -> list[tuple[str, Any]]:
        from memlens.models.adapters import model_label

        return [
            ("target", model_label(self.target)),
            ("reference", self.reference.get("name")),
            ("training samples", self.train.n),
            ("mean unintended bits (train)", self.train.mean_unintended_bits),
            ("mean unintended bits (held-out)", self.heldout.mean_unintended_bits),
            ("train − held-out (bits)", self.mean_unintended_bits_difference),
            ("total unintended bits (train)", self.train.total_unintended_bits),
            ("fraction of capacity", self.capacity.fraction_of_capacity),
            ("extraction rate (train)", self.train.extraction_rate),
            ("extraction rate (held-out)", self.heldout.extraction_rate),
            ("extraction rate difference", self.extraction_rate_difference),
            ("Spearman(TF-IDF, bits), positive", self.tfidf_spearman),
        ]
