"""Metrics for membership-inference attacks, with conventions stated and tested.

Conventions (docs/concepts.md §4):

* **Labels:** ``1`` = member (in the training set), ``0`` = non-member. One widely used benchmark
  once had its positive class reversed; memlens accepts ``member``/``nonmember`` strings and
  booleans too, but never guesses the direction.
* **Scores:** higher = more likely a member. A reversed score gives ``1 - AUC``.
* **ROC-AUC** ``= P[s(member) > s(non-member)] + 1/2 P[tie]`` (the Mann-Whitney statistic),
  computed with scikit-learn's :func:`~sklearn.metrics.roc_auc_score`; the bootstrap confidence
  interval resamples members and non-members separately (stratified, class sizes kept) and takes
  percentiles of the resampled AUCs.
* **TPR at FPR <= alpha** on the *exact step ROC*: predict "member" when ``score >= t``; among all
  thresholds ``t`` (every distinct score, plus ``+inf`` which predicts nobody) whose false-positive
  count is at most ``floor(alpha * n_nonmembers)``, report the largest true-positive rate. No
  interpolation between ROC points; tied scores cross a threshold together. With 10 non-members
  and ``alpha = 0.1`` one false positive is allowed (the ``<=`` rule; a strict ``<`` would allow
  none). ``alpha = 0`` is allowed: the TPR reached with no false positive at all. When
  ``n_nonmembers * alpha < 10`` the number is noisy and a warning is attached (Carlini et al.
  2022, "Membership Inference Attacks From First Principles", arXiv:2112.03570, argue for low-FPR
  reporting on log-log ROC curves).
* **TPR confidence interval:** each TPR comes with an exact Clopper-Pearson interval for a
  binomial proportion (``tp`` successes out of ``n_members``, :func:`clopper_pearson`). It is
  conditional on the threshold, which was itself chosen on the same data, so it describes the
  noise of counting members at that threshold, not of choosing it.
* **Best threshold:** the threshold maximizing balanced accuracy ``(TPR + TNR) / 2`` (Youden's J);
  F1 (members as the positive class), precision and recall are reported at that same threshold.
  It is chosen on the evaluation data itself (an oracle threshold, optimistic by construction).
  ``f1_max`` is the largest F1 over all thresholds; note its chance level is
  ``2 n1 / (2 n1 + n0)`` (predict everyone a member), 2/3 on balanced data, whereas F1 at the
  balanced-accuracy threshold sits near 1/2 at chance, the floor assumed by the MIA scaling law
  of Morris et al. 2025 ("How much do language models memorize?", arXiv:2505.24832).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from memlens.errors import UserError

DEFAULT_FPRS: tuple[float, ...] = (0.001, 0.01)
#: The low-FPR levels of shadow-model attacks (Concepts §8, docs/concepts.md): 0%, 0.01%, 0.1%
#: and 1%.
LOW_FPRS: tuple[float, ...] = (0.0, 0.0001, 0.001, 0.01)

RULE = (
    "TPR at FPR <= alpha: the largest TPR on the exact step ROC (predict member when score >= t) "
    "over thresholds whose false positives are at most floor(alpha * n_nonmembers); "
    "no interpolation, ties cross together."
)
SCORE_CONVENTION = "higher score = more likely a member; label 1 = member, 0 = non-member"

_MEMBER_STRINGS = {"1", "member", "members", "true", "yes", "in", "train"}
_NONMEMBER_STRINGS = {
    "0",
    "nonmember",
    "nonmembers",
    "non-member",
    "non_member",
    "false",
    "no",
    "out",
    "test",
}


def alpha_key(alpha: float) -> str:
    """The JSON key for an FPR level: ``0.001 -> "0.001"``."""
    return repr(float(alpha))


def parse_labels(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Map labels to ``1`` (member) / ``0`` (non-member).

    Accepts 0/1 integers or floats, booleans, and the strings ``member``/``nonmember`` (also
    ``1``/``0``, ``true``/``false``, ``train``/``test``, case-insensitive). Anything else is a
    :class:`UserError`.
    """
    arr = np.asarray(values, dtype=object).ravel()
    out = np.empty(arr.shape[0], dtype=np.int8)
    for i, v in enumerate(arr):
        if isinstance(v, (bool, np.bool_)):
            out[i] = int(bool(v))
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
            if v == 1:
                out[i] = 1
                continue
            if v == 0:
                out[i] = 0
                continue
        s = str(v).strip().lower()
        if s in ("1.0", "0.0"):  # a CSV cell read as text
            s = s[0]
        if s in _MEMBER_STRINGS:
            out[i] = 1
        elif s in _NONMEMBER_STRINGS:
            out[i] = 0
        else:
            raise UserError(
                f"label {v!r} in row {i} is not a membership label; use 1 (member) or 0 (non-member)."
            )
    return out


