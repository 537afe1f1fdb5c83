"""The audit's figures (:func:`plot_audit`): unintended bits, train vs held-out, and vs rarity."""

from __future__ import annotations

from typing import Any

import numpy as np


def plot_audit(samples: Any) -> dict[str, Any]:
    """Figures: histogram of unintended bits (train vs held-out) and unintended bits vs TF-IDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = {}
    tr = samples[samples.split == "train"]
    ho = samples[samples.split == "heldout"]
    fig, ax = plt.subplots(figsize=(6, 4))
    hi = float(max(samples["unintended_bits"].max(), 1.0))
    bins = np.linspace(0.0, hi, 31)
    for part, label in ((tr, "train"), (ho, "held-out")):
        if len(part):  # fractions, so splits of different sizes compare; log scale shows the tail
            w = np.full(len(part), 1.0 / len(part))
            ax.hist(
                part["unintended_bits"],
                bins=bins,
                weights=w,
                alpha=0.6,
                label=f"{label} (n={len(part)})",
            )
    ax.set_yscale("log")
    ax.set_xlabel("unintended memorization per sample [bits]")
    ax.set_ylabel("fraction of samples")
    ax.set_title("max(0, NLL_ref - NLL_target)")
    ax.legend()
    figs["unintended_hist.png"] = fig

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(ho["tfidf"], ho["unintended_bits"], s=10, alpha=0.5, color="0.6", label="held-out")
    ax.scatter(tr["tfidf"], tr["unintended_bits"], s=12, alpha=0.8, label="train")
    ax.set_xlabel("TF-IDF rarity (target tokens)")
    ax.set_ylabel("unintended memorization [bits]")
    ax.legend()
    figs["unintended_vs_tfidf.png"] = fig
    return figs
