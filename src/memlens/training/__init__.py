"""The one training loop of memlens, its schedules, and the fused output layer.

* :mod:`.loop`: :func:`train` (batches, loss, AdamW, a named schedule, observers and checkpoints),
  :class:`TrainConfig`, :func:`next_token_loss` for GPT stacks, checkpoints.
* :mod:`.schedules`: ``constant``, ``wsd`` (warm-up, stable, linear decay, hold) and ``cosine``.
* :mod:`.saturation`: :func:`train_to_saturation`, K models at once until memorized bits plateau
  (the capacity lab and the laws experiments).
* :mod:`.fused`: the output layer fused with its cross-entropy; :mod:`.devices`: device and threads.

Everything memlens trains (capacity sweeps, laws experiments, tracked runs, grokking, memorization
sinks, DP-SGD for privacy audits) goes through :func:`train`; a user's own Hugging Face ``Trainer`` is observed through
:func:`memlens.track.trainer_callback` instead.
"""

from memlens.training.devices import pick_device, set_threads, threads
from memlens.training.fused import linear_cross_entropy
from memlens.training.loop import (
    StepInfo,
    TrainConfig,
    clip_gradients,
    every,
    load_checkpoint,
    next_token_loss,
    save_checkpoint,
    train,
)
from memlens.training.saturation import (
    ModelCurve,
    PermutationBatches,
    SaturationConfig,
    TrainResult,
    evaluate_memorization,
    train_to_saturation,
)
from memlens.training.schedules import SCHEDULES, make_schedule

__all__ = [
    "SCHEDULES",
    "ModelCurve",
    "PermutationBatches",
    "SaturationConfig",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "clip_gradients",
    "evaluate_memorization",
    "every",
    "linear_cross_entropy",
    "load_checkpoint",
    "make_schedule",
    "next_token_loss",
    "pick_device",
    "save_checkpoint",
    "set_threads",
    "threads",
    "train",
    "train_to_saturation",
]
