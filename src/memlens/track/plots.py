"""Plots of a tracked run (the per-example heatmap and the per-group curves) and of grokking (the
accuracy and bits curves)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memlens.track.analysis import _ordered_groups, first_true_step, memorized_matrix
from memlens.track.examples import TrackSet
from memlens.track.observations import Observations


def plot_heatmap(
    obs: Observations, examples: TrackSet, analysis: dict[str, Any], eligible: np.ndarray
) -> Any:
    """Example x step heatmap: the fraction of reference bits saved (or suffix top-1 accuracy).

    Rows are grouped (repeated, unique, heldout, ...) and sorted by first memorized step.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    crit = analysis["criterion"]["name"]
    if examples.has_reference:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = obs.unintended_bits / examples.reference_bits[:, None]
        label = "unintended bits / reference bits"
    else:
        values = obs.suffix_top1
        label = "suffix tokens that are the greedy choice (fraction)"
    mem, _ = memorized_matrix(
        obs, examples, eligible, analysis["criterion"]["threshold"] or 0.5, crit
    )
    first = first_true_step(mem, obs.steps)
    rows, bounds, names = [], [], []
    for g in _ordered_groups(examples.groups):
        idx = np.flatnonzero(examples.groups == g)
        key = np.where(np.isnan(first[idx]), np.inf, first[idx])
        order = np.lexsort((-np.nan_to_num(values[idx, -1]), key))
        rows.extend(idx[order].tolist())
        bounds.append(len(rows))
        names.append(g)
    fig, ax = plt.subplots(figsize=(9, 6))
    im = ax.imshow(
        values[rows], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1
    )
    start = 0
    for b, g in zip(bounds, names, strict=True):
        if b < len(rows):
            ax.axhline(b - 0.5, color="white", lw=1.5)
        y = 1 - (start + b) / 2 / len(rows)  # imshow puts row 0 at the top
        ax.text(-0.01, y, g, transform=ax.transAxes, ha="right", va="center")
        start = b
    ax.set_yticks([])
    ticks = np.unique(np.linspace(0, obs.n - 1, min(obs.n, 10)).round().astype(int))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(int(obs.steps[t])) for t in ticks], rotation=45)
    ax.set_xlabel("training step (observations, log-spaced)")
    ax.set_title("per-example memorization during training")
    fig.colorbar(im, ax=ax, label=label)
    return fig


def plot_group_curves(analysis: dict[str, Any]) -> Any:
    """Fraction memorized, mean unintended bits and extraction rate per group against step."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curves = analysis["curves"]
    steps = np.array(curves["steps"], dtype=float)
    groups = [g for g in curves if g != "steps"]
    panels = [("fraction_memorized", "fraction memorized")]
    if any(curves[g]["mean_unintended_bits"] is not None for g in groups):
        panels.append(("mean_unintended_bits", "mean unintended bits per example"))
    panels.append(("extraction_rate", "greedy extraction rate"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8))
    for ax, (key, label) in zip(np.atleast_1d(axes), panels, strict=True):
        for g in groups:
            y = curves[g][key]
            if y is None:
                continue
            ax.plot(steps, np.array([np.nan if v is None else v for v in y]), marker=".", label=g)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend()
    crit = analysis["criterion"]
    thr = f", threshold {crit['threshold']}" if crit["threshold"] is not None else ""
    fig.suptitle(f"memorization by group (criterion: {crit['name']}{thr})")
    fig.tight_layout()
    return fig


# -- grokking ---------------------------------------------------------------------------------------


def plot_grok_accuracy(curve: Any, summary: dict[str, Any]) -> Any:
    """Train and test accuracy against step (log axis), with the 99% steps marked."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    s = curve["step"].to_numpy()
    ax.plot(s, curve["train_acc"], label="train")
    ax.plot(s, curve["test_acc"], label="test")
    for key, style in (("step_train_acc_99", ":"), ("step_test_acc_99", "--")):
        if summary.get(key) is not None:
            ax.axvline(summary[key], color="grey", ls=style, lw=1, label=f"{key} = {summary[key]}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(
        f"grokking: {summary['task']}, {summary['train_fraction']:.0%} of pairs for training"
    )
    ax.legend(loc="center left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_grok_bits(curve: Any, summary: dict[str, Any]) -> Any:
    """Answer code length (bits) on train and test, the memorization gap, and the weight norm."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    s = curve["step"].to_numpy()
    ax.plot(s, curve["train_bits"], label="train bits/answer")
    ax.plot(s, curve["test_bits"], label="test bits/answer")
    ax.plot(s, curve["gap_bits"], label="memorization gap (test - train)")
    ax.axhline(math.log2(summary["p"]), color="grey", ls=":", lw=1, label="uniform: log2 p")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(left=0)
    ax.set_xlabel("step")
    ax.set_ylabel("bits")
    ax.legend()
    ax.grid(alpha=0.3)
    ax2.plot(s, curve["weight_norm"], color="C3")
    ax2.set_xscale("symlog", linthresh=10)
    ax2.set_xlim(left=0)
    ax2.set_xlabel("step")
    ax2.set_ylabel("parameter L2 norm")
    ax2.grid(alpha=0.3)
    fig.suptitle("memorization then generalization")
    fig.tight_layout()
    return fig
