"""What a capacity run writes: ``capacity.json``, ``runs.csv``, ``curves.csv`` and two plots."""

from __future__ import annotations

from typing import Any

import numpy as np

from memlens.capacity.summary import CapacitySummary


def write_outputs(rd: Any, summary: CapacitySummary, cells: list[dict[str, Any]]) -> None:
    """Write capacity.json, runs.csv, curves.csv (from the cells' curves) and the two plots."""
    import pandas as pd

    rows, curve_rows = [], []
    for m, cell in zip(summary.models, cells, strict=True):
        shape = {"n_layer": m.n_layer, "d_model": m.d_model, "params": m.params}
        for r in m.runs:
            rows.append(
                {**shape, **r.model_dump(include={"n_sequences", "dataset_bits",
                 "memorizable_bits", "memorized_bits", "predicted_bits", "steps", "saturated",
                 "stopped_by", "seconds"})}
            )  # fmt: skip
        for r in cell["runs"]:
            c = r["curve"]
            for j in range(len(c["step"])):
                curve_rows.append(
                    {
                        **shape,
                        "n_sequences": r["n_sequences"],
                        "step": c["step"][j],
                        "seconds": c["seconds"][j],
                        "memorized_bits": c["memorized_bits"][j],
                        "nll_bits_per_token": c["nll_bits_per_token"][j],
                    }
                )
    rd.write_table("runs.csv", pd.DataFrame(rows))
    rd.write_table("curves.csv", pd.DataFrame(curve_rows))
    rd.write_json(summary.file, summary.to_json())
    plot_capacity(rd, summary)


def plot_capacity(rd: Any, summary: CapacitySummary) -> None:
    """Memorized vs dataset bits per shape (with plateau and H(X) diagonal); capacity vs params."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = summary.models
    alpha = summary.alpha_bits_per_param
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, max(1, len(models))))
    xmax = max(r.dataset_bits for m in models for r in m.runs) * 1.1
    ax.plot([0, xmax], [0, xmax], "k:", lw=1, label="H(X) (all data memorized)")
    for m, col in zip(models, colors, strict=True):
        xs = [r.dataset_bits for r in m.runs]
        ys = [r.memorized_bits for r in m.runs]
        ax.plot(xs, ys, "o-", color=col, label=f"L={m.n_layer} d={m.d_model} ({m.params:,})")
        ax.axhline(m.capacity_bits, color=col, lw=0.8, ls="--")
        for x, y, r in zip(xs, ys, m.runs, strict=True):
            if not r.saturated:
                ax.plot([x], [y], "x", color="red", ms=8)
    ax.set_xlabel("dataset bits H(X)")
    ax.set_ylabel("memorized bits")
    ax.set_title(f"Memorization plateaus at capacity (red x: not saturated); α = {alpha:.2f}")
    ax.legend(fontsize=7)
    rd.save_figure("memorized_vs_dataset.png", fig)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    P = np.array([m.params for m in models], dtype=float)
    C = np.array([m.capacity_bits for m in models], dtype=float)
    ax.scatter(P, C, c="C0", zorder=3, label="measured capacity")
    xs = np.linspace(0, P.max() * 1.1, 50)
    ax.plot(xs, alpha * xs, "C0-", label=f"fit: {alpha:.2f} bits/param")
    slope = summary.published_alpha["slope"]
    ax.plot(
        xs,
        slope * xs,
        "k--",
        lw=1,
        label=f"published {summary.precision} slope: {slope} bits/param",
    )
    ax.set_xlabel("parameters")
    ax.set_ylabel("capacity (bits)")
    ax.set_title("Capacity vs parameters")
    ax.legend(fontsize=8)
    rd.save_figure("capacity_vs_params.png", fig)
