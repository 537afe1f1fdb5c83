"""Fitting alpha (bits per parameter) and assembling the sweep's summary ``capacity.json``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memlens.capacity.config import CapacityConfig
from memlens.capacity.summary import CapacityModel, CapacityRun, CapacitySummary
from memlens.errors import UserError
from memlens.units import PUBLISHED_ALPHA, published_alpha


def fit_alpha(params: np.ndarray, capacity_bits: np.ndarray) -> dict[str, float | None]:
    """α as the least-squares slope of capacity on parameters through the origin.

    ``alpha = sum(P_i C_i) / sum(P_i^2)``; also the mean of the per-model ratios ``C_i / P_i`` and
    the slope's standard error, ``sqrt(SSR / (n - 1) / sum(P_i^2))``, which needs two shapes or
    more (``None`` for one shape). Units: bits per parameter.
    """
    P = np.asarray(params, dtype=np.float64).ravel()
    C = np.asarray(capacity_bits, dtype=np.float64).ravel()
    if P.size == 0 or P.size != C.size:
        raise UserError(
            f"α needs one capacity per parameter count and at least one shape, got {P.size} "
            f"parameter counts and {C.size} capacities."
        )
    if np.any(P <= 0):
        raise UserError("every parameter count must be positive.")
    alpha = float((P * C).sum() / (P * P).sum())
    ratios = C / P
    n = len(P)
    se: float | None = None
    if n > 1:
        resid = C - alpha * P
        se = float(math.sqrt((resid**2).sum() / (n - 1) / (P * P).sum()))
    return {"alpha": alpha, "alpha_se": se, "mean_ratio": float(ratios.mean())}


def predicted_bits(alpha: float, params: int, memorizable: float) -> float:
    """What a model of ``params`` parameters should memorize of a dataset: ``min(alpha * params,
    memorizable)`` bits, where ``memorizable = N * (S - 1) * log2 V`` for N uniform sequences (the
    first token of a sequence is charged ``log2 V`` and never memorized)."""
    return min(alpha * params, memorizable)


def summarize(
    config: CapacityConfig,
    models: list[dict[str, Any]],
    wall_seconds: float,
    *,
    reused_cells: int = 0,
    backend: str = "local",
) -> CapacitySummary:
    """Fit α over the finished shapes (the cells' results) and assemble ``capacity.json``."""
    params = np.array([m["params"] for m in models], dtype=float)
    caps = np.array([m["capacity_bits"] for m in models], dtype=float)
    fit = fit_alpha(params, caps)
    alpha = fit["alpha"]
    out_models = []
    for m in models:
        runs = [
            CapacityRun(
                **{k: v for k, v in r.items() if k != "curve"},
                predicted_bits=predicted_bits(alpha, m["params"], r["memorizable_bits"]),
            )
            for r in m["runs"]
        ]
        out_models.append(CapacityModel(**{**m, "runs": runs}))
    n_budget = sum(r.stopped_by == "time_budget" for m in out_models for r in m.runs)
    return CapacitySummary(
        alpha_bits_per_param=alpha,
        alpha_method="least-squares slope of capacity on params through the origin",
        alpha_se=fit["alpha_se"],
        alpha_mean_per_model=fit["mean_ratio"],
        published_alpha={
            "headline": PUBLISHED_ALPHA,
            "precision": config.precision,
            **published_alpha(config.precision),
        },
        vocab_size=config.vocab_size,
        seq_len=config.seq_len,
        bits_per_sequence=config.bits_per_sequence(),
        memorizable_bits_per_sequence=config.memorizable_bits_per_sequence(),
        first_token="coded uniformly at log2(V) bits; never counted as memorized",
        precision=config.precision,
        preset=config.preset,
        seed=config.seed,
        all_saturated=all(m.saturated for m in out_models),
        time_budget_s=config.time_budget_s,
        stopped_by_time_budget=n_budget,
        wall_seconds=wall_seconds,
        reused_cells=reused_cells,
        backend=backend,
        models=out_models,
    )
