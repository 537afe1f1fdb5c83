"""What ``memlens dp-audit`` writes besides ``dp_audit.json``: tables and the plot.

* :func:`arms_table` (``arms.csv``): one row per arm, read from the typed summary;
* :func:`canaries_table` (``canaries.parquet``): one row per canary, its per-arm code length,
  loss, score, guess and exposures;
* :func:`plot` (``dp_audit.png``): ε̂ against the accountant's ε, with the ceilings.

Units: ε in nats; code lengths, losses and exposures in bits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memlens.privacy.arms import ArmResult
from memlens.privacy.canaries import Canaries
from memlens.privacy.summary import DPAuditSummary

#: The files of a dp-audit run directory besides ``manifest.json`` and ``models/``.
OUTPUTS = ("dp_audit.json", "arms.csv", "canaries.parquet", "dp_audit.png")


def arms_table(summary: DPAuditSummary) -> Any:
    """One row per arm: the accountant's ε beside ε̂, guesses, ceiling and exposure margins."""
    import pandas as pd

    rows = []
    for a in summary.arms.values():
        ex = a.exposure or {}
        rows.append(
            {
                "arm": a.name,
                "epsilon_target": a.epsilon_target,
                "accountant_epsilon": a.accountant_epsilon,
                "noise_multiplier": a.train.get("noise_multiplier"),
                "epsilon_lower_bound": a.audit.epsilon_lower_bound,
                "guesses": a.audit.guesses,
                "correct": a.audit.correct,
                "ceiling": a.audit.ceiling,
                "ceiling_at_guesses": a.audit.ceiling_at_guesses,
                "rank_exposure_inserted": ex.get("rank_inserted_mean"),
                "rank_exposure_not_inserted": ex.get("rank_not_inserted_mean"),
                "rank_exposure_margin": ex.get("rank_margin"),
                "extrapolated_exposure_inserted": ex.get("extrapolated_inserted_mean"),
                "extrapolated_exposure_not_inserted": ex.get("extrapolated_not_inserted_mean"),
                "extrapolated_exposure_margin": ex.get("extrapolated_margin"),
                "train_seconds": a.train.get("seconds"),
                "steps": a.train.get("steps"),
                "lora_r": (a.train.get("lora") or {}).get("r"),
                "trainable_parameters": a.train.get("trainable_parameters"),
                "reused_weights": a.reused_weights,
            }
        )
    return pd.DataFrame(rows)


def canaries_table(canaries: Canaries, arms: list[ArmResult]) -> Any:
    """One row per canary: inclusion, and per arm its code length, loss, score, guess and exposures."""
    import pandas as pd

    from memlens.privacy.bound import guess

    c = canaries
    df = pd.DataFrame({"canary": np.arange(c.m), "included": c.included})
    if c.texts is not None:
        df["text"] = c.texts
    else:
        df["tokens"] = [" ".join(map(str, t.tolist())) for t in c.tokens]
    for a in arms:
        p = a.name
        df[f"{p}:bits"] = a.canary_bits
        df[f"{p}:loss_bits_per_token"] = a.canary_loss
        df[f"{p}:score"] = a.scores
        if a.audit.selection != "split":
            df[f"{p}:guess"] = guess(a.scores, a.audit.k_in, a.audit.k_out)
        if a.rank_exposure is not None:
            df[f"{p}:rank_exposure"] = a.rank_exposure
            df[f"{p}:extrapolated_exposure"] = a.extrapolated_exposure
    return df


def plot(summary: DPAuditSummary) -> Any:
    """ε̂ against the accountant's ε (nats): DP arms on a log axis with the soundness diagonal
    ε̂ = ε, the arm without DP in a panel of its own at ε = ∞, and the ceilings."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    arms = list(summary.arms.values())
    dp = [a for a in arms if a.accountant_epsilon is not None]
    nodp = [a for a in arms if a.accountant_epsilon is None]
    audit0 = arms[0].audit
    ceil, cg = audit0.ceiling, audit0.ceiling_at_guesses
    top = max([ceil] + [a.audit.epsilon_lower_bound for a in arms]) * 1.3 + 0.1
    panels = [p for p, arms in (("dp", dp), ("nodp", nodp)) if arms]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(6.4 if len(panels) == 2 else 5.0, 4.8),
        sharey=True,
        gridspec_kw={"width_ratios": [4, 1] if len(panels) == 2 else [1]},
        squeeze=False,
    )
    axes = axes[0]
    for ax, panel in zip(axes, panels, strict=True):
        ax.axhline(
            ceil,
            ls="--",
            color="k",
            lw=1,
            label=f"ceiling, all {audit0.canaries} canaries ({ceil:.2f})",
        )
        if abs(cg - ceil) > 1e-6:
            ax.axhline(
                cg,
                ls="-.",
                color="k",
                lw=0.8,
                alpha=0.6,
                label=f"ceiling at {audit0.guesses} guesses ({cg:.2f})",
            )
        if panel == "dp":
            xs = np.array([a.accountant_epsilon for a in dp])
            lo, hi = xs.min() / 3, xs.max() * 3
            grid = np.geomspace(lo, hi, 50)
            ax.plot(
                grid,
                np.minimum(grid, top * 2),
                ":",
                color="gray",
                label="ε̂ = accountant's ε (soundness limit)",
            )
            ax.plot(
                xs,
                [a.audit.epsilon_lower_bound for a in dp],
                "o",
                color="C0",
                ms=8,
                label="DP-SGD arms: ε̂",
            )
            for a in dp:
                ax.annotate(
                    f"{a.audit.epsilon_lower_bound:.2f}",
                    (a.accountant_epsilon, a.audit.epsilon_lower_bound),
                    textcoords="offset points",
                    xytext=(6, 6),
                    fontsize=8,
                )
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(xs)
            ax.set_xlabel(f"accountant's ε ({dp[0].train.get('accountant', '').upper()}, nats)")
        else:
            for a in nodp:
                ax.plot([0], [a.audit.epsilon_lower_bound], "s", color="C3", ms=8, label="no DP: ε̂")
                ax.annotate(
                    f"{a.audit.epsilon_lower_bound:.2f}",
                    (0, a.audit.epsilon_lower_bound),
                    textcoords="offset points",
                    xytext=(-8, 8),
                    fontsize=8,
                )
            ax.set_xlim(-1, 1)
            ax.set_xticks([0], ["∞"])
            ax.set_xlabel("no DP")
        ax.set_ylim(0, top)
    axes[0].set_ylabel("ε̂, one-run 95% lower bound (nats)")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(
        f"One-run audit (Steinke et al. 2023): δ = {summary.delta:g}, "
        f"{audit0.selection} k±, {summary.confidence * 100:g}% confidence",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def write_outputs(
    run_dir: Any, summary: DPAuditSummary, canaries: Canaries, arms: list[ArmResult]
) -> list[str]:
    """Write :data:`OUTPUTS` into ``run_dir`` (a :class:`memlens.store.RunDir`)."""
    run_dir.write_json(summary.file, summary.to_json())
    run_dir.write_table("arms.csv", arms_table(summary))
    run_dir.write_table("canaries.parquet", canaries_table(canaries, arms))
    run_dir.save_figure("dp_audit.png", plot(summary))
    return list(OUTPUTS)
