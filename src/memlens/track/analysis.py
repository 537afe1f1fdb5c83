"""Analyses of a tracked run: first memorized step per example, forgetting events, memorization by
group and by TF-IDF rarity, and whether continued training increases memorization.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.track.examples import TrackSet
from memlens.track.observations import CRITERIA, Observations, resolve_criterion

GROUP_ORDER = ["repeated", "unique", "heldout"]


def _none(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _ordered_groups(groups: np.ndarray) -> list[str]:
    present = list(dict.fromkeys(groups.tolist()))
    return [g for g in GROUP_ORDER if g in present] + sorted(
        g for g in present if g not in GROUP_ORDER
    )


def memorized_matrix(
    obs: Observations, examples: TrackSet, eligible: np.ndarray, threshold: float, criterion: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(memorized [N, n_obs], scorable [N])`` under a criterion of :data:`CRITERIA`."""
    if criterion == "bits":
        ref = examples.reference_bits[:, None]
        scorable = np.isfinite(examples.reference_bits)
        with np.errstate(invalid="ignore"):
            mem = (
                np.isfinite(ref)
                & (obs.unintended_bits >= threshold * ref)
                & (obs.unintended_bits > 0)
            )
        return mem, scorable
    return obs.extracted & eligible[:, None], eligible.copy()


