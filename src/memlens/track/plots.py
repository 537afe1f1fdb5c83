"""Plots of a tracked run: the per-example heatmap and the per-group curves."""

from __future__ import annotations

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
