"""What ``memlens mia`` and ``memlens mia metrics`` write to ``mia.json``, as typed models.

The field names are the JSON keys; the recipe (:mod:`memlens.mia.recipe`) builds these models,
the command line prints them and the report (:mod:`memlens.report.headline`) reads them, so
each key is spelled once. Units: bits; scores follow "higher = more likely a member".
"""

from __future__ import annotations

from typing import Any, ClassVar

from memlens.mia.metrics import AttackEvaluation, AttackMetrics
from memlens.results import Summary


class MIAMetricsSummary(Summary, AttackEvaluation):
    """``mia.json`` of ``memlens mia metrics``: the evaluation of score columns of a file."""

    kind: ClassVar[str] = "mia-metrics"
    file: ClassVar[str] = "mia.json"

    source: str | None = None

    def best_attack(self) -> tuple[str, AttackMetrics] | None:
        """The attack with the highest ROC-AUC (first on ties), or ``None`` without attacks."""
        if not self.attacks:
            return None
        name = max(self.attacks, key=lambda k: self.attacks[k].auc)
        return name, self.attacks[name]

    def headline(self) -> list[tuple[str, Any]]:
        first = next(iter(self.attacks.values()), None)
        out: list[tuple[str, Any]] = []
        if first is not None:
            out += [("members", first.n_members), ("non-members", first.n_nonmembers)]
        best = self.best_attack()
        if best is not None:
            out += [("best attack", best[0]), ("best ROC-AUC", best[1].auc)]
        return out

    def tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        """One row per attack: ROC-AUC with its interval, TPR at each FPR level, F1, balanced
        accuracy."""
        if not self.attacks:
            return []
        fprs = sorted({f for m in self.attacks.values() for f in m.tpr_at_fpr}, key=float)
        cols = ["attack", "ROC-AUC", "AUC CI", *(f"TPR@FPR≤{f}" for f in fprs), "F1", "bal. acc."]
        rows = []
        for name, m in self.attacks.items():
            lo_hi = m.auc_ci if len(m.auc_ci) == 2 else None
            ci = f"[{lo_hi[0]:.3f}, {lo_hi[1]:.3f}]" if lo_hi is not None else None
            rows.append(
                [name, m.auc, ci, *(m.tpr_at_fpr.get(f) for f in fprs), m.f1, m.balanced_accuracy]
            )
        return [("attacks", cols, rows)]


class MIASummary(MIAMetricsSummary):
    """``mia.json`` of ``memlens mia``: the attacks' metrics, the samples and the models.

    Attributes (beyond :class:`~memlens.mia.metrics.AttackEvaluation`)
    ------------------------------------------------------------------
    n_members, n_nonmembers: samples of each class after deduplication (before the NaN policy).
    k: the Min-K% fraction.
    model: the target's description; references: each reference's description, label and
        first-token convention against the target.
    data: the input layout, sources, duplicates and conflicts.
    units: how to read the scores.
    """

    kind: ClassVar[str] = "mia"

    n_members: int = 0
    n_nonmembers: int = 0
    k: float = 0.2
    model: dict[str, Any] = {}
    references: list[dict[str, Any]] = []
    data: dict[str, Any] = {}
    units: str = ""

    def headline(self) -> list[tuple[str, Any]]:
        from memlens.models.adapters import model_label

        out: list[tuple[str, Any]] = [
            ("target model", model_label(self.model)),
            ("members", self.n_members),
            ("non-members", self.n_nonmembers),
        ]
        best = self.best_attack()
        if best is not None:
            out += [("best attack", best[0]), ("best ROC-AUC", best[1].auc)]
        return out
