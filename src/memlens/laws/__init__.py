"""Sizing laws of memorization (Morris et al. 2025, "How much do language models memorize?").

* :mod:`.formulas`: capacity ratio, regimes and the membership-inference scaling law (corrected).
* :mod:`.size`: ``memlens size``, parameter counts from a Hugging Face ``config.json``.
* :mod:`.fit`: fitting the scaling law to measured F1 (``memlens laws fit-mia``).
* :mod:`.mia_experiment`, :mod:`.double_descent`: the two experiments behind the laws, with their
  configs in :mod:`.settings`; typed results in :mod:`.summaries`.

Recipes (``run(config, out, *, progress=None, ...) -> RunResult``): :func:`run_size`,
:func:`run_fit_mia`, :func:`run_mia_experiment`, :func:`run_double_descent`.
"""

from memlens.laws.double_descent import describe_peak, plot_double_descent
from memlens.laws.double_descent import run as run_double_descent
from memlens.laws.fit import (
    FitMiaConfig,
    MiaFit,
    fit_mia_law,
    fit_mia_table,
    plot_mia_fit,
    read_mia_table,
)
from memlens.laws.fit import run as run_fit_mia
from memlens.laws.formulas import (
    CORRECTED,
    LAW_FORM,
    LAW_NOTE,
    PRINTED,
    PUBLISHED_VALIDATION,
    REGIME_DOC,
    REGIME_THRESHOLDS,
    MiaLawConstants,
    bits_per_sequence,
    capacity_ratio,
    dataset_bits,
    max_params_for_f1,
    mia_f1,
    mia_f1_ceiling,
    mia_f1_printed,
    min_sequences_for_f1,
    ratio_for_f1,
    regime,
)
from memlens.laws.mia_experiment import plot_mia_experiment
from memlens.laws.mia_experiment import run as run_mia_experiment
from memlens.laws.settings import (
    DoubleDescentConfig,
    MiaExperimentConfig,
    double_descent_config,
    mia_config,
)
from memlens.laws.size import (
    SUPPORTED_MODEL_TYPES,
    SizeConfig,
    load_config_file,
    params_from_hf_config,
    size,
)
from memlens.laws.size import run as run_size
from memlens.laws.summaries import (
    DoubleDescentSummary,
    FitMiaSummary,
    MiaExperimentSummary,
    SizeReport,
)
from memlens.units import PUBLISHED_ALPHA, capacity_bits

__all__ = [
    "CORRECTED",
    "DoubleDescentConfig",
    "DoubleDescentSummary",
    "FitMiaConfig",
    "FitMiaSummary",
    "LAW_FORM",
    "LAW_NOTE",
    "MiaExperimentConfig",
    "MiaExperimentSummary",
    "MiaFit",
    "MiaLawConstants",
    "PRINTED",
    "PUBLISHED_ALPHA",
    "PUBLISHED_VALIDATION",
    "REGIME_DOC",
    "REGIME_THRESHOLDS",
    "SUPPORTED_MODEL_TYPES",
    "SizeConfig",
    "SizeReport",
    "bits_per_sequence",
    "capacity_bits",
    "capacity_ratio",
    "dataset_bits",
    "describe_peak",
    "double_descent_config",
    "fit_mia_law",
    "fit_mia_table",
    "load_config_file",
    "max_params_for_f1",
    "mia_config",
    "mia_f1",
    "mia_f1_ceiling",
    "mia_f1_printed",
    "min_sequences_for_f1",
    "params_from_hf_config",
    "plot_double_descent",
    "plot_mia_experiment",
    "plot_mia_fit",
    "ratio_for_f1",
    "read_mia_table",
    "regime",
    "run_double_descent",
    "run_fit_mia",
    "run_mia_experiment",
    "run_size",
    "size",
]
