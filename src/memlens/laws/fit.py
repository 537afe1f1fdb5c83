"""Fitting the membership-inference scaling law to measured F1 (``memlens laws fit-mia``).

Nonlinear least squares (scipy) of ``F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D| / Capacity))``; see
:mod:`memlens.laws.formulas` for why the law as printed in Morris et al. 2025 is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from memlens.config import Config, require_config
from memlens.errors import UserError
from memlens.laws.formulas import (
    CORRECTED,
    FIT_BOUNDS,
    LAW_FORM,
    LAW_NOTE,
    PUBLISHED_ALPHA,
    MiaLawConstants,
    _positive,
    _sigmoid,
    mia_f1,
    mia_f1_ceiling,
)
from memlens.laws.summaries import FitMiaSummary
from memlens.progress import ProgressFn
from memlens.results import RunResult


@dataclass
class MiaFit:
    """A least-squares fit of the MIA law, with Jacobian-based confidence intervals."""

    constants: MiaLawConstants
    se: dict[str, float]
    ci: dict[str, list[float]]
    ci_level: float
    at_bound: dict[str, bool]
    predictions: np.ndarray
    residuals: np.ndarray
    rmse: float
    max_abs_residual: float
    n: int
    dof: int
    success: bool
    message: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": LAW_FORM,
            "constants": self.constants.to_dict(),
            "se": self.se,
            "ci": self.ci,
            "ci_level": self.ci_level,
            "at_bound": self.at_bound,
            "bounds": {  # None = unbounded (strict JSON has no infinity)
                "lower": [float(b) for b in FIT_BOUNDS[0]],
                "upper": [float(b) if math.isfinite(b) else None for b in FIT_BOUNDS[1]],
            },
            "rmse": self.rmse,
            "max_abs_residual": self.max_abs_residual,
            "n": self.n,
            "dof": self.dof,
            "success": self.success,
            "message": self.message,
            "ceiling_f1": mia_f1_ceiling(self.constants),
            "warnings": self.warnings,
        }


def fit_mia_law(
    cap_bits: Sequence[float] | np.ndarray,
    n_sequences: Sequence[float] | np.ndarray,
    f1: Sequence[float] | np.ndarray,
    *,
    start: MiaLawConstants = CORRECTED,
    level: float = 0.95,
) -> MiaFit:
    """Fit ``F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D| / Capacity))`` by nonlinear least squares.

    Uses :func:`scipy.optimize.least_squares` (trust-region reflective, bounds
    :data:`FIT_BOUNDS`, started at the corrected published constants). Standard errors come from
    the Jacobian at the optimum, ``cov = s^2 (J^T J)^-1`` with ``s^2 = SSR / (n - 3)``; the
    confidence intervals are ``+- t_{(1+level)/2, n-3} * se`` (Wald intervals: they assume the law
    is locally linear; a constant at its bound gets a one-sided note in ``at_bound``).

    The law is that of Morris et al. 2025 (arXiv:2505.24832) with corrected constants (the
    printed form tends to 1.006 as |D| grows). Needs at least 4 rows (3 constants plus one degree
    of freedom for the error) and at least 3 distinct values of ``|D| / Capacity``.
    """
    from scipy.optimize import least_squares
    from scipy.stats import t as student_t

    C = np.asarray(cap_bits, dtype=np.float64).ravel()
    N = np.asarray(n_sequences, dtype=np.float64).ravel()
    y = np.asarray(f1, dtype=np.float64).ravel()
    if not (C.size == N.size == y.size):
        raise UserError("capacity, dataset size and F1 columns must have the same length.")
    n = y.size
    if n < 4:
        raise UserError(
            f"need at least 4 rows to fit the 3 constants of the MIA law with an error estimate, got {n}."
        )
    for name, a in (("capacity", C), ("n_sequences", N), ("f1", y)):
        if not np.all(np.isfinite(a)):
            raise UserError(f"the {name} column has missing or non-numeric values.")
    if np.any(C <= 0) or np.any(N <= 0):
        raise UserError("params (or capacity_bits) and n_sequences must all be positive.")
    if np.any((y < 0) | (y > 1)):
        raise UserError("f1 values must lie between 0 and 1.")
    x = N / C
    if np.unique(np.round(np.log(x), 9)).size < 3:
        raise UserError(
            "need at least 3 distinct values of n_sequences / capacity to fit the 3 constants."
        )
    if not 0 < level < 1:
        raise UserError(f"the confidence level must be between 0 and 1, got {level}.")

    def model(c: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + c[0] * _sigmoid(c[1] - c[2] * x))

    lo, hi = np.array(FIT_BOUNDS[0]), np.array(FIT_BOUNDS[1])
    x0 = np.clip(start.as_array(), lo + 1e-9, np.where(np.isinf(hi), 1e300, hi - 1e-9))
    # Rescale c3 by the data's typical |D|/Capacity so all three constants are of order 1.
    res = least_squares(
        lambda c: model(c) - y, x0, bounds=(lo, hi), x_scale="jac", method="trf", max_nfev=20_000
    )
    c = res.x
    pred = model(c)
    resid = y - pred
    dof = n - 3
    ssr = float((resid**2).sum())
    s2 = ssr / dof
    J = res.jac
    cov = s2 * np.linalg.pinv(J.T @ J)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    tq = float(student_t.ppf(0.5 + level / 2.0, dof))
    names = ("c1", "c2", "c3")
    active = getattr(res, "active_mask", np.zeros(3, dtype=int))
    tol = 1e-6 * (1 + np.abs(c))
    at_bound = {k: bool(active[i] != 0 or abs(c[i] - lo[i]) < tol[i] or abs(c[i] - hi[i]) < tol[i])
                for i, k in enumerate(names)}  # fmt: skip
    warnings = []
    for k, b in at_bound.items():
        if b:
            warnings.append(
                f"{k} stopped at its bound, so the data do not pin it down (its interval is not valid); "
                "rows with smaller and larger n_sequences/capacity would help."
            )
    from scipy.stats import spearmanr

    rho = float(spearmanr(x, y).statistic) if np.ptp(y) > 0 else 0.0
    if rho > 0:
        # the law falls with |D|/Capacity (c3 >= 0): rising data cannot be fitted, only flattened
        warnings.append(
            f"F1 rises with n_sequences/capacity (Spearman correlation {rho:+.2f}), the opposite of "
            "the law, in which membership gets harder to detect as the dataset grows: check the "
            "columns and that a higher attack score means member."
        )
    rel = se / np.maximum(np.abs(c), 1e-12)
    for i, k in enumerate(names):
        if not at_bound[k] and rel[i] > 1.0:
            warnings.append(
                f"{k} is poorly determined (standard error {se[i]:.3g} exceeds its value)."
            )
    return MiaFit(
        constants=MiaLawConstants(*map(float, c)),
        se={k: float(se[i]) for i, k in enumerate(names)},
        ci={k: [float(c[i] - tq * se[i]), float(c[i] + tq * se[i])] for i, k in enumerate(names)},
        ci_level=level,
        at_bound=at_bound,
        predictions=pred,
        residuals=resid,
        rmse=math.sqrt(ssr / n),
        max_abs_residual=float(np.abs(resid).max()),
        n=n,
        dof=dof,
        success=bool(res.success),
        message=str(res.message),
        warnings=warnings,
    )


MIA_TABLE_COLUMNS = "params (or capacity_bits), n_sequences, f1"


def read_mia_table(path: str | Path, alpha: float = PUBLISHED_ALPHA) -> Any:
    """Read a table (``.csv``, ``.jsonl`` or ``.parquet``, through memlens's one table reader
    :func:`memlens.data.tables.read_table`) with ``params`` or ``capacity_bits``,
    ``n_sequences`` and ``f1``.

    Returns a pandas DataFrame in input order with a ``capacity_bits`` column added
    (``alpha * params`` when only ``params`` is given).
    """
    import pandas as pd

    from memlens.data.tables import read_table

    p = Path(path)
    if not p.exists():
        raise UserError(f"file {p} does not exist.")
    df = read_table(p)
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("n_sequences", "f1") if c not in df.columns]
    if "params" not in df.columns and "capacity_bits" not in df.columns:
        missing.insert(0, "params (or capacity_bits)")
    if missing:
        raise UserError(
            f"{p} is missing column(s) {', '.join(missing)}; it needs {MIA_TABLE_COLUMNS}."
        )
    out = df.copy()
    for col in ("params", "capacity_bits", "n_sequences", "f1"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
            # capacity_bits may have gaps that params fills; every other value must be a number
            if col == "capacity_bits" and "params" in out.columns:
                continue
            bad = ~np.isfinite(out[col].to_numpy(dtype=np.float64))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise UserError(
                    f"{p}: column {col} has a missing or non-numeric value in row {i} "
                    f"({df[col].iloc[i]!r}); every row needs a finite number there."
                )
    if "capacity_bits" in out.columns and out["capacity_bits"].notna().all():
        out["capacity_source"] = "capacity_bits column"
    else:
        if "params" not in out.columns:
            raise UserError(
                f"{p} has empty capacity_bits values and no params column to fill them."
            )
        alpha = _positive(alpha, "alpha (bits per parameter)")
        cap = alpha * out["params"]
        out["capacity_bits"] = (
            out["capacity_bits"].fillna(cap) if "capacity_bits" in out.columns else cap
        )
        out["capacity_source"] = f"{alpha} bits/param * params"
    return out


def fit_mia_table(
    path: str | Path, alpha: float = PUBLISHED_ALPHA, level: float = 0.95
) -> dict[str, Any]:
    """Read a table (:func:`read_mia_table`), fit the law, and return a JSON-ready result.

    ``predictions`` are in input order: each row's inputs, fitted F1, residual, and the F1 the
    corrected published constants predict.
    """
    df = read_mia_table(path, alpha)
    fit = fit_mia_law(df["capacity_bits"], df["n_sequences"], df["f1"], level=level)
    published = mia_f1(df["n_sequences"].to_numpy(float), df["capacity_bits"].to_numpy(float))
    preds = []
    for i, row in enumerate(df.itertuples(index=False)):
        r = row._asdict()
        preds.append(
            {
                "row": i,
                **({"params": float(r["params"])} if "params" in r else {}),
                "capacity_bits": float(r["capacity_bits"]),
                "n_sequences": float(r["n_sequences"]),
                "sequences_per_capacity_bit": float(r["n_sequences"] / r["capacity_bits"]),
                "f1": float(r["f1"]),
                "fitted_f1": float(fit.predictions[i]),
                "residual": float(fit.residuals[i]),
                "published_law_f1": float(published[i]),
            }
        )
    return {
        "input": str(path),
        "alpha": float(alpha),
        "capacity_source": str(df["capacity_source"].iloc[0]),
        **fit.to_dict(),
        "published_constants": CORRECTED.to_dict(),
        "law_note": LAW_NOTE,
        "predictions": preds,
    }


def plot_mia_fit(result: Mapping[str, Any], ax: Any = None, title: str | None = None) -> Any:
    """F1 against ``|D| / Capacity``: measurements, the fitted law and the corrected published law.

    ``result`` is the dict of :func:`fit_mia_table` (or any dict with ``constants`` and
    ``predictions`` holding ``sequences_per_capacity_bit`` and ``f1``). Returns the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
    else:
        fig = ax.figure
    xs = np.array([p["sequences_per_capacity_bit"] for p in result["predictions"]], dtype=float)
    ys = np.array([p["f1"] for p in result["predictions"]], dtype=float)
    lo, hi = xs.min(), xs.max()
    grid = np.geomspace(lo / 4, hi * 4, 300)
    fitted = MiaLawConstants(**result["constants"])
    ax.plot(grid, np.minimum(1.0, mia_f1(grid, 1.0, fitted)), "C0-", label=_label("fitted", fitted))
    ax.plot(grid, np.minimum(1.0, mia_f1(grid, 1.0, CORRECTED)), "k--", lw=1,
            label=_label("published (corrected)", CORRECTED))  # fmt: skip
    ax.scatter(xs, ys, c="C3", zorder=3, label="measured")
    ax.axhline(0.5, color="grey", lw=0.7, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0.4, 1.05)
    ax.set_xlabel("|D| / Capacity  (sequences per capacity bit)")
    ax.set_ylabel("membership-inference F1")
    ax.set_title(title or "MIA scaling law (Morris et al. 2025, corrected form)")
    ax.legend(fontsize=7)
    return fig


