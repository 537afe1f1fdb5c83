"""Learning-rate schedules of the training loop, by name: ``constant``, ``wsd`` and ``cosine``.

Every schedule starts with a linear warm-up, ``lr * (step + 1) / warmup`` for the first ``warmup``
steps (step 0-based), then:

* ``constant``: ``lr`` until the end;
* ``wsd`` (warm-up, stable, decay; the capacity lab's recipe): ``lr`` until ``1 - decay_frac -
  hold_frac`` of the steps, then a linear decay to ``final_lr_frac * lr`` over a further
  ``decay_frac`` share, then a *hold* at that final rate for the last ``hold_frac`` share (where
  the saturation check of :mod:`memlens.training.saturation` measures whether memorization still
  grows). :meth:`WarmupStableDecay.end_stable` ends the stable phase early (when every curve has
  already plateaued) and shortens the run in proportion;
* ``cosine``: a half cosine from ``lr`` down to ``final_lr_frac * lr`` over the steps after the
  warm-up (as in GPT-3 and the MemSinks paper's training).

A schedule is a small object with ``total`` (the step budget, which ``wsd`` may shorten) and
:meth:`Schedule.lr_at`. :func:`make_schedule` builds one by name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from memlens.errors import UserError

SCHEDULES = ("constant", "wsd", "cosine")


@dataclass
class Schedule:
    """Warm-up then a constant learning rate: ``lr`` in ``[0, total)`` after ``warmup`` steps."""

    lr: float
    total: int
    warmup: int = 0

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        return self.after_warmup(step)

    def after_warmup(self, step: int) -> float:
        return self.lr


@dataclass
class WarmupStableDecay(Schedule):
    """Warm-up, a stable phase, a linear decay over ``decay_frac`` and a hold over ``hold_frac``.

    ``decay_frac = 0`` is the constant schedule (and there is no hold).
    """

    decay_frac: float = 0.0
    final_lr_frac: float = 0.1
    hold_frac: float = 0.0

    def __post_init__(self) -> None:
        if self.decay_frac <= 0:
            self.hold_frac = 0.0
        self.stable_frac = 1.0 - self.decay_frac - self.hold_frac
        self.stable_end = int(self.total * self.stable_frac)

    @property
    def decays(self) -> bool:
        return self.decay_frac > 0

    def end_stable(self, at: int) -> None:
        """End the stable phase at step ``at``: decay now, then hold, in the same proportions."""
        self.stable_end = at
        decay_len = int(round(at * self.decay_frac / self.stable_frac))
        self.total = int(round((at + decay_len) / (1.0 - self.hold_frac)))

    def after_warmup(self, step: int) -> float:
        if self.decay_frac <= 0 or step < self.stable_end:
            return self.lr
        decay_len = max(1, int(round(self.stable_end * self.decay_frac / self.stable_frac)))
        t = min(1.0, (step - self.stable_end) / decay_len)
        return self.lr * (1.0 - t * (1.0 - self.final_lr_frac))


@dataclass
class WarmupCosine(Schedule):
    """Warm-up, then a half cosine from ``lr`` to ``final_lr_frac * lr`` at step ``total``."""

    final_lr_frac: float = 0.1

    def after_warmup(self, step: int) -> float:
        t = (step - self.warmup) / max(1, self.total - self.warmup)
        f = self.final_lr_frac
        return self.lr * (f + (1 - f) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


def make_schedule(
    name: str,
    lr: float,
    total: int,
    warmup: int = 0,
    *,
    decay_frac: float = 0.0,
    final_lr_frac: float = 0.1,
    hold_frac: float = 0.0,
) -> Schedule:
    """The schedule called ``name`` (``constant``, ``wsd`` or ``cosine``)."""
    if name == "constant":
        return Schedule(lr, total, warmup)
    if name == "wsd":
        return WarmupStableDecay(lr, total, warmup, decay_frac, final_lr_frac, hold_frac)
    if name == "cosine":
        return WarmupCosine(lr, total, warmup, final_lr_frac)
    raise UserError(f"unknown schedule {name!r}; choose {', '.join(SCHEDULES)}.")
