"""Settings of ``memlens mia`` (:class:`MIAConfig`) and ``memlens mia metrics``
(:class:`MIAMetricsConfig`), validated at the door (:mod:`memlens.config`) and saved in every
run's manifest."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from memlens.config import Config
from memlens.mia.metrics import DEFAULT_FPRS


def _check_fprs(values: list[float]) -> list[float]:
    for a in values:
        if not 0.0 <= a < 1.0:  # 0: the TPR with no false positive (as shadow attacks report)
            raise ValueError(f"FPR level must be at least 0 and below 1, got {a}")
    return values


class _EvaluationSettings(Config):
    """Settings shared by :class:`MIAConfig` and :class:`MIAMetricsConfig`."""

    label_column: str = "label"
    fprs: list[float] = Field(default_factory=lambda: list(DEFAULT_FPRS), min_length=1)
    n_boot: int = Field(1000, ge=1)
    level: float = Field(0.95, gt=0.0, lt=1.0)
    nan_policy: Literal["common", "error"] = "common"
    seed: int = 0

    fprs_in_range = field_validator("fprs")(_check_fprs)


class MIAConfig(_EvaluationSettings):
    """Settings of one ``memlens mia`` run (saved in the manifest).

    Attributes
    ----------
    model: target model: anything :func:`memlens.models.hf.load_causal_lm` accepts (directory,
        GGUF file, fetched registry name, hub name).
    adapter: a PEFT adapter over ``model``, merged at load; ``references`` then default to the
        bare ``model`` (the base before fine-tuning).
    references: reference models for the ``ref`` attack (one score column per reference).
    members, nonmembers, data, text_column, label_column, split: the samples
        (:func:`~memlens.mia.samples.load_samples`).
    attacks: attack names (default: every registered attack that the inputs allow).
    k: the Min-K% / Min-K%++ fraction, in (0, 1].
    fprs: FPR levels for TPR at FPR <= alpha.
    n_boot, level: bootstrap resamples and level of the AUC confidence interval.
    nan_policy: ``common`` (evaluate all attacks on the samples every attack scored) or ``error``.
    batch_size, window_stride, dtype, device, tokenizer: scoring settings
        (:func:`memlens.models.hf.load_causal_lm`, :func:`memlens.scoring.score_texts`).
    seed: bootstrap seed.
    """

    what: ClassVar[str] = "mia config"

    model: str
    references: list[str] = []
    adapter: str | None = None
    members: str | None = None
    nonmembers: str | None = None
    data: str | None = None
    text_column: str | None = None
    split: str | None = None
    attacks: list[str] | None = None
    k: float = Field(0.2, gt=0.0, le=1.0)
    batch_size: int = Field(32, ge=1)
    window_stride: int | None = Field(None, ge=1)
    dtype: str = "auto"
    device: str = "auto"
    tokenizer: str | None = None


class MIAMetricsConfig(_EvaluationSettings):
    """Settings of ``memlens mia metrics``: ``scores`` is a ``.csv``/``.parquet``/``.jsonl`` file
    with a label column and the score columns named in ``columns`` (default ``["score"]``)."""

    what: ClassVar[str] = "mia metrics config"

    scores: str
    columns: list[str] | None = None
