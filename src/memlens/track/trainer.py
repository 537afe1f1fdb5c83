"""Driving a :class:`~memlens.track.tracker.Tracker` from a Hugging Face ``transformers.Trainer``
(the user's own training loop stays theirs).
"""

from __future__ import annotations

from typing import Any

from memlens.track.tracker import Tracker


def trainer_callback(tracker: Tracker) -> Any:
    """A ``transformers.TrainerCallback`` that drives ``tracker`` from a Hugging Face ``Trainer``.

    It observes at the start of training (step 0, or the resumed step), after every optimizer
    step that the schedule makes due (``state.global_step``), and once more at the end of
    training; then it flushes the tracker.
    """
    from transformers import TrainerCallback

    class MemlensTrackerCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            tracker.start()
            if model is not None:
                tracker.observe(model, state.global_step)

        def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            if model is not None:
                tracker.observe(model, state.global_step)

        def on_train_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001
            if model is not None:
                tracker.observe(model, state.global_step, force=True)
            tracker.flush()

    return MemlensTrackerCallback()
