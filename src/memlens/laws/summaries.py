"""Typed results of the laws commands (field names are the JSON keys).

* :class:`SizeReport`: ``memlens size`` (``size.json`` when written to a run directory);
* :class:`FitMiaSummary`: ``memlens laws fit-mia`` (``fit_mia.json``);
* :class:`MiaExperimentSummary`: ``memlens laws mia-experiment`` (``mia_experiment.json``);
* :class:`DoubleDescentSummary`: ``memlens laws double-descent`` (``double_descent.json``).

Units: bits, bits per parameter, bits per token as the names say; F1 and AUC in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from memlens.results import Summary


class SizeReport(Summary):
    """Everything ``memlens size`` reports: capacity, capacity ratio, regime, predicted MIA F1."""

    kind: ClassVar[str] = "laws-size"
    file: ClassVar[str] = "size.json"

    alpha: float
    alpha_source: str
    seq_len: int
    params: float | None = None
    capacity_bits: float | None = None
    n_sequences: float | None = None
    tokens: float | None = None
    vocab_size: int | None = None
    bits_per_sequence: float | None = None
    bits_source: str | None = None
    dataset_bits: float | None = None
    capacity_ratio: float | None = None
    regime: str | None = None
    tokens_per_param: float | None = None
    predicted_mia_f1: float | None = None
    predicted_mia_f1_unclipped: float | None = None
    sequences_per_capacity_bit: float | None = None
    inverse: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    law: dict[str, Any] = Field(default_factory=dict)
    regime_thresholds: dict[str, float] = Field(default_factory=dict)
    regime_rule: str = ""
    warnings: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: infinities as ``None`` (strict JSON), whole counts as integers."""
        out = self.model_dump()
        for k, v in out.items():
            if isinstance(v, float) and math.isinf(v):
                out[k] = None
        for k in ("params", "n_sequences", "tokens"):
            v = out[k]
            if isinstance(v, float) and v.is_integer():
                out[k] = int(v)
        return out

    def to_json(self) -> dict[str, Any]:
        return self.to_dict()

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("parameters", self.params),
            ("capacity (bits)", self.capacity_bits),
            ("dataset (sequences)", self.n_sequences),
            ("capacity ratio", self.capacity_ratio),
            ("regime", self.regime),
            ("predicted MIA F1", self.predicted_mia_f1),
            ("α (bits/param)", self.alpha),
        ]


class FitMiaSummary(Summary):
    """The MIA law fitted to a table of (capacity, n_sequences, F1), with Wald CIs."""

    kind: ClassVar[str] = "laws-fit-mia"
    file: ClassVar[str] = "fit_mia.json"

    input: str
    alpha: float
    capacity_source: str
    form: str
    constants: dict[str, float]
    se: dict[str, float]
    ci: dict[str, list[float]]
    ci_level: float
    at_bound: dict[str, bool]
    rmse: float
    max_abs_residual: float
    n: int
    dof: int
    warnings: list[str] = Field(default_factory=list)
    published_constants: dict[str, float]
    predictions: list[dict[str, Any]]

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("form", self.form),
            ("rows", self.n),
            ("RMSE (F1)", self.rmse),
            *((f"fitted {k}", v) for k, v in self.constants.items()),
            ("warnings", len(self.warnings)),
        ]


class MiaRun(BaseModel):
    """One trained model of the MIA experiment and its loss-attack result."""

    model_config = ConfigDict(extra="allow")
    n_layer: int
    d_model: int
    params: int
    capacity_multiple: float
    n_sequences: int
    dataset_bits: float
    capacity_bits: float
    capacity_ratio: float
    sequences_per_capacity_bit: float
    memorized_bits: float
    memorized_bits_per_param: float
    saturated: bool
    steps: int
    f1: float
    balanced_accuracy: float
    auc: float
    seconds: float
    fitted_f1: float | None = None
    published_law_f1: float | None = None


class MiaExperimentSummary(Summary):
    """The MIA scaling law measured on our own models (Morris et al. 2025, arXiv:2505.24832)."""

    kind: ClassVar[str] = "laws-mia-experiment"
    file: ClassVar[str] = "mia_experiment.json"

    experiment: str
    attack: str
    nonmembers: str
    capacity: str
    first_token: str
    form: str
    law_note: str
    vocab_size: int
    seq_len: int
    bits_per_sequence: float
    preset: str
    seed: int
    fit: dict[str, Any] | None = None
    fit_skipped: str | None = None
    published_constants: dict[str, float]
    shapes: dict[str, dict[str, Any]]
    all_saturated: bool
    train_seconds: float
    wall_seconds_this_invocation: float
    reused_cells: int = 0
    runs: list[MiaRun]

    def headline(self) -> list[tuple[str, Any]]:
        h: list[tuple[str, Any]] = [
            ("preset", self.preset),
            ("vocabulary V", self.vocab_size),
            ("sequence length S", self.seq_len),
            ("runs", len(self.runs)),
            ("all runs saturated", self.all_saturated),
        ]
        if self.fit:
            h.append(("RMSE of the fit (F1)", self.fit.get("rmse")))
            h += [(f"fitted {k}", v) for k, v in self.fit.get("constants", {}).items()]
        elif self.fit_skipped:
            h.append(("fit", self.fit_skipped))
        return h


class DoubleDescentRun(BaseModel):
    """One dataset size of the double-descent experiment."""

    model_config = ConfigDict(extra="allow")
    n_sequences: int
    dataset_bits: float
    capacity_bits: float
    capacity_ratio: float
    measured_capacity_ratio: float | None = None
    train_bits_per_token: float
    test_bits_per_token: float
    source_test_bits_per_token: float
    excess_test_bits_per_token: float
    memorized_bits: float
    saturated: bool
    steps: int
    seconds: float


class DoubleDescentSummary(Summary):
    """Held-out code length against capacity ratio on a Markov source, and where it peaks."""

    kind: ClassVar[str] = "laws-double-descent"
    file: ClassVar[str] = "double_descent.json"

    experiment: str
    capacity: str
    capacity_ratio: str
    loss: str
    vocab_size: int
    seq_len: int
    shape: dict[str, Any]
    source: dict[str, Any]
    preset: str
    seed: int
    measured_capacity_bits: float
    measured_bits_per_param: float
    peak: dict[str, Any]
    all_saturated: bool
    train_seconds: float
    wall_seconds_this_invocation: float
    reused_cells: int = 0
    runs: list[DoubleDescentRun]

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("preset", self.preset),
            ("parameters", self.shape.get("params")),
            ("source entropy (bits/token)", self.source.get("entropy_rate_bits")),
            ("measured capacity (bits)", self.measured_capacity_bits),
            ("measured bits/param", self.measured_bits_per_param),
            ("peak at capacity ratio", self.peak.get("argmax_ratio")),
            ("peak test loss (bits/token)", self.peak.get("argmax_test_bits_per_token")),
            ("peak is interior", self.peak.get("argmax_is_interior")),
            ("all runs saturated", self.all_saturated),
        ]