def _label(name: str, c: MiaLawConstants) -> str:
    return f"{name}: c1={c.c1:.3g}, c2={c.c2:.3g}, c3={c.c3:.4g}"


class FitMiaConfig(Config):
    """What ``memlens laws fit-mia`` fits: a table, the alpha for its ``params`` column, a level."""

    what: ClassVar[str] = "fit-mia config"

    file: str
    alpha: float = Field(default=PUBLISHED_ALPHA, gt=0)
    level: float = Field(default=0.95, gt=0, lt=1)


def run(
    config: FitMiaConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> RunResult[FitMiaSummary]:
    """Fit the MIA law to ``config.file`` (:func:`fit_mia_table`); with ``out``, also write
    ``fit_mia.json``, ``predictions.csv``, ``fit_mia.png`` and ``manifest.json`` there (a fit takes
    a second, so ``None`` writes no run directory)."""
    require_config(config, FitMiaConfig)
    summary = FitMiaSummary(**fit_mia_table(config.file, alpha=config.alpha, level=config.level))
    if out is None:
        return RunResult(summary)
    import pandas as pd

    from memlens.store import RunDir

    rd = RunDir(out, FitMiaSummary.kind, config, None)
    rd.write_json(FitMiaSummary.file, summary.to_json())
    rd.write_table("predictions.csv", pd.DataFrame(summary.predictions))
    title = f"MIA law fit: {Path(config.file).name}"
    rd.save_figure("fit_mia.png", plot_mia_fit(summary.to_json(), title=title))
    rd.write_manifest(status="finished")
    return RunResult(summary, rd.path)
