"""Shadow-model membership-inference attacks: LiRA and RMIA.

Both calibrate a target model's signal on one example against *reference* (shadow) models that
did (IN) or did not (OUT) train on that example. Score convention: **higher = more likely a
member**. Signals are in bits (see :mod:`memlens.shadow.signals`).

LiRA (Carlini et al. 2022, "Membership Inference Attacks From First Principles",
arXiv:2112.03570)
    Per example, fit a Gaussian to the LiRA signal ``phi`` of the IN references
    ``(mu_in, sigma_in)`` and of the OUT references ``(mu_out, sigma_out)``.

    * online: ``log N(phi_t; mu_in, sigma_in^2) - log N(phi_t; mu_out, sigma_out^2)``;
    * offline (OUT references only): the paper's one-sided test
      ``Lambda = Phi((phi_t - mu_out) / sigma_out)``. memlens returns its argument
      ``(phi_t - mu_out) / sigma_out``: a strictly increasing function of ``Lambda`` (the same
      ROC), which keeps the strongest members distinct where ``Phi`` rounds to 1.
      ``offline_test="density"`` gives the public code's score ``-log N(phi_t; mu_out, sigma_out^2)``
      instead (two-sided: far from OUT in either direction counts as member).
    * fixed variance (``*_fixed_var``): one ``sigma_in`` and one ``sigma_out`` shared by all
      examples, better with few references. memlens pools the within-example variances
      (``global_variance="pooled"``: squared deviations from each example's own centre, summed
      over examples, over the summed degrees of freedom); the public code takes the standard
      deviation of all signals together, between-example spread included
      (``global_variance="all"``).
    * centre: the paper uses the mean; the public code the median (``center="median"``). The
      spread is always measured around the mean (as both do). Per-example variances use
      ``ddof=1`` (unbiased); standard deviations are floored at ``min_std`` bits.

RMIA (Zarifzadeh et al. 2024, "Low-Cost High-Power Membership Inference Attacks", ICML,
arXiv:2312.03262)
    ``LR(x, z) = [P(x|theta) / P(x)] / [P(z|theta) / P(z)]`` and the score
    ``(1/|Z|) sum_z 1[LR(x, z) >= gamma]`` over population samples ``z`` that no model trained
    on. ``P(x)`` averages ``P(x|theta_ref)`` over the references (arithmetic mean of
    probabilities, the paper's; ``averaging="geometric"`` averages log-probabilities):

    * online: ``P(x) = (P_IN(x) + P_OUT(x)) / 2``, the means over IN and over OUT references
      (balanced, whatever the counts);
    * offline: ``P_IN ≈ a P_OUT + (1 - a)``, so ``P(x) = ((1 + a) P_OUT(x) + (1 - a)) / 2``;
      ``a`` is chosen as the paper does, by attacking one reference model with the others
      (:func:`calibrate_offline_a`, the grid 0, 0.1, ..., 1, best AUC), unless given.
    * ``P(z)`` is the same marginal as ``P(x)``: the mean of ``P(z|theta')`` over reference models
      trained on random halves, half of which would have trained on ``z``. The paper's research
      code draws ``z`` from points that are IN for half of the references, so it averages IN and
      OUT references for ``z`` exactly as for ``x``. memlens's population is OUT for every
      shadow, so ``P_IN(z)`` is not observed; it is estimated with the paper's own relation
      ``P_IN ≈ a P_OUT + (1 - a)``: ``P(z) = ((1 + a) P_OUT(z) + (1 - a)) / 2``. Offline, ``a`` is
      the calibrated one; online (``online_pz="marginal"``, the default), ``a`` is *fitted* on the
      candidates, where both sides are observed (:func:`fit_online_a`). ``online_pz="out"`` uses
      ``P(z) = P_OUT(z)``, the mean over the (all OUT) references (memlens before 0.1.0): it
      leaves ``P(x)`` a half-IN average and ``P(z)`` an all-OUT one, so a member's ``LR`` is about
      ``2 P_IN / (P_IN + P_OUT) < 2`` and with ``gamma = 2`` many members score 0.
    * ``gamma``: the paper's score counts ``LR(x, z) >= gamma``, as memlens does; the research
      code's CIFAR-10 configurations use ``gamma = 2`` (the default here) and compare with a
      strict ``>``, as does the Privacy Meter tool with ``gamma = 1``: ``gamma_compare="gt"``
      counts ``LR(x, z) > gamma`` (the two differ only on exact ties, e.g. a candidate whose
      target and reference probabilities equal a population sample's, with ``gamma = 1``).
      Scores are multiples of ``1/|Z|``.

    ``P(x|theta)`` for a sequence: by default (``rmia_signal="token"``) the per-token geometric
    mean probability ``2**mean_log2p``, a number in (0, 1] like the class probability of the
    paper, on which the offline linear approximation is meaningful; ``rmia_signal="sequence"``
    uses the whole-sequence probability ``2**loglik_bits`` (for long sequences so small that the
    offline ``(1 - a)`` term dominates ``P(x)`` unless ``a`` is 1).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
from pydantic import ConfigDict, Field

from memlens.config import Config
from memlens.errors import UserError
from memlens.shadow.design import partner
from memlens.shadow.signals import Signals

LN2 = math.log(2.0)
A_GRID = tuple(round(0.1 * i, 1) for i in range(11))

#: Attack names, in the order of the result table.
SHADOW_ATTACKS = (
    "lira_online",
    "lira_online_fixed_var",
    "lira_offline",
    "lira_offline_fixed_var",
    "rmia_online",
    "rmia_offline",
)


class AttackSettings(Config):
    """Choices of the shadow attacks (paper defaults; public-code variants by name).

    ``center``, ``global_variance``, ``offline_test``, ``min_std`` (bits): LiRA's Gaussians;
    ``gamma``, ``gamma_compare`` (``ge``: the paper's ``LR >= gamma``; ``gt``: the research code's
    ``>``), ``offline_a`` (``None``: calibrated on a reference model), ``rmia_signal``,
    ``averaging``, ``online_pz`` (how online RMIA estimates ``P(z)``): RMIA. See the module docstring for each choice and its source.
    """

    model_config = ConfigDict(frozen=True)
    what: ClassVar[str] = "shadow attack settings"
    center: Literal["mean", "median"] = "mean"
    global_variance: Literal["pooled", "all"] = "pooled"
    offline_test: Literal["one_sided", "density"] = "one_sided"
    min_std: float = Field(default=1e-6, gt=0)
    gamma: float = Field(default=2.0, gt=0)
    gamma_compare: Literal["ge", "gt"] = "ge"
    offline_a: float | None = Field(default=None, ge=0, le=1)
    rmia_signal: Literal["token", "sequence"] = "token"
    averaging: Literal["arithmetic", "geometric"] = "arithmetic"
    online_pz: Literal["marginal", "out"] = "marginal"

    def rmia_options(self) -> dict[str, object]:
        """The keyword arguments every RMIA call shares (:func:`rmia`, :func:`calibrate_offline_a`)."""
        return {
            "gamma": self.gamma,
            "averaging": self.averaging,
            "gamma_compare": self.gamma_compare,
        }


# -- LiRA ------------------------------------------------------------------------------------------


def gaussian_logpdf(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """``log N(x; mu, sd^2) = -log(sd sqrt(2 pi)) - (x - mu)^2 / (2 sd^2)`` (natural log)."""
    x, mu, sd = (np.asarray(v, dtype=np.float64) for v in (x, mu, sd))
    return -np.log(sd) - 0.5 * math.log(2 * math.pi) - 0.5 * ((x - mu) / sd) ** 2


def fit_gaussians(
    phi: np.ndarray,
    mask: np.ndarray,
    *,
    center: str = "mean",
    fixed_variance: bool = False,
    global_variance: str = "pooled",
    min_std: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example centre and standard deviation of ``phi [R, n]`` over the rows where ``mask``.

    Returns ``(mu [n], sd [n])``. Per-example variances use ``ddof=1``; with
    ``fixed_variance`` every example gets the same ``sd`` (pooled within-example, or the
    spread of all selected signals with ``global_variance="all"``).
    """
    phi = np.asarray(phi, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    count = mask.sum(axis=0)
    if np.any(count < 1):
        raise UserError("every example needs at least one reference model on each side.")
    mean = np.where(mask, phi, 0.0).sum(axis=0) / count
    if center == "median":
        mu = np.nanmedian(np.where(mask, phi, np.nan), axis=0)
    elif center == "mean":
        mu = mean
    else:
        raise UserError(f"center must be mean or median, got {center!r}.")
    sq = np.where(mask, (phi - mean) ** 2, 0.0).sum(axis=0)
    if fixed_variance:
        if global_variance == "pooled":
            dof = int((count - 1).sum())
            if dof < 1:
                raise UserError("a fixed variance needs two reference models on some example.")
            var = np.full(phi.shape[1], sq.sum() / dof)
        elif global_variance == "all":
            var = np.full(phi.shape[1], float(np.var(phi[mask])))
        else:
            raise UserError(f"global_variance must be pooled or all, got {global_variance!r}.")
    else:
        if np.any(count < 2):
            raise UserError(
                "a per-example variance needs at least two reference models on each side of "
                "every example; train more shadow models or use the fixed-variance attack."
            )
        var = sq / (count - 1)
    return mu, np.maximum(np.sqrt(var), min_std)


def lira_online(
    phi_target: np.ndarray,
    phi_refs: np.ndarray,
    in_refs: np.ndarray,
    *,
    fixed_variance: bool = False,
    center: str = "mean",
    global_variance: str = "pooled",
    min_std: float = 1e-6,
) -> np.ndarray:
    """Online LiRA: ``log N(phi; mu_in, sd_in^2) - log N(phi; mu_out, sd_out^2)`` per example (nats)."""
    kw = {"center": center, "fixed_variance": fixed_variance, "global_variance": global_variance}
    mu_in, sd_in = fit_gaussians(phi_refs, in_refs, min_std=min_std, **kw)
    mu_out, sd_out = fit_gaussians(phi_refs, ~np.asarray(in_refs, bool), min_std=min_std, **kw)
    return gaussian_logpdf(phi_target, mu_in, sd_in) - gaussian_logpdf(phi_target, mu_out, sd_out)


def lira_offline(
    phi_target: np.ndarray,
    phi_refs: np.ndarray,
    in_refs: np.ndarray,
    *,
    fixed_variance: bool = False,
    center: str = "mean",
    global_variance: str = "pooled",
    test: str = "one_sided",
    min_std: float = 1e-6,
) -> np.ndarray:
    """Offline LiRA from the OUT references only (see the module docstring for ``test``)."""
    mu, sd = fit_gaussians(
        phi_refs,
        ~np.asarray(in_refs, bool),
        center=center,
        fixed_variance=fixed_variance,
        global_variance=global_variance,
        min_std=min_std,
    )
    phi_target = np.asarray(phi_target, dtype=np.float64)
    if test == "one_sided":
        return (phi_target - mu) / sd
    if test == "density":
        return -gaussian_logpdf(phi_target, mu, sd)
    raise UserError(f"offline test must be one_sided or density, got {test!r}.")


# -- RMIA ------------------------------------------------------------------------------------------


def _log_mean_prob(lnp: np.ndarray, mask: np.ndarray, averaging: str) -> np.ndarray:
    """Natural log of the mean (over masked rows) of ``exp(lnp)``, per column."""
    from scipy.special import logsumexp

    mask = np.asarray(mask, dtype=bool)
    count = mask.sum(axis=0)
    if np.any(count < 1):
        raise UserError("every example needs at least one reference model on each side.")
    if averaging == "geometric":
        return np.where(mask, lnp, 0.0).sum(axis=0) / count
    if averaging != "arithmetic":
        raise UserError(f"averaging must be arithmetic or geometric, got {averaging!r}.")
    return logsumexp(np.where(mask, lnp, -np.inf), axis=0) - np.log(count)


def _log_offline_p(ln_p_out: np.ndarray, a: float) -> np.ndarray:
    """``ln( ((1 + a) P_OUT + (1 - a)) / 2 )`` from ``ln P_OUT``."""
    rest = math.log(1.0 - a) if a < 1.0 else -math.inf
    return np.logaddexp(math.log1p(a) + ln_p_out, rest) - math.log(2.0)


def fit_online_a(
    lp_refs: np.ndarray, in_refs: np.ndarray, *, averaging: str = "arithmetic"
) -> float:
    """The ``a`` of RMIA's ``P_IN ≈ a P_OUT + (1 - a)`` fitted on examples seen both ways (online).

    ``P_IN(x)`` and ``P_OUT(x)`` are the means of ``P(x|theta)`` over the IN and the OUT
    references (``lp_refs`` in bits, ``[R, n]``); the least-squares line through ``(1, 1)``,
    ``1 - P_IN = a (1 - P_OUT)``, gives ``a = sum (1 - P_IN)(1 - P_OUT) / sum (1 - P_OUT)^2``,
    clipped to ``[0, 1]`` (1 when every ``P_OUT`` is 1). Zarifzadeh et al. 2024 introduce the
    relation for the offline attack; memlens fits it online to estimate ``P(z)`` for population
    samples that no reference trained on (see the module docstring).

    Examples
    --------
    >>> lp = np.log2([[0.6, 0.5], [0.2, 0.3]])
    >>> round(fit_online_a(lp, np.array([[1, 1], [0, 0]], dtype=bool)), 6)  # (.32 + .35) / (.64 + .49)
    0.59292
    """
    in_refs = np.asarray(in_refs, dtype=bool)
    ln_r = np.asarray(lp_refs, np.float64) * LN2
    p_in = np.exp(_log_mean_prob(ln_r, in_refs, averaging))
    p_out = np.exp(_log_mean_prob(ln_r, ~in_refs, averaging))
    den = float(np.sum((1.0 - p_out) ** 2))
    if not den > 0:
        return 1.0
    return float(np.clip(np.sum((1.0 - p_in) * (1.0 - p_out)) / den, 0.0, 1.0))


def rmia(
    lp_target: np.ndarray,
    lp_refs: np.ndarray,
    in_refs: np.ndarray,
    lpz_target: np.ndarray,
    lpz_refs: np.ndarray,
    *,
    offline: bool = False,
    a: float = 0.3,
    gamma: float = 2.0,
    averaging: str = "arithmetic",
    online_pz: str = "marginal",
    gamma_compare: str = "ge",
) -> np.ndarray:
    """RMIA scores of ``n`` examples against ``m`` population samples.

    Parameters
    ----------
    lp_target, lp_refs: ``log2 P(x|theta)`` under the target ``[n]`` and the references
        ``[R, n]`` (bits; e.g. ``mean_log2p`` or ``loglik_bits``).
    in_refs: ``[R, n]``, True where reference ``r`` trained on example ``x``.
    lpz_target, lpz_refs: the same for the population ``[m]`` and ``[R, m]`` (OUT for all).
    offline: use only OUT references and ``P(x) = ((1 + a) P_OUT + (1 - a)) / 2``.
    online_pz: online, ``marginal`` estimates ``P(z)`` as ``((1 + a') P_OUT(z) + (1 - a')) / 2``
        with ``a'`` from :func:`fit_online_a`; ``out`` takes ``P(z) = P_OUT(z)``.
    gamma_compare: ``ge`` counts ``LR(x, z) >= gamma`` (the paper), ``gt`` counts ``>`` (the
        research code and the Privacy Meter tool).

    Returns
    -------
    ``[n]`` fractions of population samples ``z`` with ``LR(x, z) >= gamma``.
    """
    in_refs = np.asarray(in_refs, dtype=bool)
    ln_t = np.asarray(lp_target, np.float64) * LN2
    ln_r = np.asarray(lp_refs, np.float64) * LN2
    lnz_t = np.asarray(lpz_target, np.float64) * LN2
    lnz_r = np.asarray(lpz_refs, np.float64) * LN2
    all_z = np.ones(lnz_r.shape, dtype=bool)
    if offline:
        ln_px = _log_offline_p(_log_mean_prob(ln_r, ~in_refs, averaging), a)
        ln_pz = _log_offline_p(_log_mean_prob(lnz_r, all_z, averaging), a)
    else:
        ln_in = _log_mean_prob(ln_r, in_refs, averaging)
        ln_out = _log_mean_prob(ln_r, ~in_refs, averaging)
        ln_px = np.logaddexp(ln_in, ln_out) - math.log(2.0)
        ln_pz = _log_mean_prob(lnz_r, all_z, averaging)
        if online_pz == "marginal":
            ln_pz = _log_offline_p(ln_pz, fit_online_a(lp_refs, in_refs, averaging=averaging))
        elif online_pz != "out":
            raise UserError(f"online_pz must be marginal or out, got {online_pz!r}.")
    if gamma_compare not in ("ge", "gt"):
        raise UserError(f"gamma_compare must be ge or gt, got {gamma_compare!r}.")
    ratio_x = ln_t - ln_px
    ratio_z = np.sort(lnz_t - ln_pz)
    # LR(x, z) >= gamma  <=>  ratio_z <= ratio_x - ln(gamma)  (> gamma: ratio_z < ...)
    side = "right" if gamma_compare == "ge" else "left"
    count = np.searchsorted(ratio_z, ratio_x - math.log(gamma), side=side)
    return count / ratio_z.size


def calibrate_offline_a(
    lp: np.ndarray,
    keep: np.ndarray,
    lpz: np.ndarray,
    references: np.ndarray,
    *,
    gamma: float = 2.0,
    averaging: str = "arithmetic",
    gamma_compare: str = "ge",
    grid: tuple[float, ...] = A_GRID,
) -> tuple[float, dict[str, float]]:
    """Choose offline RMIA's ``a`` by attacking one reference model with the others (the paper's way).

    ``lp [K, n]``, ``keep [K, n]`` and ``lpz [K, m]`` hold every model; ``references`` are the
    ids the attacker may use. The first reference is the pseudo-target; its own references are
    the others except its pair partner (so every example keeps the same number of OUT
    references). Returns the ``a`` of the grid with the highest AUC (the smallest on ties) and
    the AUC of every ``a``.
    """
    from memlens.mia.metrics import roc_auc

    references = np.asarray(references, dtype=int)
    pseudo = int(references[0])
    others = np.array([r for r in references if r not in (pseudo, partner(pseudo))], dtype=int)
    if others.size == 0:
        raise UserError("calibrating offline RMIA needs at least four shadow models.")
    aucs: dict[str, float] = {}
    best, best_auc = grid[0], -1.0
    for a in grid:
        s = rmia(
            lp[pseudo], lp[others], keep[others], lpz[pseudo], lpz[others],
            offline=True, a=a, gamma=gamma, averaging=averaging, gamma_compare=gamma_compare,
        )  # fmt: skip
        auc = roc_auc(s, keep[pseudo].astype(int))
        aucs[repr(a)] = auc
        if auc > best_auc + 1e-12:
            best, best_auc = a, auc
    return float(best), aucs


# -- all attacks for one target --------------------------------------------------------------------


def rmia_signal(sig: Signals, which: str) -> np.ndarray:
    """``log2 P(x|theta)`` for RMIA: per-token geometric mean (``token``) or whole sequence."""
    if which == "token":
        return sig.mean_log2p
    if which == "sequence":
        return sig.loglik_bits
    raise UserError(f"RMIA signal must be token or sequence, got {which!r}.")


def attack_target(
    target: Signals,
    target_z: Signals,
    refs: Signals,
    refs_z: Signals,
    in_refs: np.ndarray,
    settings: AttackSettings,
    a: float,
) -> dict[str, np.ndarray]:
    """All shadow attacks on one target model: ``{name: scores [n]}`` (higher = member)."""
    phi_t, phi_r = target.lira_phi[0], refs.lira_phi
    kw = {"center": settings.center, "global_variance": settings.global_variance,
          "min_std": settings.min_std}  # fmt: skip
    out = {
        "lira_online": lira_online(phi_t, phi_r, in_refs, **kw),
        "lira_online_fixed_var": lira_online(phi_t, phi_r, in_refs, fixed_variance=True, **kw),
        "lira_offline": lira_offline(phi_t, phi_r, in_refs, test=settings.offline_test, **kw),
        "lira_offline_fixed_var": lira_offline(
            phi_t, phi_r, in_refs, fixed_variance=True, test=settings.offline_test, **kw
        ),
    }
    lp_t, lp_r = (
        rmia_signal(target, settings.rmia_signal)[0],
        rmia_signal(refs, settings.rmia_signal),
    )
    lpz_t = rmia_signal(target_z, settings.rmia_signal)[0]
    lpz_r = rmia_signal(refs_z, settings.rmia_signal)
    common = settings.rmia_options()
    out["rmia_online"] = rmia(
        lp_t, lp_r, in_refs, lpz_t, lpz_r, online_pz=settings.online_pz, **common
    )
    out["rmia_offline"] = rmia(lp_t, lp_r, in_refs, lpz_t, lpz_r, offline=True, a=a, **common)
    return out
