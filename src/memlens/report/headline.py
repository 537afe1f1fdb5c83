"""Headline numbers of a run: a few labelled values per run type, and a generic fallback.

Each adapter reads the run's main JSON (and manifest) by key paths; a key a newer version of a
command renamed or dropped is skipped, never an error. A run type without an adapter, or whose
adapter finds nothing, gets the scalar entries of its main JSON.
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


def _capacity(run: Run) -> tuple[Headline, list[ExtraTable]]:
    r = run.main or {}
    h = _pick(
        r,
        [
            ("α (bits/param)", "alpha_bits_per_param"),
            ("α standard error", "alpha_se"),
            ("mean per-model α", "alpha_mean_per_model"),
            ("published α (headline)", "published_alpha.headline"),
            ("all runs saturated", "all_saturated"),
            ("vocabulary V", "vocab_size"),
            ("sequence length S", "seq_len"),
            ("precision", "precision"),
            ("preset", "preset"),
            ("backend", "backend"),
            ("training seconds", "wall_seconds"),
        ],
    )
    models = r.get("models") if isinstance(r, dict) else None
    tables: list[ExtraTable] = []
    if isinstance(models, list) and models:
        h.insert(4, ("models", len(models)))
        cols = ["layers", "d_model", "params", "capacity bits", "bits/param", "saturated"]
        keys = ["n_layer", "d_model", "params", "capacity_bits", "bits_per_param", "saturated"]
        rows = [[m.get(k) for k in keys] for m in models if isinstance(m, dict)]
        tables.append(("models", cols, rows))
    return h, tables


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


def _sinks(run: Run) -> tuple[Headline, list[ExtraTable]]:
    r = run.main or {}
    h = _pick(
        r,
        [
            ("gap closed by dropping sinks", "claim.gap_closed_fraction"),
            ("val loss, dropped / standard", "claim.val_loss_ratio_dropped_to_standard"),
            ("published claim holds", "claim.holds"),
            ("parameters", "model.n_params"),
            ("steps per arm", "compute.steps"),
            ("preset", "preset"),
        ],
    )
    arms = [
        k
        for k, v in (r.items() if isinstance(r, dict) else [])
        if isinstance(v, dict) and "val_loss" in v and "mem_gap" in v
    ]
    tables: list[ExtraTable] = []
    if arms:
        cols = ["arm", "val loss", "repeated loss", "memorization gap", "fresh-train loss"]
        keys = ["val_loss", "repeated_loss", "mem_gap", "fresh_train_loss"]
        tables.append(
            ("arms (bits per token)", cols, [[a, *(r[a].get(k) for k in keys)] for a in arms])
        )
    return h, tables


def _track(run: Run) -> tuple[Headline, list[ExtraTable]]:
    r = run.main or {}
    h = _pick(
        r,
        [
            ("criterion", "criterion.name"),
            ("threshold", "criterion.threshold"),
            ("final step", "final_step"),
            ("observations", "n_observations"),
            ("repeated memorized more", "comparisons.repeated_vs_unique.memorized_more"),
            ("repeated memorized earlier", "comparisons.repeated_vs_unique.memorized_earlier"),
            ("held-out never memorized", "comparisons.heldout_never_memorized"),
            ("tracking overhead fraction", "cost.overhead_fraction"),
        ],
    )
    groups = r.get("groups") if isinstance(r, dict) else None
    if isinstance(groups, dict):
        for g, v in groups.items():
            if isinstance(v, dict) and "fraction_memorized" in v:
                h.append((f"fraction memorized: {g}", v["fraction_memorized"]))
    return h, []


def _grok(run: Run) -> tuple[Headline, list[ExtraTable]]:
    h = _pick(
        run.main,
        [
            ("task", "task"),
            ("train accuracy (final)", "train_acc_final"),
            ("test accuracy (final)", "test_acc_final"),
            ("step train acc ≥ 0.99", "step_train_acc_99"),
            ("step test acc ≥ 0.99", "step_test_acc_99"),
            ("grokking delay (steps)", "grok_delay_steps"),
            ("peak memorization gap (bits)", "memorization_gap_bits_peak"),
            ("final memorization gap (bits)", "memorization_gap_bits_final"),
            ("weight norm (final)", "weight_norm_final"),
        ],
    )
    return h, []


def _laws_fit_mia(run: Run) -> tuple[Headline, list[ExtraTable]]:
    r = run.main or {}
    h = _pick(r, [("form", "form"), ("rows", "n"), ("RMSE (F1)", "rmse")])
    consts = r.get("constants") if isinstance(r, dict) else None
    if isinstance(consts, dict):
        for k, v in consts.items():
            h.append((f"fitted {k}", v))
    if isinstance(r, dict) and isinstance(r.get("warnings"), list):
        h.append(("warnings", len(r["warnings"])))
    return h, []


def _laws_mia_experiment(run: Run) -> tuple[Headline, list[ExtraTable]]:
    r = run.main or {}
    h = _pick(
        r, [("preset", "preset"), ("vocabulary V", "vocab_size"), ("sequence length S", "seq_len")]
    )
    if isinstance(r.get("runs"), list):
        h.append(("runs", len(r["runs"])))
    h += _pick(r, [("all runs saturated", "all_saturated"), ("RMSE of the fit (F1)", "fit.rmse")])
    consts = get(r, "fit.constants", None)
    if isinstance(consts, dict):
        for k, v in consts.items():
            h.append((f"fitted {k}", v))
    elif "fit_skipped" in r:
        h.append(("fit", r["fit_skipped"]))
    return h, []


def _laws_double_descent(run: Run) -> tuple[Headline, list[ExtraTable]]:
    h = _pick(
        run.main,
        [
            ("preset", "preset"),
            ("parameters", "shape.params"),
            ("source entropy (bits/token)", "source.entropy_rate_bits"),
            ("measured capacity (bits)", "measured_capacity_bits"),
            ("measured bits/param", "measured_bits_per_param"),
            ("peak at capacity ratio", "peak.argmax_ratio"),
            ("peak test loss (bits/token)", "peak.argmax_test_bits_per_token"),
            ("peak is interior", "peak.argmax_is_interior"),
            ("all runs saturated", "all_saturated"),
        ],
    )
    return h, []


ADAPTERS: dict[str, Callable[[Run], tuple[Headline, list[ExtraTable]]]] = {
    "capacity": _capacity,
    "audit": _audit,
    "mia": _mia,
    "mia-metrics": _mia,
    "sinks": _sinks,
    "track": _track,
    "grok": _grok,
    "laws-fit-mia": _laws_fit_mia,
    "laws-mia-experiment": _laws_mia_experiment,
    "laws-double-descent": _laws_double_descent,
}


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
    from memlens.results import summary_model

    adapter = ADAPTERS.get(run.kind)
    model = summary_model(run.kind)
    h: Headline = []
    tables: list[ExtraTable] = []
    if model is not None and isinstance(run.main, dict):
        try:
            summary = model.model_validate(run.main)
            h, tables = summary.headline(), summary.tables()
        except Exception as exc:  # noqa: BLE001 - an odd result file must not sink the report
            run.notes.append(f"headline numbers for {run.kind} failed ({exc}); showing raw values")
            h, tables = [], []
    elif adapter is not None and isinstance(run.main, dict):
        try:
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
