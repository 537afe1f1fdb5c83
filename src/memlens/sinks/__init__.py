"""Memorization sinks (Ghosal, Maini & Raghunathan, ICML 2025, arXiv:2507.09937).

Train so that sequence-specific memorization lands in MLP units that can be dropped at inference:

* :mod:`memlens.sinks.masks`: the per-sequence masks (general units always on, a sink pool masked
  by a hash of the sequence's tokens) and the inference modes;
* :mod:`memlens.sinks.hf`: the same masks patched into Hugging Face GPT-2 and LLaMA-style MLPs;
* :mod:`memlens.sinks.train`: training with sequence IDs flowing with the batch, packed rows with
  document attention masks, and the masked forward used for scoring;
* :mod:`memlens.sinks.localize`: per-neuron attribution and top-k vs random-k ablation;
* :mod:`memlens.sinks.recipe`: standard vs deduplicated vs MemSinks training at equal compute
  (``memlens sinks``).
"""

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
from memlens.sinks.train import (
    PackedRows,
    SinkTrainConfig,
    masked_forward,
    pack_documents,
    rows_of_equal_docs,
    train_model,
)

__all__ = [
    "MODES",
    "PackedRows",
    "SinkConfig",
    "SinkPatch",
    "SinkTrainConfig",
    "batch_masks",
    "find_down_projections",
    "masked_forward",
    "mode_mask",
    "own_masks",
    "pack_documents",
    "rows_of_equal_docs",
    "sequence_id",
    "sequence_ids",
    "sink_subsets",
    "train_model",
]
