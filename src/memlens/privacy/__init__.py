"""Privacy auditing: an ε lower bound from one training run, canary exposure, DP-SGD training.

* :mod:`memlens.privacy.bound`: the one-run lower bound of Steinke, Nasr & Jagielski 2023
  (Appendix D), the ceiling, and honest choices of the guess counts k₊, k₋.
* :mod:`memlens.privacy.exposure`: rank and skew-normal extrapolated exposure (Carlini et al. 2019).
* :mod:`memlens.privacy.canaries`: random token-string canaries, each inserted with probability ½.
* :mod:`memlens.privacy.dp`: DP-SGD through Opacus for memlens GPTs and Hugging Face causal LMs
  (imports torch).
* :mod:`memlens.privacy.recipe`: the whole audit, ``run(config, out)`` (``memlens dp-audit``).

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
from memlens.privacy.exposure import extrapolated_exposure, fit_skew_normal, rank_exposure
from memlens.privacy.recipe import DPAuditConfig, DPAuditResult, make_config, run

__all__ = [
    "CanaryAudit",
    "Canaries",
    "DPAuditConfig",
    "DPAuditResult",
    "OneRunBound",
    "audit_scores",
    "ceiling",
    "epsilon_lower_bound",
    "extrapolated_exposure",
    "fit_skew_normal",
    "include_with_half",
    "make_config",
    "one_run_bound",
    "p_value",
    "random_canaries",
    "rank_exposure",
    "run",
]
