"""Fitting alpha (bits per parameter) and assembling the sweep's summary ``capacity.json``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memlens.capacity.config import PUBLISHED_ALPHA, CapacityConfig


def fit_alpha(params: np.ndarray, capacity_bits: np.ndarray) -> dict[str, float]:
    """α as the least-squares slope of capacity on parameters through the origin.

    ``alpha = sum(P_i C_i) / sum(P_i^2)``; also the mean of the per-model ratios ``C_i / P_i`` and
    the slope's standard error. Units: bits per parameter.
    """
    P = np.asarray(params, dtype=np.float64)
    C = np.asarray(capacity_bits, dtype=np.float64)
    alpha = float((P * C).sum() / (P * P).sum())
    ratios = C / P
    n = len(P)
    if n > 1:
        resid = C - alpha * P
        se = float(math.sqrt((resid**2).sum() / (n - 1) / (P * P).sum()))
    else:
        se = float("nan")
    return {"alpha": alpha, "alpha_se": se, "mean_ratio": float(ratios.mean())}


def summarize(
    config: CapacityConfig, models: list[dict[str, Any]], wall_seconds: float
) -> dict[str, Any]:
    """Fit α over the finished shapes and assemble ``capacity.json``."""
    params = np.array([m["params"] for m in models], dtype=float)
    caps = np.array([m["capacity_bits"] for m in models], dtype=float)
    fit = fit_alpha(params, caps)
    alpha = fit["alpha"]
    out_models = []
    for m in models:
        runs = []
        for r in m["runs"]:
            pred = min(alpha * m["params"], r["dataset_bits"])
            runs.append({**{k: v for k, v in r.items() if k != "curve"}, "predicted_bits": pred})
        out_models.append(
            {**{k: v for k, v in m.items() if k not in ("runs", "seconds")}, "runs": runs}
        )
    return {
        "alpha_bits_per_param": alpha,
        "alpha_method": "least-squares slope of capacity on params through the origin",
        "alpha_se": fit["alpha_se"],
        "alpha_mean_per_model": fit["mean_ratio"],
        "published_alpha": {"headline": PUBLISHED_ALPHA, "fp32_slope": 3.88, "bf16_slope": 3.60,
                            "fp32_mean_per_model": 3.83},
        "vocab_size": config.vocab_size,
        "seq_len": config.seq_len,
        "bits_per_sequence": config.bits_per_sequence(),
        "first_token": "coded uniformly at log2(V) bits; never counted as memorized",
        "precision": config.precision,
        "preset": config.preset,
        "seed": config.seed,
        "all_saturated": all(m["saturated"] for m in models),
        "wall_seconds": wall_seconds,
        "models": out_models,
    }  # fmt: skip
