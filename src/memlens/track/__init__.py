"""Training dynamics: which examples a model memorizes, and when, while it trains; and grokking.

Definitions and references: Concepts §10 (docs/concepts.md).

* :mod:`.tracker`: :class:`Tracker` scores a fixed set of examples (:class:`TrackSet`) at the
  steps of a :class:`Schedule` through the shared scoring pass; :mod:`.observations` stores them;
  :mod:`.analysis` and :mod:`.plots` read them.
* :mod:`.trainer`: :func:`trainer_callback` drives a tracker from a Hugging Face ``Trainer``.
* Recipes (``run(config, out, *, progress=None) -> RunResult``): :func:`run_quick` (the built-in
  synthetic experiment, :mod:`.recipe`), :func:`run_text` (a Hugging Face model fine-tuned on the
  user's texts, :mod:`.text`), :func:`run_grok` (modular addition, memorization then
  generalization, :mod:`.grok`); typed results in :mod:`.summary`.
"""

from memlens.track.analysis import (
    analyze,
    first_true_step,
    forgetting_events,
    memorized_matrix,
    reanalyze,
)
from memlens.track.examples import TrackSet, tfidf_rarity_tokens
from memlens.track.grok import GrokConfig
from memlens.track.grok import run as run_grok
from memlens.track.observations import CRITERIA, Observations, load_observations
from memlens.track.recipe import QuickConfig, epoch_batch, quick_data
from memlens.track.recipe import run as run_quick
from memlens.track.schedules import Schedule
from memlens.track.summary import GrokSummary, GroupStats, TrackSummary
from memlens.track.text import TextTrackConfig
from memlens.track.text import run as run_text
from memlens.track.tracker import Tracker
from memlens.track.trainer import trainer_callback

__all__ = [
    "CRITERIA",
    "GrokConfig",
    "GrokSummary",
    "GroupStats",
    "Observations",
    "QuickConfig",
    "Schedule",
    "TextTrackConfig",
    "TrackSummary",
    "TrackSet",
    "Tracker",
    "analyze",
    "epoch_batch",
    "first_true_step",
    "forgetting_events",
    "load_observations",
    "memorized_matrix",
    "quick_data",
    "reanalyze",
    "run_grok",
    "run_quick",
    "run_text",
    "tfidf_rarity_tokens",
    "trainer_callback",
]