def first_true_step(flags: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per row, the step of the first True column (NaN when never True)."""
    any_ = flags.any(axis=1)
    idx = flags.argmax(axis=1)
    return np.where(any_, steps[idx].astype(np.float64) if len(steps) else np.nan, np.nan)


def forgetting_events(flags: np.ndarray) -> np.ndarray:
    """Per row, the number of True -> False transitions between consecutive observations."""
    if flags.shape[1] < 2:
        return np.zeros(flags.shape[0], dtype=np.int64)
    return (flags[:, :-1] & ~flags[:, 1:]).sum(axis=1)


def median_first_step_all(first: np.ndarray) -> float | None:
    """Median first-memorized step counting never-memorized examples as later than every step.

    ``None`` when at least half of the examples were never memorized.
    """
    if len(first) == 0:
        return None
    v = np.where(np.isnan(first), np.inf, first)
    m = float(np.median(v))
    return m if math.isfinite(m) else None


def analyze(
    obs: Observations,
    examples: TrackSet,
    eligible: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    criterion: str = "auto",
) -> dict[str, Any]:
    """Per-group memorization statistics, rarity split and the continued-training comparison.

    Parameters
    ----------
    obs: the tracker's observations (at least one).
    examples: the tracked examples.
    eligible: examples long enough for extraction (all, when omitted).
    threshold: the fraction of reference bits for the ``bits`` criterion (see :data:`CRITERIA`).
    criterion: ``auto``, ``bits`` or ``extraction``.

    Returns
    -------
    A JSON-ready dict: ``groups`` (per group ``n``, ``fraction_memorized`` at the last
    observation, ``fraction_ever_memorized``, ``median_first_memorized_step`` among the examples
    ever memorized, ``median_first_memorized_step_all`` counting never-memorized ones as later
    than every step, forgetting events, mean bits and extraction rate), ``comparisons``,
    ``continued_training``, ``by_rarity`` and per-step ``curves``.
    """
    if obs.n == 0:
        raise UserError(
            "the tracker recorded no observation; train for at least one scheduled step."
        )
    if not 0 < threshold <= 1:
        raise UserError(f"the memorization threshold must be in (0, 1], got {threshold}.")
    eligible = (
        np.ones(len(examples), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    )
    crit = resolve_criterion(criterion, examples)
    mem, scorable = memorized_matrix(obs, examples, eligible, threshold, crit)
    first = first_true_step(mem, obs.steps)
    forgets = forgetting_events(mem)
    steps = obs.steps
    final_step = int(steps[-1])
    mid = int(
        np.searchsorted(steps, final_step / 2.0)
    )  # first observation at or after half the steps
    groups = _ordered_groups(examples.groups)
    has_ref = examples.has_reference

    def mean(a: np.ndarray) -> float | None:
        return _none(np.nanmean(a)) if a.size and np.isfinite(a).any() else None

    out_groups: dict[str, Any] = {}
    curves: dict[str, Any] = {"steps": steps.tolist()}
    # no observation in [final / 2, final): nothing to compare the final one with
    compare = mid < obs.n - 1
    continued: dict[str, Any] = {
        "from_step": int(steps[mid]) if compare else None,
        "to_step": final_step,
        "groups": {},
    }
    for g in groups:
        sel = (examples.groups == g) & scorable
        n = int(sel.sum())
        m = mem[sel]
        f = first[sel]
        ever = ~np.isnan(f)
        elig = (examples.groups == g) & eligible
        out_groups[g] = {
            "n": n,
            "training_occurrences": _none(np.mean(examples.counts[examples.groups == g])),
            "fraction_memorized": _none(m[:, -1].mean()) if n else None,
            "fraction_ever_memorized": _none(ever.mean()) if n else None,
            "median_first_memorized_step": _none(np.median(f[ever])) if ever.any() else None,
            "median_first_memorized_step_all": median_first_step_all(f),
            "forgetting_events": int(forgets[sel].sum()),
            "examples_forgotten": int((ever & ~m[:, -1]).sum()) if n else 0,
            "mean_code_bits_final": mean(obs.code_bits[examples.groups == g, -1]),
            "mean_reference_bits": mean(examples.reference_bits[examples.groups == g])
            if has_ref
            else None,
            "mean_unintended_bits_final": mean(obs.unintended_bits[sel, -1]) if has_ref else None,
            "extraction_rate_final": _none(obs.extracted[elig, -1].mean()) if elig.any() else None,
            "n_extraction_eligible": int(elig.sum()),
        }
        curves[g] = {
            "fraction_memorized": [
                _none(x) for x in (m.mean(axis=0) if n else np.full(obs.n, np.nan))
            ],
            "mean_unintended_bits": [_none(x) for x in np.nanmean(obs.unintended_bits[sel], axis=0)]
            if has_ref and n
            else None,
            "mean_code_bits": [_none(x) for x in obs.code_bits[examples.groups == g].mean(axis=0)],
            "extraction_rate": [_none(x) for x in obs.extracted[elig].mean(axis=0)]
            if elig.any()
            else None,
        }
        if not compare:
            continue
        cg = {
            "fraction_memorized": [_none(m[:, mid].mean()), _none(m[:, -1].mean())] if n else None,
        }
        if has_ref and n:
            cg["mean_unintended_bits"] = [
                mean(obs.unintended_bits[sel, mid]),
                mean(obs.unintended_bits[sel, -1]),
            ]
        continued["groups"][g] = cg

    # Does continued training increase memorization of the training examples?
    train_sel = (examples.counts > 0) & scorable
    if train_sel.any() and compare:
        a, b = mem[train_sel, mid].mean(), mem[train_sel, -1].mean()
        continued["training_examples"] = {"fraction_memorized": [float(a), float(b)]}
        verdict = b > a
        if has_ref:
            ua = float(np.nanmean(obs.unintended_bits[train_sel, mid]))
            ub = float(np.nanmean(obs.unintended_bits[train_sel, -1]))
            continued["training_examples"]["mean_unintended_bits"] = [ua, ub]
            verdict = ub > ua
        continued["increases"] = bool(verdict)
    else:
        continued["increases"] = None
    continued["definition"] = (
        "compares the first observation at or after half of the final step with the final one; "
        "'increases' uses mean unintended bits of training examples when a reference exists, "
        "else the fraction memorized"
    )

    comparisons: dict[str, Any] = {}
    if "repeated" in out_groups and "unique" in out_groups:
        r, u = out_groups["repeated"], out_groups["unique"]
        inf = float("inf")
        r_step = r["median_first_memorized_step_all"]
        u_step = u["median_first_memorized_step_all"]
        comparisons["repeated_vs_unique"] = {
            "memorized_more": (r["fraction_memorized"] or 0.0) > (u["fraction_memorized"] or 0.0),
            "memorized_earlier": (inf if r_step is None else r_step)
            < (inf if u_step is None else u_step),
        }
    if "heldout" in out_groups:
        comparisons["heldout_never_memorized"] = (
            out_groups["heldout"]["fraction_ever_memorized"] == 0.0
        )

    return {
        "criterion": {
            "name": crit,
            "threshold": threshold if crit == "bits" else None,
            "definition": CRITERIA[crit],
        },
        "reference": examples.reference,
        "first_token_bits": examples.first_token_bits,
        "first_token": examples.first_token,
        "final_step": final_step,
        "n_observations": obs.n,
        "groups": out_groups,
        "comparisons": comparisons,
        "continued_training": continued,
        "by_rarity": _by_rarity(examples, mem, first, scorable, obs, has_ref),
        "curves": curves,
    }


def _by_rarity(
    examples: TrackSet,
    mem: np.ndarray,
    first: np.ndarray,
    scorable: np.ndarray,
    obs: Observations,
    has_ref: bool,
) -> dict[str, Any]:
    """Within each training group: rare (TF-IDF at or above the median) versus common examples."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    for g in _ordered_groups(examples.groups):
        sel = (
            (examples.groups == g) & scorable & (examples.counts > 0) & np.isfinite(examples.rarity)
        )
        if sel.sum() < 4:
            continue
        r = examples.rarity[sel]
        cut = float(np.median(r))
        rare = r >= cut
        entry: dict[str, Any] = {"median_tfidf": cut}
        for name, part in (("rare", rare), ("common", ~rare)):
            f = first[sel][part]
            entry[name] = {
                "n": int(part.sum()),
                "fraction_memorized": _none(mem[sel][part, -1].mean()) if part.any() else None,
                "median_first_memorized_step_all": median_first_step_all(f),
            }
            if has_ref:
                entry[name]["mean_unintended_bits_final"] = _none(
                    np.nanmean(obs.unintended_bits[sel][part, -1])
                )
        if has_ref:
            y = obs.unintended_bits[sel, -1]
            rho = spearmanr(r, y).statistic if np.ptp(y) > 0 and np.ptp(r) > 0 else float("nan")
            entry["spearman_tfidf_vs_unintended_bits"] = _none(rho)
        out[g] = entry
    return out


def reanalyze(
    directory: str | os.PathLike[str], *, threshold: float = 0.5, criterion: str = "auto"
) -> dict[str, Any]:
    """Re-read a finished (or interrupted) tracked run with another threshold or criterion.

    The observations are stored continuous (code length, unintended bits, extraction), so the
    memorized/not-memorized line can be drawn again without scoring anything.

    Parameters
    ----------
    directory: a ``memlens track`` run directory (its ``track/`` folder is read) or the
        directory a :class:`~memlens.track.Tracker` wrote to.
    threshold: the fraction of reference bits for the ``bits`` criterion (see :data:`CRITERIA`).
    criterion: ``auto``, ``bits`` or ``extraction``.

    Returns
    -------
    The dict of :func:`analyze` (``groups``, ``comparisons``, ``continued_training``,
    ``by_rarity``, ``curves``), equal to the run's own analysis at the threshold it used.
    """
    import json

    import pandas as pd

    from memlens.scoring import extraction_eligible
    from memlens.track.observations import load_observations

    root = Path(directory)
    d = root / "track" if (root / "track" / "tracker.json").is_file() else root
    try:
        meta = json.loads((d / "tracker.json").read_text())
        table = pd.read_parquet(d / "examples.parquet")
    except FileNotFoundError:
        raise UserError(
            f"{root} holds no tracked run (no tracker.json and examples.parquet there or in "
            "its track/ folder)."
        ) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the tracked run in {d}: {exc}.") from None
    n_lead = int(meta["n_lead"])
    lengths = table["n_tokens"].to_numpy(dtype=np.int64) + n_lead
    # analyze reads groups, counts, rarity and reference bits; the token ids are not stored
    examples = TrackSet(
        tokens=[np.zeros(n, dtype=np.int64) for n in lengths],
        groups=table["group"].to_numpy(),
        reference_bits=table["reference_bits"].to_numpy(dtype=np.float64),
        first_token_bits=float(meta["first_token_bits"]),
        n_lead=n_lead,
        first_token=meta.get("first_token", "model"),
        counts=table["count"].to_numpy(dtype=np.int64),
        rarity=table["rarity_tfidf"].to_numpy(dtype=np.float64),
        reference=str(meta.get("reference", "none")),
    )
    eligible = extraction_eligible(
        lengths, prefix=int(meta["prefix"]), suffix=int(meta["suffix"]), n_lead=n_lead
    )
    obs = load_observations(d, len(examples))
    return analyze(obs, examples, eligible, threshold=threshold, criterion=criterion)
