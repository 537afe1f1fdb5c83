"""The one training loop of memlens, its schedules, and the fused output layer.

See :mod:`.loop`. Everything memlens trains (capacity sweeps, laws experiments, tracked runs,
grokking, memorization sinks, shadow models) goes through :func:`train`; a user's own Hugging Face
``Trainer`` is observed through :func:`memlens.track.trainer_callback` instead.
"""

from memlens.training.devices import pick_device, set_threads, threads
from memlens.training.fused import linear_cross_entropy
from memlens.training.loop import (
    ModelCurve,
    TrainConfig,
    TrainResult,
    evaluate_memorization,
    train_to_saturation,
)

__all__ = [
    "ModelCurve",
    "TrainConfig",
    "TrainResult",
    "evaluate_memorization",
    "linear_cross_entropy",
    "pick_device",
    "set_threads",
    "threads",
    "train_to_saturation",
]
