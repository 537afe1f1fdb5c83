"""Typed results of ``memlens track`` (``dynamics.json``) and ``memlens grok`` (``grok.json``);
field names are the JSON keys. Units: bits, steps, fractions in [0, 1]."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from memlens.results import Summary


class GroupStats(BaseModel):
    """Memorization of one group of tracked examples (repeated, unique, held-out) at the end."""

    model_config = ConfigDict(extra="allow")
    n: int
    training_occurrences: float | None = None
    fraction_memorized: float | None = None
    fraction_ever_memorized: float | None = None
    median_first_memorized_step: float | None = None
    median_first_memorized_step_all: float | None = None
    forgetting_events: int = 0
    examples_forgotten: int = 0
    mean_unintended_bits_final: float | None = None
    extraction_rate_final: float | None = None


class TrackSummary(Summary):
    """Which examples a model memorized, and when, while it trained (:mod:`memlens.track`)."""

    kind: ClassVar[str] = "track"
    file: ClassVar[str] = "dynamics.json"

    criterion: dict[str, Any]
    reference: str
    first_token_bits: float
    first_token: str = "model"
    final_step: int
    n_observations: int
    groups: dict[str, GroupStats]
    comparisons: dict[str, Any]
    continued_training: dict[str, Any]
    by_rarity: dict[str, Any]
    curves: dict[str, Any]
    cost: dict[str, Any]
    training: dict[str, Any]

    def headline(self) -> list[tuple[str, Any]]:
        rvu = self.comparisons.get("repeated_vs_unique") or {}
        h: list[tuple[str, Any]] = [
            ("criterion", self.criterion.get("name")),
            ("threshold", self.criterion.get("threshold")),
            ("final step", self.final_step),
            ("observations", self.n_observations),
            ("repeated memorized more", rvu.get("memorized_more")),
            ("repeated memorized earlier", rvu.get("memorized_earlier")),
            ("held-out never memorized", self.comparisons.get("heldout_never_memorized")),
            ("tracking overhead fraction", self.cost.get("overhead_fraction")),
        ]
        h += [(f"fraction memorized: {g}", v.fraction_memorized) for g, v in self.groups.items()]
        return [(k, v) for k, v in h if v is not None]


class GrokSummary(Summary):
    """Grokking on modular addition: when training and test accuracy reach 99%, and the
    memorization gap in bits (:mod:`memlens.track.grok`)."""

    kind: ClassVar[str] = "grok"
    file: ClassVar[str] = "grok.json"

    task: str
    p: int
    train_fraction: float
    n_train: int
    n_test: int
    chance_accuracy: float
    steps: int
    eval_every: int
    train_acc_final: float
    test_acc_final: float
    step_train_acc_99: int | None = None
    step_test_acc_95: int | None = None
    step_test_acc_99: int | None = None
    grok_delay_steps: int | None = None
    grok_delay_ratio: float | None = None
    test_acc_at_step_train_acc_99: float | None = None
    train_bits_final: float
    test_bits_final: float
    memorization_gap_bits_peak: float
    step_memorization_gap_peak: int
    memorization_gap_bits_final: float
    memorization_gap_total_bits_peak: float
    weight_norm_initial: float
    weight_norm_at_train_acc_99: float | None = None
    weight_norm_final: float
    definitions: dict[str, str]
    model: dict[str, Any] = {}
    optimizer: dict[str, Any] = {}
    seconds_this_session: float = 0.0
    stopped_early: bool = False
    #: the step this session started from (0: a fresh run; else the checkpoint of an earlier run)
    resumed_from_step: int = 0

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("task", self.task),
            ("train accuracy (final)", self.train_acc_final),
            ("test accuracy (final)", self.test_acc_final),
            ("step train acc ≥ 0.99", self.step_train_acc_99),
            ("step test acc ≥ 0.99", self.step_test_acc_99),
            ("grokking delay (steps)", self.grok_delay_steps),
            ("peak memorization gap (bits)", self.memorization_gap_bits_peak),
            ("final memorization gap (bits)", self.memorization_gap_bits_final),
            ("weight norm (final)", self.weight_norm_final),
        ]
