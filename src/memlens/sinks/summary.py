"""``sinks.json``: the typed result of a MemSinks experiment (field names are the JSON keys).

Losses are bits per token (token-weighted means over predicted tokens).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from memlens.results import Summary


class ArmEval(BaseModel):
    """One model (or one inference mode of the MemSinks model) evaluated."""

    model_config = ConfigDict(extra="allow")
    val_loss: float
    repeated_loss: float
    mem_gap: float
    fresh_train_loss: float
    extraction: dict[str, Any]


#: The evaluated rows of ``sinks.json``: the three arms and the MemSinks model's other modes.
EVAL_ROWS = (
    "standard",
    "dedup",
    "memsinks",
    "memsinks_sinks_dropped",
    "memsinks_sinks_dropped_unscaled",
    "memsinks_sinks_scaled",
)


class SinksSummary(Summary):
    """Standard vs deduplicated vs MemSinks training at equal compute (Ghosal, Maini &
    Raghunathan 2025), and whether the published claim holds here."""

    kind: ClassVar[str] = "sinks"
    file: ClassVar[str] = "sinks.json"

    units: str
    paper: str
    preset: str
    data: dict[str, Any]
    model: dict[str, Any]
    sinks: dict[str, Any]
    compute: dict[str, Any]
    optimizer: dict[str, Any]
    standard: ArmEval
    dedup: ArmEval
    memsinks: ArmEval
    memsinks_sinks_scaled: ArmEval
    memsinks_sinks_dropped: ArmEval
    memsinks_sinks_dropped_unscaled: ArmEval
    claim: dict[str, Any]
    localization: dict[str, Any]
    seconds_total_this_invocation: float = 0.0

    def rows(self) -> dict[str, ArmEval]:
        """Every evaluated row by name (:data:`EVAL_ROWS`)."""
        return {name: getattr(self, name) for name in EVAL_ROWS}

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("gap closed by dropping sinks", self.claim.get("gap_closed_fraction")),
            ("val loss, dropped / standard", self.claim.get("val_loss_ratio_dropped_to_standard")),
            ("published claim holds", self.claim.get("holds")),
            ("parameters", self.model.get("n_params")),
            ("steps per arm", self.compute.get("steps")),
            ("preset", self.preset),
        ]

    def tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        cols = ["arm", "val loss", "repeated loss", "memorization gap", "fresh-train loss"]
        rows = [
            [name, r.val_loss, r.repeated_loss, r.mem_gap, r.fresh_train_loss]
            for name, r in self.rows().items()
        ]
        return [("arms (bits per token)", cols, rows)]
