"""Headline numbers of a run: a few labelled values per run type, and a generic fallback.

A run kind with a typed summary (:data:`memlens.results.SUMMARIES`) gives its own
``summary.headline()`` and ``summary.tables()``. The other kinds have an adapter that reads the
run's main JSON (and manifest) by key paths; a key a newer version of a command renamed or dropped
is skipped, never an error. A run type without either, or whose headline is empty or unreadable,
gets the scalar entries of its main JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memlens.report.runs import Run

Headline = list[tuple[str, Any]]
# An extra table built from the JSON: (title, columns, rows).
ExtraTable = tuple[str, list[str], list[list[Any]]]

_MISSING = object()


def get(obj: Any, path: str, default: Any = _MISSING) -> Any:
    """``obj["a"]["b"]`` for ``path="a.b"`` (list indices allowed); ``default`` when absent."""
    cur = obj
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return default
    return cur


def _pick(obj: Any, items: list[tuple[str, str]]) -> Headline:
    out: Headline = []
    for label, path in items:
        v = get(obj, path)
        if v is not _MISSING and not isinstance(v, (dict, list)):
            out.append((label, v))
    return out


def _audit(run: Run) -> tuple[Headline, list[ExtraTable]]:
    h = _pick(
        run.main,
        [
            ("target", "target.name"),
            ("reference", "reference.name"),
            ("training samples", "train.n"),
            ("mean unintended bits (train)", "train.mean_unintended_bits"),
            ("mean unintended bits (held-out)", "heldout.mean_unintended_bits"),
            ("train − held-out (bits)", "mean_unintended_bits_difference"),
            ("total unintended bits (train)", "train.total_unintended_bits"),
            ("fraction of capacity", "capacity.fraction_of_capacity"),
            ("extraction rate (train)", "train.extraction_rate"),
            ("extraction rate (held-out)", "heldout.extraction_rate"),
            ("extraction rate difference", "extraction_rate_difference"),
            ("Spearman(TF-IDF, bits), positive", "tfidf_spearman"),
        ],
    )
    return h, []


def _mia(run: Run) -> tuple[Headline, list[ExtraTable]]:
    r = run.main or {}
    h = _pick(
        r,
        [
            ("target model", "model.name"),
            ("members", "n_members"),
            ("non-members", "n_nonmembers"),
        ],
    )
    attacks = r.get("attacks") if isinstance(r, dict) else None
    tables: list[ExtraTable] = []
    if isinstance(attacks, dict) and attacks:
        aucs = {
            k: v.get("auc")
            for k, v in attacks.items()
            if isinstance(v, dict) and isinstance(v.get("auc"), (int, float))
        }
        if aucs:
            best = max(aucs, key=lambda k: aucs[k])
            h.append(("best attack", best))
            h.append(("best ROC-AUC", aucs[best]))
        fprs = sorted(
            {f for v in attacks.values() if isinstance(v, dict) for f in v.get("tpr_at_fpr", {})},
            key=float,
        )
        cols = ["attack", "ROC-AUC", "AUC CI", *(f"TPR@FPR≤{f}" for f in fprs), "F1", "bal. acc."]
        rows = []
        for name, v in attacks.items():
            if not isinstance(v, dict):
                continue
            ci = v.get("auc_ci")
            ci_s = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if _is_pair(ci) else None
            tpr = v.get("tpr_at_fpr") or {}
            rows.append(
                [name, v.get("auc"), ci_s, *(tpr.get(f) for f in fprs), v.get("f1"),
                 v.get("balanced_accuracy")]
            )  # fmt: skip
        tables.append(("attacks", cols, rows))
    return h, tables


def _is_pair(x: Any) -> bool:
    return (
        isinstance(x, list)
        and len(x) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x)
    )


def _prior_theory(run: Run) -> tuple[Headline, list[ExtraTable]]:
    h = _pick(
        run.main,
        [
            ("prior", "limit.prior"),
            ("γ = d/n", "limit.gamma"),
            ("regime", "limit.regime"),
            ("min-norm risk", "limit.minnorm_risk"),
            ("Bayes risk", "limit.bayes_risk"),
            ("optimal ridge risk", "limit.ridge_opt_risk"),
            ("optimal λ", "limit.lambda_opt"),
            ("memorization threshold 1/J", "limit.threshold_memorization"),
            ("overfitting threshold V", "limit.threshold_overfitting"),
        ],
    )
    return h, []


def _prior_diagnose(run: Run) -> tuple[Headline, list[ExtraTable]]:
    h = _pick(
        run.main,
        [
            ("verdict", "verdict"),
            ("regime", "regime"),
            ("n", "n"),
            ("d", "d"),
            ("optimal λ (LOO)", "lambda_opt"),
            ("LOO risk at optimum", "loo_opt"),
            ("LOO risk, interpolator", "loo_interp"),
            ("noise variance σ²", "sigma2_hat"),
            ("signal-to-noise", "snr"),
        ],
    )
    return h, []


def _puzzles_eval(run: Run) -> tuple[Headline, list[ExtraTable]]:
    h = _pick(
        run.main,
        [
            ("items", "items"),
            ("accuracy", "accuracy"),
            ("accuracy within budget", "accuracy_within_budget"),
            ("items over budget", "items_over_budget"),
            ("budget (tokens)", "budget.budget_tokens"),
        ],
    )
    return h, []


ADAPTERS: dict[str, Callable[[Run], tuple[Headline, list[ExtraTable]]]] = {
    "audit": _audit,
    "mia": _mia,
    "mia-metrics": _mia,
    "prior-theory": _prior_theory,
    "prior-diagnose": _prior_diagnose,
    "puzzles-eval": _puzzles_eval,
}


def _typed(run: Run) -> tuple[Headline, list[ExtraTable]] | None:
    """The headline of a run kind with a typed summary (:data:`memlens.results.SUMMARIES`):
    ``summary.headline()`` and ``summary.tables()``; ``None`` when the kind has none."""
    from memlens.results import summary_model

    model = summary_model(run.kind)
    if model is None:
        return None
    summary = model.model_validate(run.main)
    return summary.headline(), summary.tables()


def generic_headline(obj: Any, *, limit: int = 16) -> Headline:
    """Scalar entries of a JSON object, nested names joined by dots, at most ``limit``."""
    out: Headline = []

    def walk(o: Any, prefix: str, depth: int) -> None:
        if not isinstance(o, dict):
            return
        for k, v in o.items():
            if len(out) >= limit:
                return
            name = f"{prefix}{k}"
            if isinstance(v, dict):
                if depth < 1:
                    walk(v, name + ".", depth + 1)
            elif isinstance(v, list):
                continue
            elif isinstance(v, str) and len(v) > 80:
                continue
            else:
                out.append((name, v))

    walk(obj, "", 0)
    return out


def headline(run: Run) -> tuple[Headline, list[ExtraTable]]:
    """The headline numbers and extra tables of ``run`` (never raises on odd JSON)."""
    adapter = ADAPTERS.get(run.kind)
    h: Headline = []
    tables: list[ExtraTable] = []
    if isinstance(run.main, dict):
        try:
            typed = _typed(run)
            if typed is not None:
                h, tables = typed
            elif adapter is not None:
                h, tables = adapter(run)
        except Exception as exc:  # noqa: BLE001 - an odd result file must not sink the report
            run.notes.append(f"headline numbers for {run.kind} failed ({exc}); showing raw values")
            h, tables = [], []
    if not h:
        h = generic_headline(run.main)
    if not h:  # no result JSON (e.g. puzzles make): the manifest's own extra fields
        standard = {"kind", "config", "seed", "versions", "git_revision", "command", "written_at"}
        h = generic_headline(
            {k: v for k, v in run.manifest.items() if k not in standard | {"status"}}
        )
    status = run.manifest.get("status")
    if status is not None:
        h.append(("status", status))
    return h, tables
