"""The membership-inference plots: log-log step ROC curves (:func:`plot_roc`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from memlens.mia.summary import MIAMetricsSummary


def plot_roc(
    scores: dict[str, np.ndarray],
    labels: np.ndarray,
    rd: Any,
    summary: MIAMetricsSummary,
    each: bool = True,
) -> None:
    """Log-log step ROC curves: ``roc.png`` (all attacks) and ``roc_<attack>.png`` (one each,
    unless ``each=False``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from memlens.mia.metrics import step_roc

    keep = np.ones(labels.size, dtype=bool)
    for v in scores.values():
        keep &= np.isfinite(v)
    y = labels[keep]
    n0 = int((y == 0).sum())
    floor = 0.5 / max(n0, 1)
    curves = {name: step_roc(v[keep], y) for name, v in scores.items()}

    def draw(ax: Any, names: list[str]) -> None:
        for name in names:
            r = curves[name]
            auc = summary.attacks[name].auc
            ax.step(
                np.maximum(r["fpr"], floor),
                np.maximum(r["tpr"], floor),
                where="post",
                label=f"{name} (AUC {auc:.3f})",
            )
        grid = np.logspace(np.log10(floor), 0, 50)
        ax.plot(grid, grid, ls="--", c="gray", lw=0.8, label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1.05)
        ax.set_xlabel("false positive rate (non-members flagged)")
        ax.set_ylabel("true positive rate (members flagged)")
        ax.legend(fontsize=7, loc="lower right")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    draw(ax, list(curves))
    ax.set_title(f"MIA ROC, log-log ({int(y.sum())} members, {n0} non-members)")
    rd.save_figure("roc.png", fig)
    for name in curves if each else []:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        draw(ax, [name])
        ax.set_title(f"{name}: log-log ROC")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        rd.save_figure(f"roc_{safe}.png", fig)
