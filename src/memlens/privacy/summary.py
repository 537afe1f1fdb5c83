"""What ``memlens dp-audit`` writes to ``dp_audit.json``, as typed models.

The field names are the JSON keys; the recipe (:mod:`memlens.privacy.recipe`) builds these
models, the command line prints them, :mod:`memlens.privacy.outputs` tabulates and plots them and
``memlens report`` shows their :meth:`~DPAuditSummary.headline` and
:meth:`~DPAuditSummary.tables`, so each key is spelled once. Units: ε in nats; code lengths,
losses and exposures in bits.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from memlens.privacy.bound import CanaryAudit
from memlens.results import Summary


class CanarySet(BaseModel):
    """The audit's canaries: ``kind`` (``random`` or ``file``), ``m`` of them, ``n_included``
    inserted, the median ``length_tokens``, ``n_candidates`` never-trained strings for exposure,
    and the inclusion rule."""

    model_config = ConfigDict(extra="allow")

    kind: str
    m: int
    n_included: int
    length_tokens: int
    n_candidates: int = 0
    inclusion: str = ""


class ArmSummary(BaseModel):
    """One trained model and its audit.

    Attributes
    ----------
    name: ``no-dp`` or ``dp-eps<ε>``; dp: trained with DP-SGD; epsilon_target: the target ε.
    accountant_epsilon: the ε the accountant reports spent (``None`` without DP).
    epsilon_lower_bound: ε̂, the one-run lower bound (Steinke, Nasr & Jagielski 2023).
    audit: the guesses, the selection of k₊/k₋ and the ceilings
        (:class:`~memlens.privacy.bound.CanaryAudit`).
    exposure: rank and extrapolated exposure of inserted and never-inserted canaries (bits) and
        the skew-normal fit, when there are candidates.
    mean_loss_inserted_bits_per_token, mean_loss_not_inserted_bits_per_token: the canaries' loss.
    train: training statistics (steps, seconds, noise multiplier, accountant, loop ...).
    reused_weights: the trained weights came from an earlier run of the same directory.
    """

    model_config = ConfigDict(extra="allow")

    name: str
    dp: bool
    epsilon_target: float | None = None
    accountant_epsilon: float | None = None
    epsilon_lower_bound: float
    audit: CanaryAudit
    exposure: dict[str, Any] | None = None
    mean_loss_inserted_bits_per_token: float | None = None
    mean_loss_not_inserted_bits_per_token: float | None = None
    train: dict[str, Any] = {}
    reused_weights: bool = False


class DPAuditSummary(Summary):
    """``dp_audit.json``: the canaries, the audit's settings and one :class:`ArmSummary` per arm
    (the arm without DP first, then by target ε)."""

    kind: ClassVar[str] = "dp-audit"
    file: ClassVar[str] = "dp_audit.json"

    method: str = ""
    units: str = ""
    canaries: CanarySet
    score: str
    delta: float
    confidence: float
    selection: str
    data: dict[str, Any] = {}
    arms: dict[str, ArmSummary]
    seconds: float = 0.0

    def headline(self) -> list[tuple[str, Any]]:
        c = self.canaries
        out: list[tuple[str, Any]] = [
            ("canaries", c.m), ("inserted", c.n_included), ("δ", self.delta),
            ("confidence", self.confidence), ("selection of k±", self.selection),
        ]  # fmt: skip
        for a in self.arms.values():
            out.append((f"ε̂ {a.name}", a.epsilon_lower_bound))
            if a.accountant_epsilon is not None:
                out.append((f"accountant's ε {a.name}", a.accountant_epsilon))
        first = next(iter(self.arms.values()), None)
        if first is not None:
            out.append(("ceiling (all canaries right)", first.audit.ceiling))
        return out

    def tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        cols = [
            "arm", "accountant ε", "σ", "ε̂", "correct", "guesses", "ceiling at guesses",
            "rank exposure in", "rank exposure out",
        ]  # fmt: skip
        rows = []
        for a in self.arms.values():
            ex = a.exposure or {}
            rows.append(
                [
                    a.name, a.accountant_epsilon, a.train.get("noise_multiplier"),
                    a.epsilon_lower_bound, a.audit.correct, a.audit.guesses,
                    a.audit.ceiling_at_guesses, ex.get("rank_inserted_mean"),
                    ex.get("rank_not_inserted_mean"),
                ]
            )  # fmt: skip
        return [("arms (ε in nats, exposure in bits)", cols, rows)]