def _check(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape:
        raise UserError(
            f"got {scores.size} scores but {labels.size} labels; they must match one to one."
        )
    if not np.all((labels == 0) | (labels == 1)):
        raise UserError("labels must be 1 (member) or 0 (non-member).")
    labels = labels.astype(np.int8)
    if not np.all(np.isfinite(scores)):
        raise UserError(
            "scores contain NaN or infinite values; remove or report unscored samples first."
        )
    n1 = int(labels.sum())
    n0 = labels.size - n1
    if n1 == 0 or n0 == 0:
        raise UserError(
            f"need both members and non-members to evaluate an attack, got {n1} members and {n0} non-members."
        )
    return scores, labels


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """ROC-AUC ``= P[s(member) > s(non-member)] + 1/2 P[tie]`` (scikit-learn's ``roc_auc_score``)."""
    from sklearn.metrics import roc_auc_score

    s, y = _check(np.asarray(scores), np.asarray(labels))
    return float(roc_auc_score(y, s))


def _rank_auc(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC for each row of ``scores [B, n]`` / ``labels [B, n]`` (midranks for ties)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=-1)
    n1 = labels.sum(axis=-1)
    n0 = labels.shape[-1] - n1
    r1 = (ranks * labels).sum(axis=-1)
    return (r1 - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def auc_bootstrap_ci(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval for ROC-AUC.

    Members and non-members are resampled with replacement separately (the class sizes stay
    fixed, so every resample has both classes); each resample's AUC is the exact Mann-Whitney
    statistic with midranks for ties. Deterministic in ``seed``.
    """
    s, y = _check(np.asarray(scores), np.asarray(labels))
    if n_boot < 1:
        raise UserError(f"the number of bootstrap resamples must be at least 1, got {n_boot}.")
    if not 0.0 < level < 1.0:
        raise UserError(f"the confidence level must be between 0 and 1, got {level}.")
    rng = np.random.default_rng(seed)
    pos, neg = s[y == 1], s[y == 0]
    n1, n0 = pos.size, neg.size
    lab = np.concatenate([np.ones(n1), np.zeros(n0)])
    block = max(1, min(n_boot, 4_000_000 // (n1 + n0)))
    aucs = []
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        sp = pos[rng.integers(0, n1, size=(b, n1))]
        sn = neg[rng.integers(0, n0, size=(b, n0))]
        aucs.append(_rank_auc(np.concatenate([sp, sn], axis=1), np.broadcast_to(lab, (b, n1 + n0))))
    a = np.concatenate(aucs)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(a, [tail, 1.0 - tail])
    return float(lo), float(hi)


def step_roc(
    scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray
) -> dict[str, np.ndarray]:
    """The exact step ROC: one point per distinct threshold, plus ``+inf`` (predict nobody).

    Returns integer counts ``tp``/``fp`` and rates ``tpr``/``fpr`` at thresholds ``threshold``
    (descending), where a sample is predicted a member when ``score >= threshold``.
    """
    s, y = _check(np.asarray(scores), np.asarray(labels))
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order].astype(np.int64)
    last_of_run = np.r_[np.nonzero(np.diff(s_sorted))[0], s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = last_of_run + 1 - tp
    n1, n0 = int(y.sum()), int(y.size - y.sum())
    tp = np.r_[0, tp]
    fp = np.r_[0, fp]
    return {
        "threshold": np.r_[np.inf, s_sorted[last_of_run]],
        "tp": tp,
        "fp": fp,
        "tpr": tp / n1,
        "fpr": fp / n0,
        "n_members": np.int64(n1),
        "n_nonmembers": np.int64(n0),
    }


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) confidence interval for a binomial proportion ``k / n``.

    The interval is ``[B(a/2; k, n-k+1), B(1-a/2; k+1, n-k)]`` with ``B(q; α, β)`` the beta
    quantile and ``a = 1 - level``; the lower end is 0 when ``k = 0`` and the upper end is 1 when
    ``k = n`` (Clopper & Pearson 1934, Biometrika 26:404).

    Examples
    --------
    >>> lo, hi = clopper_pearson(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.3085)
    """
    from scipy.stats import beta

    if n < 1 or not 0 <= k <= n:
        raise UserError(f"a proportion needs 0 <= k <= n and n >= 1, got k={k}, n={n}.")
    if not 0.0 < level < 1.0:
        raise UserError(f"the confidence level must be between 0 and 1, got {level}.")
    a = 1.0 - level
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def max_false_positives(alpha: float, n_nonmembers: int) -> int:
    """``floor(alpha * n_nonmembers)``, robust to float rounding (0.29 * 100 allows 29)."""
    return int(math.floor(alpha * n_nonmembers + 1e-9))


def tpr_at_fpr(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    alpha: float,
    roc: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """TPR at FPR <= ``alpha`` on the exact step ROC (see the module docstring for the rule).

    Returns ``tpr``, the ``fpr`` actually reached, the ``threshold`` (``inf`` when no
    threshold admits a member without exceeding the false-positive budget) and ``tp``, the
    members flagged. ``alpha = 0`` allows no false positive.
    """
    _check_alpha(alpha)
    roc = step_roc(scores, labels) if roc is None else roc
    allowed = roc["fp"] <= max_false_positives(alpha, int(roc["n_nonmembers"]))
    i = int(np.argmax(np.where(allowed, roc["tp"], -1)))  # first (highest threshold) maximum
    return {
        "tpr": float(roc["tpr"][i]),
        "fpr": float(roc["fpr"][i]),
        "threshold": float(roc["threshold"][i]),
        "tp": int(roc["tp"][i]),
    }


def _check_alpha(alpha: float) -> None:
    if not 0.0 <= alpha < 1.0:
        raise UserError(f"FPR level must be at least 0 and below 1, got {alpha}.")


def best_threshold(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    roc: Mapping[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """Balanced accuracy, F1, precision and recall at the balanced-accuracy-maximizing threshold.

    Also returns ``f1_max`` (largest F1 over all thresholds) and its threshold. Predictions are
    ``score >= threshold``; on ties the highest such threshold is chosen.
    """
    roc = step_roc(scores, labels) if roc is None else roc
    tp, fp = roc["tp"].astype(np.float64), roc["fp"].astype(np.float64)
    n1, n0 = float(roc["n_members"]), float(roc["n_nonmembers"])
    bal = 0.5 * (tp / n1 + 1.0 - fp / n0)
    fn = n1 - tp
    f1 = 2 * tp / (2 * tp + fp + fn)  # denominator >= n1 > 0
    i = int(np.argmax(bal))
    j = int(np.argmax(f1))
    predicted = tp[i] + fp[i]
    return {
        "threshold": float(roc["threshold"][i]),
        "balanced_accuracy": float(bal[i]),
        "f1": float(f1[i]),
        "precision": float(tp[i] / predicted) if predicted > 0 else float("nan"),
        "recall": float(tp[i] / n1),
        "f1_max": float(f1[j]),
        "f1_max_threshold": float(roc["threshold"][j]),
    }


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _json_float(x: float) -> float | None:
    """``None`` for infinite/NaN values so result files stay strict JSON."""
    return float(x) if math.isfinite(x) else None


class AttackMetrics(BaseModel):
    """All metrics of one attack (what :func:`evaluate` returns; one entry of ``mia.json``'s
    ``attacks``). FPR-level dicts are keyed by :func:`alpha_key`; a threshold of ``None`` means
    ``+inf`` (predict nobody a member), so the file stays strict JSON."""

    model_config = ConfigDict(extra="allow")

    auc: float
    auc_ci: list[float]
    auc_ci_level: float
    tpr_at_fpr: dict[str, float]
    fpr_reached: dict[str, float]
    threshold_at_fpr: dict[str, float | None]
    tpr_ci: dict[str, list[float]] = {}
    threshold: float | None = None
    balanced_accuracy: float | None = None
    f1: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1_max: float | None = None
    f1_max_threshold: float | None = None
    n_members: int
    n_nonmembers: int
    warnings: list[str] = []


class AttackEvaluation(BaseModel):
    """Several attacks evaluated on the same samples (what :func:`evaluate_attacks` returns)."""

    model_config = ConfigDict(extra="allow")

    attacks: dict[str, AttackMetrics]
    n_samples: int
    n_evaluated: int
    nan_policy: str
    unscored: list[dict[str, Any]] = []
    fpr_levels: list[float]
    rule: str = RULE
    convention: str = SCORE_CONVENTION
    best_threshold_rule: str = ""
    warnings: list[str] = []


BEST_THRESHOLD_RULE = (
    "threshold maximizing balanced accuracy on the evaluated samples (oracle); "
    "f1, precision and recall at that threshold; f1_max is the largest F1 over all thresholds"
)


def evaluate(
    scores: Sequence[float] | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> AttackMetrics:
    """All metrics for one attack's scores (higher = member; label 1 = member).

    Returns :class:`AttackMetrics`: ``auc``, ``auc_ci`` (bootstrap, ``level``), ``tpr_at_fpr``
    keyed by ``alpha_key(alpha)`` with the reached FPR, the threshold and ``tpr_ci``
    (Clopper-Pearson, ``level``) alongside, the
    best-threshold numbers (``f1``, ``balanced_accuracy``, ...), ``n_members``, ``n_nonmembers``
    and ``warnings`` (e.g. when ``n_nonmembers * alpha < 10``).

    Examples
    --------
    >>> r = evaluate([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0], fprs=[0.5], n_boot=10)
    >>> r.auc, r.tpr_at_fpr["0.5"], r.balanced_accuracy
    (1.0, 1.0, 1.0)
    """
    s, y = _check(np.asarray(scores), np.asarray(labels))
    fprs = [float(a) for a in fprs]
    for a in fprs:
        _check_alpha(a)
    roc = step_roc(s, y)
    n1, n0 = int(roc["n_members"]), int(roc["n_nonmembers"])
    lo, hi = auc_bootstrap_ci(s, y, n_boot=n_boot, level=level, seed=seed)
    tprs, reached, thresholds, cis, warnings = {}, {}, {}, {}, []
    for a in fprs:
        r = tpr_at_fpr(s, y, a, roc=roc)
        k = alpha_key(a)
        tprs[k], reached[k], thresholds[k] = r["tpr"], r["fpr"], _json_float(r["threshold"])
        cis[k] = list(clopper_pearson(r["tp"], n1, level))
        if a > 0 and n0 * a < 10:
            warnings.append(
                f"TPR at FPR <= {a:g} is noisy: n_nonmembers * alpha = {n0 * a:g} < 10 "
                f"({_plural(max_false_positives(a, n0), 'false positive')} allowed)."
            )
    best = {k: _json_float(v) for k, v in best_threshold(s, y, roc=roc).items()}
    return AttackMetrics(
        auc=roc_auc(s, y),
        auc_ci=[lo, hi],
        auc_ci_level=level,
        tpr_at_fpr=tprs,
        fpr_reached=reached,
        threshold_at_fpr=thresholds,
        tpr_ci=cis,
        **best,
        n_members=n1,
        n_nonmembers=n0,
        warnings=warnings,
    )


def evaluate_attacks(
    scores: Mapping[str, Sequence[float] | np.ndarray],
    labels: Sequence[int] | np.ndarray,
    *,
    ids: Sequence[Any] | None = None,
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    nan_policy: str = "common",
) -> AttackEvaluation:
    """Evaluate several attacks on the same samples, with one NaN policy for all.

    A sample that some attack cannot score (NaN or infinite score, e.g. a text too short for
    Min-K%, or a missing value in a scores file) is never dropped from that attack alone:

    * ``nan_policy="common"`` (default): every attack is evaluated on the samples that *all*
      attacks scored; the excluded samples are listed under ``unscored`` with the attacks that
      could not score them.
    * ``nan_policy="error"``: any unscored sample is a :class:`UserError`.

    Returns :class:`AttackEvaluation` (``attacks``: name -> :class:`AttackMetrics`,
    ``n_samples``, ``n_evaluated``, ``unscored``, ...).
    """
    if nan_policy not in ("common", "error"):
        raise UserError(f"`nan_policy` must be 'common' or 'error', got {nan_policy!r}.")
    if not scores:
        raise UserError("no attack scores to evaluate.")
    y = np.asarray(labels).ravel()
    n = y.size
    cols = {name: np.asarray(v, dtype=np.float64).ravel() for name, v in scores.items()}
    for name, v in cols.items():
        if v.size != n:
            raise UserError(f"attack {name!r} has {v.size} scores for {n} samples.")
    ids = list(range(n)) if ids is None else list(ids)
    bad = {name: ~np.isfinite(v) for name, v in cols.items()}
    any_bad = np.zeros(n, dtype=bool)
    for b in bad.values():
        any_bad |= b
    unscored = [
        {
            "id": ids[i],
            "label": int(y[i]),
            "attacks": [name for name, b in bad.items() if b[i]],
        }
        for i in np.nonzero(any_bad)[0]
    ]
    if unscored and nan_policy == "error":
        first = unscored[0]
        raise UserError(
            f"{len(unscored)} samples could not be scored (first: id {first['id']} by "
            f"{', '.join(first['attacks'])}); use the 'common' NaN policy to evaluate on the rest."
        )
    keep = ~any_bad
    results = {
        name: evaluate(v[keep], y[keep], fprs=fprs, n_boot=n_boot, level=level, seed=seed)
        for name, v in cols.items()
    }
    warnings = []
    if unscored:
        warnings.append(
            f"{len(unscored)} of {n} samples could not be scored by every attack and were excluded "
            "from all attacks (listed under 'unscored')."
        )
    for name, v in cols.items():
        kept = v[keep]
        if kept.size and np.ptp(kept) == 0:
            warnings.append(
                f"attack {name!r} gave every sample the same score ({kept[0]:g}), so its AUC of 0.5 "
                "says nothing about membership: it cannot tell these samples apart (for example "
                "'lowercase' on texts that are already lowercase)."
            )
    return AttackEvaluation(
        attacks=results,
        n_samples=n,
        n_evaluated=int(keep.sum()),
        nan_policy=nan_policy,
        unscored=unscored,
        fpr_levels=[float(a) for a in fprs],
        rule=RULE,
        convention=SCORE_CONVENTION,
        best_threshold_rule=BEST_THRESHOLD_RULE,
        warnings=warnings,
    )
