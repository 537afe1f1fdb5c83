"""Memorization sinks (Ghosal, Maini & Raghunathan, ICML 2025, arXiv:2507.09937).

Train so that sequence-specific memorization lands in MLP units that can be dropped at inference:

* :mod:`memlens.sinks.masks`: the per-sequence masks (general units always on, a sink pool masked
  by a hash of the sequence's tokens) and the inference modes;
* :mod:`memlens.sinks.hf`: the same masks patched into Hugging Face GPT-2 and LLaMA-style MLPs;
* :mod:`memlens.sinks.train`: training with sequence IDs flowing with the batch, packed rows with
  document attention masks, and the masked forward used for scoring;
* :mod:`memlens.sinks.localize`: per-neuron attribution and top-k vs random-k ablation;
* :mod:`memlens.sinks.recipe`: :func:`run`, standard vs deduplicated vs MemSinks training at equal
  compute (``memlens sinks``), with its config (:mod:`.config`), data (:mod:`.data`), evaluation
  (:mod:`.evaluation`), typed result (:mod:`.summary`) and plots (:mod:`.plots`).
"""

from memlens.sinks.config import PRESETS, SinksConfig, get_preset, with_overrides
from memlens.sinks.hf import SinkPatch, find_down_projections
from memlens.sinks.masks import (
    MODES,
    SinkConfig,
    batch_masks,
    mode_mask,
    own_masks,
    sequence_id,
    sequence_ids,
    sink_subsets,
)
from memlens.sinks.recipe import ARMS, run
from memlens.sinks.summary import SinksSummary
from memlens.sinks.train import (
    PackedRows,
    SinkTrainConfig,
    masked_forward,
    pack_documents,
    rows_of_equal_docs,
    train_model,
)

__all__ = [
    "ARMS",
    "MODES",
    "PRESETS",
    "PackedRows",
    "SinkConfig",
    "SinkPatch",
    "SinkTrainConfig",
    "SinksConfig",
    "SinksSummary",
    "batch_masks",
    "find_down_projections",
    "get_preset",
    "masked_forward",
    "mode_mask",
    "own_masks",
    "pack_documents",
    "rows_of_equal_docs",
    "run",
    "sequence_id",
    "sequence_ids",
    "sink_subsets",
    "train_model",
    "with_overrides",
]
