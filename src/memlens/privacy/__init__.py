"""Privacy auditing: an ε lower bound from one training run, canary exposure, DP-SGD training.

One entry point, :func:`run` (``memlens dp-audit``): a :class:`DPAuditConfig` in, a
:class:`DPAuditResult` out (its ``summary`` is the typed ``dp_audit.json``,
:class:`DPAuditSummary`).

* :mod:`memlens.privacy.bound`: the one-run lower bound of Steinke, Nasr & Jagielski 2023
  (Appendix D), the ceiling, and honest choices of the guess counts k₊, k₋.
* :mod:`memlens.privacy.exposure`: rank and skew-normal extrapolated exposure (Carlini et al. 2019).
* :mod:`memlens.privacy.canaries`: random token-string canaries, each inserted with probability ½.
* :mod:`memlens.privacy.dp`: DP-SGD through Opacus for memlens GPTs and Hugging Face causal LMs
  (imports torch).
* :mod:`memlens.privacy.config`, :mod:`memlens.privacy.summary`: the settings and the typed JSON.
* :mod:`memlens.privacy.data`: vocabulary, training rows and canaries of an audit;
  :mod:`memlens.privacy.arms`: one model trained, scored and audited per target ε;
  :mod:`memlens.privacy.outputs`: the tables and the plot; :mod:`memlens.privacy.recipe`: ``run``.

Example
-------
>>> from memlens.privacy import one_run_bound
>>> round(one_run_bound(1000, 1000, 900, delta=1e-5).epsilon_lower_bound, 2)
2.02
"""

from memlens.privacy.bound import (
    CanaryAudit,
    OneRunBound,
    audit_scores,
    ceiling,
    epsilon_lower_bound,
    one_run_bound,
    p_value,
)
from memlens.privacy.canaries import Canaries, include_with_half, random_canaries
from memlens.privacy.config import DPAuditConfig
from memlens.privacy.exposure import extrapolated_exposure, fit_skew_normal, rank_exposure
from memlens.privacy.recipe import DPAuditResult, run
from memlens.privacy.summary import ArmSummary, DPAuditSummary

__all__ = [
    "ArmSummary",
    "CanaryAudit",
    "Canaries",
    "DPAuditConfig",
    "DPAuditResult",
    "DPAuditSummary",
    "OneRunBound",
    "audit_scores",
    "ceiling",
    "epsilon_lower_bound",
    "extrapolated_exposure",
    "fit_skew_normal",
    "include_with_half",
    "one_run_bound",
    "p_value",
    "random_canaries",
    "rank_exposure",
    "run",
]
