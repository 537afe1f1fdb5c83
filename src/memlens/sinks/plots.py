"""Plots of a MemSinks run: the arms' losses and gaps, the training curves, localization."""

from __future__ import annotations

from typing import Any


def plot_sinks(run_dir: Any, summary: dict, cells: dict, loc: dict) -> None:
    """Write ``sinks_summary.png``, ``sinks_curves.png`` and ``sinks_localization.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = ["standard", "dedup", "memsinks", "memsinks_sinks_scaled", "memsinks_sinks_dropped"]
    labels = [
        "standard",
        "dedup",
        "MemSinks\nown mask",
        "MemSinks\nsinks x p_mem",
        "MemSinks\nsinks dropped",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4))
    colors = ["#555555", "#999999", "#1f77b4", "#6baed6", "#d62728"]
    for ax, key, title in zip(
        axes,
        ["val_loss", "mem_gap"],
        ["validation loss", "memorization gap (val - repeated)"],
        strict=True,
    ):
        vals = [summary[n][key] for n in names]
        ax.bar(range(len(names)), vals, color=colors)
        ax.set_xticks(range(len(names)), labels, fontsize=7.5)
        ax.set_ylabel("bits per token")
        ax.set_title(title)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        if key == "val_loss":
            lo = min(vals)
            ax.set_ylim(lo * 0.95, max(vals) * 1.02)
            floor = summary["data"].get("heldout_source_floor_bits_per_token")
            if floor is not None:
                ax.axhline(floor, ls=":", color="k", lw=1)
                ax.text(
                    len(names) - 0.5, floor, "source entropy", fontsize=7, va="bottom", ha="right"
                )
    c = summary["claim"]
    closed = c.get("gap_closed_fraction")
    closes = (
        f"sinks dropped close {closed:.0%} of the gap"
        if closed is not None
        else "standard training has no memorization gap"
    )
    fig.suptitle(
        f"MemSinks ({summary['preset']}): {closes}, "
        f"val loss x{c['val_loss_ratio_dropped_to_standard']:.3f} of standard",
        fontsize=10,
    )
    run_dir.save_figure("sinks_summary.png", fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    styles = {
        "standard": ("#555555", "all"),
        "dedup": ("#999999", "all"),
        "memsinks": ("#1f77b4", "own"),
    }
    for ax, key, title in zip(
        axes,
        ["val_loss", "repeated_loss"],
        ["held-out sequences", "repeated sequences"],
        strict=True,
    ):
        for arm, (color, mode) in styles.items():
            pts = cells[arm]["curve"]
            steps = [p["step"] for p in pts]
            ax.plot(steps, [p[mode][key] for p in pts], color=color, label=f"{arm} ({mode})")
            if arm == "memsinks":
                ax.plot(
                    steps,
                    [p["drop"][key] for p in pts],
                    color="#d62728",
                    label="memsinks (sinks dropped)",
                )
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("loss, bits per token")
        later = [
            p[m][key]
            for arm in styles
            for p in cells[arm]["curve"]
            if p["step"] > 0
            for m in ("all", "own", "drop")
            if m in p
        ]
        if later:  # the untrained model (step 0, about log2 V) would squash the curves
            ax.set_ylim(0, max(later) * 1.1)
    floor = summary["data"].get("heldout_source_floor_bits_per_token")
    if floor is not None:
        axes[0].axhline(floor, ls=":", color="k", lw=1, label="true source")
    axes[0].legend(fontsize=8)
    run_dir.save_figure("sinks_curves.png", fig)

    if "standard" in loc:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for arm, color in (("standard", "#555555"), ("memsinks", "#1f77b4")):
            ks = [r["k"] for r in loc[arm]["ks"]]
            axes[0].plot(
                ks,
                [np.nan if r["top_removed"] is None else r["top_removed"] for r in loc[arm]["ks"]],
                "o-",
                color=color,
                label=f"{arm}: top-k",
            )
            axes[0].plot(
                ks,
                [
                    np.nan if r["random_removed"] is None else r["random_removed"]
                    for r in loc[arm]["ks"]
                ],
                "o--",
                color=color,
                alpha=0.6,
                label=f"{arm}: random k",
            )
            axes[1].plot(
                ks,
                [r["top_collateral"] for r in loc[arm]["ks"]],
                "o-",
                color=color,
                label=f"{arm}: top-k",
            )
            axes[1].plot(
                ks,
                [r["random_collateral"] for r in loc[arm]["ks"]],
                "o--",
                color=color,
                alpha=0.6,
                label=f"{arm}: random k",
            )
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("ablated MLP units (k, all layers)")
        axes[0].set_ylabel("fraction of memorization gap removed")
        axes[1].set_ylabel("held-out loss increase, bits/token")
        axes[0].set_title("memorization removed by ablation")
        axes[1].set_title("collateral damage")
        axes[0].legend(fontsize=8)
        run_dir.save_figure("sinks_localization.png", fig)
