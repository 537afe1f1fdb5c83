"""The prior lab's recipes: ``memlens prior theory`` and ``memlens prior diagnose``.

:func:`run` takes a :class:`TheoryConfig` (limiting and finite-sample risks of the exact Bayesian
linear theory of Cheng & Barber, COLT 2026, arXiv:2602.09405) or a :class:`DiagnoseConfig` (a
user's ``(X, y)``), computes everything, then writes the run directory. Everything is computed
before the directory is created, so bad input never leaves a half-written one; every file is
written atomically through :class:`memlens.store.RunDir`. Non-finite numbers are written as
JSON ``null`` (infinite or undefined).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field, field_validator

from memlens.config import Config
from memlens.errors import UserError
from memlens.prior import asymptotic as asy
from memlens.prior import diagnosis as dg
from memlens.prior import linear, table
from memlens.prior.files import load_xy
from memlens.progress import ProgressFn
from memlens.results import RunResult, Summary


def finite_or_none(obj: Any) -> Any:
    """Replace non-finite floats by ``None`` (strict JSON: ``null`` means infinite or undefined)."""
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_none(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class TheoryConfig(Config):
    """Inputs of ``memlens prior theory`` (saved in the manifest).

    ``gamma = d/n``; ``r2`` the signal ``E||theta||^2_Sigma``; ``sigma2`` the noise variance;
    ``prior`` one of isotropic, aligned, misaligned, lowrank (with ``spread``, ``alpha``, ``eta``,
    ``eps``, see :func:`memlens.prior.asymptotic.make_population`); ``n > 0`` adds the exact
    finite-sample values on one seeded design of ``n`` rows.
    """

    what: ClassVar[str] = "prior theory config"
    gamma: float = 2.0
    r2: float = 1.0
    sigma2: float = 0.25
    prior: str = "isotropic"
    spread: float = 10.0
    alpha: float = 1.0
    eta: float = 0.1
    eps: float = 0.05
    n: int = 0
    seed: int = 0

    @field_validator("prior")
    @classmethod
    def _known_prior(cls, v: str) -> str:
        if v not in asy.PRIOR_KINDS:
            raise ValueError(f"unknown prior {v!r}; choose one of {', '.join(asy.PRIOR_KINDS)}")
        return v

    def population(self) -> asy.Population:
        return asy.make_population(
            self.prior, self.r2, spread=self.spread, alpha=self.alpha, eta=self.eta, eps=self.eps
        )


class DiagnoseConfig(Config):
    """Inputs of ``memlens prior diagnose``: the files holding ``X`` (``n x d``) and ``y``
    (``n`` values) as ``.npy``, ``.csv`` or ``.parquet``, and whether to center them (fit an
    intercept)."""

    what: ClassVar[str] = "prior diagnose config"
    X: str
    y: str
    center: bool = True


class TheoryTable(Summary):
    """One column of ``memlens prior theory``: the proportional limit, or the exact values on a
    finite design (``n``, ``d``). Risks are prediction risks ``E||theta_hat - theta||^2_Sigma``;
    ``None`` means infinite or undefined."""

    prior: str | None = None
    gamma: float | None = None
    r2: float | None = None
    sigma2: float | None = None
    minnorm_risk: float | None = None
    bayes_risk: float | None = None
    ridge_opt_risk: float | None = None
    lambda_opt: float | None = None
    lambda_min: float | None = None
    train_bayes: float | None = None
    train_bayes_lower: float | None = None
    train_bayes_upper: float | None = None
    J: float | None = None
    V: float | None = None
    threshold_memorization: float | None = None
    threshold_overfitting: float | None = None
    lambda_sigma: float | None = None
    sigma2_sign_change: float | None = None
    regime: str | None = None
    n: int | None = None
    d: int | None = None


#: The rows ``memlens prior theory`` prints, in order.
THEORY_ROWS = (
    "minnorm_risk", "bayes_risk", "ridge_opt_risk", "lambda_opt", "lambda_min", "train_bayes",
    "train_bayes_lower", "train_bayes_upper", "J", "V", "threshold_memorization",
    "threshold_overfitting", "lambda_sigma", "sigma2_sign_change", "regime",
)  # fmt: skip


class TheorySummary(Summary):
    """``theory.json``: the limiting table and, with ``n > 0``, the exact finite-sample one."""

    kind: ClassVar[str] = "prior-theory"
    file: ClassVar[str] = "theory.json"
    limit: TheoryTable
    finite: TheoryTable | None = None

    def headline(self) -> list[tuple[str, Any]]:
        lim = self.limit
        return [
            ("prior", lim.prior), ("γ = d/n", lim.gamma), ("regime", lim.regime),
            ("min-norm risk", lim.minnorm_risk), ("Bayes risk", lim.bayes_risk),
            ("optimal ridge risk", lim.ridge_opt_risk), ("optimal λ", lim.lambda_opt),
            ("memorization threshold 1/J", lim.threshold_memorization),
            ("overfitting threshold V", lim.threshold_overfitting),
        ]  # fmt: skip


#: The rows ``memlens prior diagnose`` prints, in order.
DIAGNOSIS_ROWS = (
    "n", "d", "gamma", "lambda_opt", "lambda_min", "loo_opt", "loo_interp", "loo_null",
    "gcv_lambda_opt", "train_opt", "train_interp", "sigma2_hat", "signal_var_hat", "snr",
    "alpha_hat", "alpha_pvalue", "threshold_memorization", "threshold_overfitting", "regime",
    "verdict",
)  # fmt: skip


class DiagnosisSummary(Summary):
    """``diagnosis.json``: exact leave-one-out over ridge penalties on the user's data, the
    empirical-Bayes noise and prior-alignment estimates and the verdict (see
    :class:`memlens.prior.diagnosis.Diagnosis` for every field)."""

    kind: ClassVar[str] = "prior-diagnose"
    file: ClassVar[str] = "diagnosis.json"
    n: int
    d: int
    gamma: float | None = None
    lambda_opt: float | None = None
    lambda_min: float | None = None
    loo_opt: float | None = None
    loo_interp: float | None = None
    loo_null: float | None = None
    gcv_lambda_opt: float | None = None
    train_opt: float | None = None
    train_interp: float | None = None
    sigma2_hat: float | None = None
    signal_var_hat: float | None = None
    snr: float | None = None
    alpha_hat: float | None = None
    alpha_pvalue: float | None = None
    threshold_memorization: float | None = None
    threshold_overfitting: float | None = None
    regime: str
    verdict: str
    answers: dict[str, str] = Field(default_factory=dict)
    summary: str = ""

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("verdict", self.verdict), ("regime", self.regime), ("n", self.n), ("d", self.d),
            ("optimal λ (LOO)", self.lambda_opt), ("LOO risk at optimum", self.loo_opt),
            ("LOO risk, interpolator", self.loo_interp), ("noise variance σ²", self.sigma2_hat),
            ("signal-to-noise", self.snr),
        ]  # fmt: skip


MAX_FINITE_D = 4000


def theory_result(config: TheoryConfig) -> dict:
    """The limiting table (and, with ``n > 0``, the exact finite-sample one) plus curves."""
    pop = config.population()
    asy._check_gamma(config.gamma)
    asy._check_sigma2(config.sigma2)
    if config.sigma2 > asy.R2_RANGE[1]:
        raise UserError(
            f"`sigma2` must be at most {asy.R2_RANGE[1]:g} (rescale the responses), got "
            f"{config.sigma2:g}."
        )
    out = {"limit": table.theory(pop, config.gamma, config.sigma2)}
    if config.n < 0:
        raise UserError(f"`n` must be 0 (off) or a positive sample size, got {config.n}.")
    if config.n > 0:
        d = int(round(config.gamma * config.n))
        # the exact check builds n x n and d x d matrices: both sizes are capped (n alone was not,
        # and a small gamma with a large n asked for terabytes)
        if d < 1 or d > MAX_FINITE_D or config.n > MAX_FINITE_D:
            raise UserError(
                f"`n` {config.n} with `gamma` {config.gamma} gives d = {d}; the exact finite-sample "
                f"check needs n <= {MAX_FINITE_D} and 1 <= d <= {MAX_FINITE_D}."
            )
        sx, sw = pop.finite(d)
        fin = linear.finite_sample_theory(sx, sw, config.sigma2, config.n, config.seed)
        lim = out["limit"]
        # the column's setting, as the limit's states its own (gamma: the design's d / n)
        setting = {"prior": lim["prior"], "gamma": d / config.n, "r2": lim["r2"]}
        out["finite"] = {**setting, "sigma2": config.sigma2, **fin}
    lim = out["limit"]
    positives = [x for x in (lim["threshold_memorization"], config.sigma2) if x > 0]
    lo = min([1e-3] + [0.1 * x for x in positives])
    hi = max(10.0, 3 * lim["threshold_overfitting"], 3 * config.sigma2)
    s2 = np.unique(
        np.concatenate([np.logspace(math.log10(lo), math.log10(hi), 60), [config.sigma2]])
    )
    s2 = s2[s2 > 0]
    out["curve_sigma2"] = table.curve_vs_sigma2(pop, config.gamma, s2)
    out["curve_lambda"] = table.curve_vs_lambda(pop, config.gamma, config.sigma2)
    return out


def _plot_theory(result: dict, config: TheoryConfig):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = result["limit"]
    cs = result["curve_sigma2"]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.plot(cs["sigma2"], cs["bayes_risk"], label="Bayes (posterior mean)", color="k")
    ax.plot(cs["sigma2"], cs["ridge_opt_risk"], "--", label="best isotropic ridge", color="C2")
    if np.all(np.isfinite(cs["minnorm_risk"])):
        ax.plot(cs["sigma2"], cs["minnorm_risk"], label="min-norm interpolator", color="C3")
    t1, t2 = lim["threshold_memorization"], lim["threshold_overfitting"]
    for a in (ax, ax2):
        if t1 > 0:
            a.axvline(t1, color="C0", ls=":", lw=1.5)
            a.axvspan(cs["sigma2"][0], t1, color="C0", alpha=0.08)
        a.axvline(t2, color="C1", ls=":", lw=1.5)
        a.axvspan(t2, cs["sigma2"][-1], color="C1", alpha=0.08)
        a.axvline(config.sigma2, color="0.5", lw=0.8)
        a.set_xscale("log")
        a.set_xlabel(r"noise variance $\sigma^2$")
    ax.plot([], [], color="C0", ls=":", label=r"$1/J_\pi$: memorization necessary below")
    ax.plot([], [], color="C1", ls=":", label=r"$V_\pi$: overfitting harmful above")
    ax.set_ylim(0, 2.5 * float(np.nanmax(cs["bayes_risk"])))
    ax.set_ylabel(r"prediction risk $E\|\hat\theta-\theta\|^2_\Sigma$")
    ax.set_title(f"{lim['prior']} prior, $\\gamma$={config.gamma:g}, $r^2$={lim['r2']:.3g}")
    ax.legend(fontsize=7)
    ax2.plot(
        cs["sigma2"],
        cs["train_bayes"] / cs["sigma2"],
        color="k",
        label=r"Train$(\hat\theta_B)/\sigma^2$",
    )
    ax2.fill_between(
        cs["sigma2"], cs["train_bayes_lower"] / cs["sigma2"], cs["train_bayes_upper"] / cs["sigma2"],
        color="0.8", label="Theorem 2 band",
    )  # fmt: skip
    ax2.set_ylabel("Bayes training error / noise level")
    ax2.set_title("memorization of the Bayes estimator")
    ax2.legend(fontsize=7)
    fig1 = fig

    cl = result["curve_lambda"]
    fig2, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(cl["lambda"], cl["pred"], color="k", label="ridge risk")
    ax.plot(cl["lambda"], cl["train"], color="C4", label="ridge training error")
    ax.axvline(0, color="C3", ls=":", label=r"$\lambda=0$ (interpolation)")
    ax.axvline(
        lim["lambda_opt"],
        color="C2",
        ls="--",
        label=rf"$\lambda_{{opt}}$ = {lim['lambda_opt']:.3g}",
    )
    ax.axvline(
        lim["lambda_min"], color="0.5", lw=0.8, label=rf"admissible edge {lim['lambda_min']:.3g}"
    )
    finite = cl["pred"][np.isfinite(cl["pred"])]
    top = (
        min(float(np.max(finite)), 3 * float(np.min(finite)) + lim["sigma2"]) if finite.size else 1
    )
    ax.set_ylim(0, top)
    ax.set_xlabel(r"ridge penalty $\lambda$ (normalized, $X^TX/n+\lambda I$)")
    ax.set_ylabel("risk and training error (proportional limit)")
    ax.set_title(rf"{lim['prior']} prior, $\sigma^2$={config.sigma2:g}")
    ax.legend(fontsize=7)
    return fig1, fig2


def _run_theory(config: TheoryConfig, out: str | Path | None) -> RunResult[TheorySummary]:
    """Compute :func:`theory_result`, then write ``theory.json``, two CSV curves, two plots and
    ``manifest.json``."""
    import pandas as pd

    from memlens.store import RunDir, default_out_dir

    result = theory_result(config)
    figs = _plot_theory(result, config)
    summary = TheorySummary.model_validate(
        finite_or_none({k: v for k, v in result.items() if k in ("limit", "finite")})
    )
    run = RunDir(out or default_out_dir("prior-theory"), "prior-theory", config, config.seed)
    run.write_json(TheorySummary.file, summary.to_json())
    run.write_table("curve_sigma2.csv", pd.DataFrame(result["curve_sigma2"]))
    run.write_table("curve_lambda.csv", pd.DataFrame(result["curve_lambda"]))
    run.save_figure("risk_vs_sigma2.png", figs[0])
    run.save_figure("risk_vs_lambda.png", figs[1])
    run.write_manifest(files=["theory.json", "curve_sigma2.csv", "curve_lambda.csv",
                              "risk_vs_sigma2.png", "risk_vs_lambda.png"])  # fmt: skip
    return RunResult(summary, run.path)


def _plot_diagnosis(res: dg.Diagnosis):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = res.curve
    lam = np.asarray(c["lambda"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    edge = max(abs(res.lambda_min), 1e-12)
    ax.plot(lam, c["loo"], color="k", label="leave-one-out MSE (exact)")
    ax.plot(lam, c["gcv"], color="0.6", ls="--", label="GCV")
    ax.plot(lam, c["train"], color="C4", label="training MSE")
    ax.axvline(0, color="C3", ls=":", label=r"$\lambda=0$")
    ax.axvline(
        res.lambda_opt, color="C2", ls="--", label=rf"$\lambda_{{opt}}$ = {res.lambda_opt:.3g}"
    )
    ax.axvline(res.lambda_min, color="0.5", lw=0.8, label=rf"admissible edge {res.lambda_min:.3g}")
    ax.axhline(res.loo_null, color="0.8", lw=0.8, label="predict the mean")
    ax.set_xscale("symlog", linthresh=edge)
    ax.set_xlim(left=res.lambda_min - 0.05 * edge, right=float(lam.max()))
    ax.set_xlabel(
        r"ridge penalty $\lambda$ (linear within $|\lambda| < |\lambda_{min}|$, log beyond)"
    )
    ax.set_ylabel("mean squared error")
    ax.set_title(f"verdict: {res.verdict} (d/n = {res.gamma:.3g})")
    finite = np.asarray(c["loo"])[np.isfinite(c["loo"])]
    ax.set_ylim(0, min(float(finite.max()), 3 * max(res.loo_null, res.loo_opt)))
    ax.legend(fontsize=7)
    return fig


def _run_diagnose(config: DiagnoseConfig, out: str | Path | None) -> RunResult[DiagnosisSummary]:
    """Load ``X`` and ``y``, :func:`memlens.prior.diagnosis.diagnose` them, and write
    ``diagnosis.json``, ``loo_curve.csv``, ``loo_curve.png`` and ``manifest.json``."""
    import pandas as pd

    from memlens.store import RunDir, default_out_dir

    X, y = load_xy(config.X, config.y)
    res = dg.diagnose(X, y, center=config.center)
    fig = _plot_diagnosis(res)
    summary = DiagnosisSummary.model_validate(finite_or_none(res.to_dict()))
    manifest_config = {**config.to_dict(), "n": res.n, "d": res.d}
    run = RunDir(out or default_out_dir("prior-diagnose"), "prior-diagnose", manifest_config, None)
    run.write_json(DiagnosisSummary.file, summary.to_json())
    run.write_table("loo_curve.csv", pd.DataFrame(res.curve))
    run.save_figure("loo_curve.png", fig)
    run.write_manifest(files=["diagnosis.json", "loo_curve.csv", "loo_curve.png"])
    return RunResult(summary, run.path)


def run(
    config: TheoryConfig | DiagnoseConfig,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
) -> RunResult[TheorySummary] | RunResult[DiagnosisSummary]:
    """Run the prior lab's recipe for ``config`` into the run directory ``out``.

    A :class:`TheoryConfig` gives ``theory.json`` (:class:`TheorySummary`); a
    :class:`DiagnoseConfig` gives ``diagnosis.json`` (:class:`DiagnosisSummary`). Both compute in
    well under a second, so ``progress`` receives nothing; it is accepted for the common contract.
    """
    if isinstance(config, TheoryConfig):
        return _run_theory(config, out)
    if isinstance(config, DiagnoseConfig):
        return _run_diagnose(config, out)
    raise UserError(
        f"the prior lab runs a TheoryConfig or a DiagnoseConfig, not {type(config).__name__}."
    )
