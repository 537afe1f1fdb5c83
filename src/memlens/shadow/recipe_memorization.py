"""``memlens shadow memorization``: counterfactual memorization of every candidate example.

:func:`memorization` reads the shadows' signals (:mod:`memlens.shadow.directory`), computes the
IN-minus-OUT means of :func:`memlens.shadow.counterfactual.counterfactual` (Zhang et al. 2023)
for per-token accuracy and log-likelihood, adds TF-IDF rarity (and, given an audit directory,
its unintended bits), and writes the ranked table, the summary and a histogram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.progress import ProgressFn
from memlens.results import RunResult
from memlens.shadow.config import MemorizationConfig
from memlens.shadow.directory import check_pool, load_shadows
from memlens.shadow.summary import MemorizationSummary

#: The columns of each entry of ``memorization.json``'s ``top``.
TOP_COLUMNS = (
    "rank", "pool_id", "count", "mem_accuracy", "se_accuracy", "mem_bits", "se_bits", "tfidf",
    "text",
)  # fmt: skip


@dataclass(repr=False)
class MemorizationResult(RunResult[MemorizationSummary]):
    """The typed ``memorization.json`` (``summary``), the run directory, and ``table``: one row
    per candidate example by descending ``mem_accuracy`` (``memorization.parquet``, a pandas
    DataFrame)."""

    table: Any = None


def memorization(
    config: MemorizationConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> MemorizationResult:
    """Counterfactual memorization of every candidate (:mod:`memlens.shadow.counterfactual`).

    Shadows split by text (``split_by="text"``) give one row per distinct text: its copies were
    IN together, so the measure is that of training on all of them against none.

    Writes ``memorization.parquet`` (one row per example: text, count in the pool, ``n_in``,
    ``n_out``, ``mem_accuracy`` and its standard error, ``mem_bits`` (sequence log-likelihood,
    bits) and per token, the IN and OUT means, TF-IDF rarity, and the audit's unintended bits
    when an audit directory is given), ``memorization.json`` (summary, top examples, Spearman
    correlations) and ``memorization_hist.png``. It takes a second, so ``progress`` receives
    nothing; it is accepted for the common contract.
    """
    import pandas as pd

    from memlens.audit.rarity import TfidfCorpus
    from memlens.shadow.counterfactual import counterfactual
    from memlens.store import RunDir, default_out_dir

    sh = load_shadows(config.shadows)
    check_pool(sh, config.pool, config.text_column)
    keep = sh.keep
    cand = sh.candidates
    acc = counterfactual(sh.signals.accuracy, keep)
    bits = counterfactual(sh.signals.loglik_bits, keep)
    per_tok = counterfactual(sh.signals.mean_log2p, keep)
    pool = sh.pool.iloc[cand].reset_index(drop=True)
    df = pd.DataFrame(
        {
            "example": np.arange(len(cand)),
            "pool_id": cand,
            "count": pool["count"].to_numpy(),
            "n_tokens": sh.signals.n_tokens,
            "n_in": acc["n_in"],
            "n_out": acc["n_out"],
            "mem_accuracy": acc["mem"],
            "se_accuracy": acc["se"],
            "accuracy_in": acc["mean_in"],
            "accuracy_out": acc["mean_out"],
            "mem_bits": bits["mem"],
            "se_bits": bits["se"],
            "mem_bits_per_token": per_tok["mem"],
            "se_bits_per_token": per_tok["se"],
        }
    )
    texts = sh.texts
    if texts is not None:
        df["text"] = [texts[i] for i in cand]
    # TF-IDF rarity (Morris et al. 2025) over the shadows' tokens (no BOS) of every pool example.
    start = 1 if texts is not None else 0
    docs = [sh.tokens[i, start : sh.lengths[i]].tolist() for i in range(len(sh.lengths))]
    corpus = TfidfCorpus(docs)
    df["tfidf"] = [corpus.score(docs[i]) for i in cand]
    if "entropy_bits" in sh.pool.columns:
        df["source_bits"] = pool["entropy_bits"].to_numpy()
    audit_note = None
    by_split = sh.summary.split_by == "text"
    if by_split:
        # Split by text: a text's copies share their IN models and their signals; one row each.
        from memlens.shadow.design import first_copies

        df = df.iloc[first_copies(sh.groups)].reset_index(drop=True)
    if config.audit is not None:
        df, audit_note = _join_audit(df, config.audit)
    correlations = _spearman(df)
    df = df.sort_values("mem_accuracy", ascending=False, kind="stable").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    unique = df["count"] == 1
    summary = MemorizationSummary(
        n_models=sh.n_models,
        n_examples=int(len(df)),
        models_per_estimate={
            "in": int(df["n_in"].min()),
            "out": int(df["n_out"].min()),
            "rule": (
                "every text is IN, with all its copies, for exactly K/2 shadows and OUT for the "
                "other K/2 (split by text; one row per distinct text)"
                if by_split
                else "every example is IN for exactly K/2 shadows and OUT for the other K/2"
            ),
        },
        measure="M = per-token greedy accuracy (Zhang et al. 2023); also bits of log-likelihood",
        mean_mem_accuracy=float(df["mem_accuracy"].mean()),
        mean_mem_bits=float(df["mem_bits"].mean()),
        median_se_accuracy=_finite_median(df["se_accuracy"]),
        unique_mean_mem_accuracy=float(df.loc[unique, "mem_accuracy"].mean())
        if unique.any()
        else None,
        repeated_mean_mem_accuracy=float(df.loc[~unique, "mem_accuracy"].mean())
        if (~unique).any()
        else None,
        n_repeated=int((~unique).sum()),
        spearman=correlations,
        audit=audit_note,
        top=[
            {
                k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in row.items()
                if k in TOP_COLUMNS
            }
            for row in df.head(config.top).to_dict("records")
        ],
        shadows=str(sh.path),
        world=sh.summary.world,
        split_by=sh.summary.split_by,
    )
    out = Path(out) if out is not None else default_out_dir(MemorizationSummary.kind)
    rd = RunDir(out, MemorizationSummary.kind, config, 0)
    rd.write_table("memorization.parquet", df)
    rd.save_figure("memorization_hist.png", _plot_hist(df))
    rd.write_json(summary.file, summary.to_json())
    rd.write_manifest(
        outputs=["memorization.json", "memorization.parquet", "memorization_hist.png"]
    )
    return MemorizationResult(summary=summary, out_dir=rd.path, table=df)


def _spearman(df: Any) -> dict[str, dict[str, Any]]:
    """Spearman's rho of both measures with TF-IDF, the audit's unintended bits and the count,
    on all examples and on those with positive memorization (``n >= 3``, neither constant)."""
    from scipy.stats import spearmanr

    correlations = {}
    pos = df["mem_accuracy"] > 0
    for other in ("tfidf", "unintended_bits", "count"):
        if other not in df.columns:
            continue
        for measure in ("mem_accuracy", "mem_bits"):
            for subset, mask in (("all", np.ones(len(df), bool)), ("positive", pos.to_numpy())):
                x, y = df.loc[mask, measure], df.loc[mask, other]
                ok = np.isfinite(x) & np.isfinite(y)
                if ok.sum() >= 3 and np.ptp(y[ok]) > 0 and np.ptp(x[ok]) > 0:
                    r = spearmanr(x[ok], y[ok])
                    correlations[f"{measure}~{other}:{subset}"] = {
                        "rho": float(r.statistic),
                        "p": float(r.pvalue),
                        "n": int(ok.sum()),
                    }
    return correlations


def _finite_median(values: Any) -> float | None:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else None


def _join_audit(df: Any, audit: str) -> tuple[Any, str]:
    import pandas as pd

    path = Path(audit).expanduser() / "samples.parquet"
    if not path.exists():
        raise UserError(f"{audit} is not an audit directory (no samples.parquet).")
    if "text" not in df.columns:
        raise UserError("a synthetic world has no texts to join with an audit.")
    a = pd.read_parquet(path)
    if "text" not in a.columns or "unintended_bits" not in a.columns:
        raise UserError(f"{path} has no text and unintended_bits columns.")
    where = "the audit"
    if "split" in a.columns:
        # Unintended memorization is a training sample's: the held-out rows are the audit's
        # control (the audited model never trained on them), not a memorization to correlate.
        a = a[a["split"] == "train"]
        where = "the training samples of the audit"
    a = a.drop_duplicates("text")[["text", "unintended_bits"]]
    merged = df.merge(a, on="text", how="left")
    found = int(merged["unintended_bits"].notna().sum())
    return merged, f"{found} of {len(df)} examples found in {where} {audit}"


def _plot_hist(df: Any) -> Any:
    """Histograms of both measures, unique and repeated examples apart (log counts)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    unique = df["count"] == 1
    for ax, col, label in (
        (axes[0], "mem_accuracy", "counterfactual memorization (accuracy)"),
        (axes[1], "mem_bits", "counterfactual memorization (bits)"),
    ):
        lo, hi = float(df[col].min()), float(df[col].max())
        bins = np.linspace(lo, hi if hi > lo else lo + 1, 40)
        ax.hist(df.loc[unique, col], bins=bins, alpha=0.7, label="unique in the pool")
        if (~unique).any():
            ax.hist(df.loc[~unique, col], bins=bins, alpha=0.7, label="repeated in the pool")
        ax.set_xlabel(label)
        ax.set_ylabel("examples")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"counterfactual memorization of {len(df)} examples")
    return fig
