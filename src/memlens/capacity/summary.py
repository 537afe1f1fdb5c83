"""``capacity.json``: the typed result of a capacity sweep (field names are the JSON keys).

Units: bits, and bits per parameter for ``alpha*`` and ``bits_per_param``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from memlens.results import Summary


class CapacityRun(BaseModel):
    """One model of a shape, trained on ``n_sequences`` uniform sequences.

    ``dataset_bits = N * S * log2 V`` (the data's entropy); ``memorizable_bits = N * (S-1) *
    log2 V`` (the first token of each sequence is never memorized); ``predicted_bits =
    min(alpha * params, memorizable_bits)``; ``stopped_by``: ``steps``, ``saturated`` or
    ``time_budget`` (then ``saturated`` is false).
    """

    model_config = ConfigDict(extra="allow")
    n_sequences: int
    dataset_bits: float
    memorizable_bits: float
    memorized_bits: float
    predicted_bits: float | None = None
    steps: int
    saturated: bool
    stopped_by: str = "steps"
    seconds: float
    curve: dict[str, list[float]] | None = None  # in the cells; capacity.json leaves it out


class CapacityModel(BaseModel):
    """One shape: its capacity (max over N of memorized bits) and its runs."""

    model_config = ConfigDict(extra="allow")
    n_layer: int
    d_model: int
    n_head: int
    params: int
    capacity_bits: float
    bits_per_param: float
    saturated: bool
    runs: list[CapacityRun]


class CapacitySummary(Summary):
    """What ``memlens capacity`` measured: α by least squares through the origin, per-model
    ratios, the published like-for-like figures (Morris et al. 2025) and every shape's runs."""

    kind: ClassVar[str] = "capacity"
    file: ClassVar[str] = "capacity.json"

    alpha_bits_per_param: float
    alpha_method: str
    alpha_se: float | None  # None with a single shape: a slope from one point has no error
    alpha_mean_per_model: float
    published_alpha: dict[str, Any]
    vocab_size: int
    seq_len: int
    bits_per_sequence: float
    memorizable_bits_per_sequence: float
    first_token: str
    precision: str
    preset: str
    seed: int
    all_saturated: bool
    time_budget_s: float | None = None
    stopped_by_time_budget: int = 0
    wall_seconds: float
    reused_cells: int = 0
    backend: str = "local"
    models: list[CapacityModel]

    def headline(self) -> list[tuple[str, Any]]:
        p = self.published_alpha
        return [
            ("α (bits/param)", self.alpha_bits_per_param),
            ("α standard error", self.alpha_se),
            ("mean per-model α", self.alpha_mean_per_model),
            (f"published α, {self.precision} slope", p.get("slope")),
            (f"published α, {self.precision} mean per model", p.get("mean_per_model")),
            ("models", len(self.models)),
            ("all runs saturated", self.all_saturated),
            ("runs stopped by the time budget", self.stopped_by_time_budget),
            ("vocabulary V", self.vocab_size),
            ("sequence length S", self.seq_len),
            ("precision", self.precision),
            ("preset", self.preset),
            ("backend", self.backend),
            ("training seconds", self.wall_seconds),
        ]

    def tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        cols = ["layers", "d_model", "params", "capacity bits", "bits/param", "saturated"]
        rows = [
            [m.n_layer, m.d_model, m.params, m.capacity_bits, m.bits_per_param, m.saturated]
            for m in self.models
        ]
        return [("models", cols, rows)]
