"""The capacity lab: how many bits can a GPT of a given shape store?

Morris et al. 2025, "How much do language models memorize?" (arXiv:2505.24832), §3-4, on uniform
random tokens. :func:`run` is the recipe (the experiment as the paper describes it); the building
blocks are the config (:mod:`.config`), the alpha fit (:mod:`.fit`), the typed result
(:mod:`.summary`) and the outputs (:mod:`.outputs`).
"""

from memlens.capacity.config import (
    PRESETS,
    CapacityConfig,
    Shape,
    TrainSettings,
    load_config,
)
from memlens.capacity.fit import fit_alpha, predicted_bits, summarize
from memlens.capacity.recipe import run, train_shape
from memlens.capacity.summary import CapacityModel, CapacityRun, CapacitySummary

__all__ = [
    "PRESETS",
    "CapacityConfig",
    "CapacityModel",
    "CapacityRun",
    "CapacitySummary",
    "Shape",
    "TrainSettings",
    "fit_alpha",
    "load_config",
    "predicted_bits",
    "run",
    "summarize",
    "train_shape",
]
