"""Membership inference on causal LMs: ``memlens mia`` and ``memlens mia metrics``.

* :mod:`memlens.mia.attacks`: the attack registry (loss, zlib, zlib_mimir, ref, min_k, min_k_pp,
  lowercase, gradnorm, gradnorm_mimir), each a function of one shared scoring pass.
* :mod:`memlens.mia.metrics`: ROC-AUC with a bootstrap interval, TPR at FPR <= alpha, the
  best-threshold F1, one NaN policy for all attacks.
* :mod:`memlens.mia.samples`: members and non-members from files or one labelled table.
* :mod:`memlens.mia.config`, :mod:`memlens.mia.summary`: the settings and the typed ``mia.json``.
* :mod:`memlens.mia.recipe`: :func:`run` (score, attack, evaluate, write the run directory) and
  :func:`run_metrics` (the metrics of score columns computed elsewhere);
  :mod:`memlens.mia.plots`: the log-log ROC curves.
"""

from memlens.mia.attacks import ATTACKS, AttackInputs, compute_attacks, parse_attacks
from memlens.mia.config import MIAConfig, MIAMetricsConfig
from memlens.mia.metrics import evaluate, evaluate_attacks, roc_auc, tpr_at_fpr
from memlens.mia.plots import plot_roc
from memlens.mia.recipe import SampleScores, run, run_metrics, score_samples
from memlens.mia.samples import MIASamples, load_samples
from memlens.mia.summary import MIAMetricsSummary, MIASummary

__all__ = [
    "ATTACKS",
    "AttackInputs",
    "MIAConfig",
    "MIAMetricsConfig",
    "MIAMetricsSummary",
    "MIASamples",
    "MIASummary",
    "SampleScores",
    "compute_attacks",
    "evaluate",
    "evaluate_attacks",
    "load_samples",
    "parse_attacks",
    "plot_roc",
    "roc_auc",
    "run",
    "run_metrics",
    "score_samples",
    "tpr_at_fpr",
]
