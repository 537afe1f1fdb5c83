"""The capacity lab: how many bits can a GPT of a given shape store?

Morris et al. 2025, "How much do language models memorize?" (arXiv:2505.24832), §3-4, on uniform
random tokens. :func:`run` is the recipe (the experiment as the paper describes it); the building
blocks are the config (:mod:`.config`), the alpha fit (:mod:`.fit`) and the outputs
(:mod:`.outputs`).
"""

from memlens.capacity.config import (
    PRESETS,
    CapacityConfig,
    Shape,
    TrainSettings,
    load_config,
)
from memlens.capacity.fit import fit_alpha, summarize
from memlens.capacity.recipe import run, train_shape

__all__ = [
    "PRESETS",
    "CapacityConfig",
    "Shape",
    "TrainSettings",
    "fit_alpha",
    "load_config",
    "run",
    "summarize",
    "train_shape",
]
