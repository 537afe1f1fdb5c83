"""The one training loop of memlens.

Everything memlens trains goes through :func:`train`: the capacity lab and the laws experiments
(K stacked GPTs, :mod:`memlens.training.saturation`), the tracked quick run
(:mod:`memlens.track.recipe`), grokking (:mod:`memlens.track.grok`), memorization sinks
(:mod:`memlens.sinks.train`) and DP-SGD (:func:`memlens.privacy.dp.train_rows`). What differs
between them is passed in:

* ``batch_at(step)``: the batch of optimizer step ``step`` (any object ``loss_of`` understands);
* ``loss_of(model, batch)``: a scalar loss tensor (e.g. :func:`next_token_loss`);
* a :class:`TrainConfig`: AdamW settings, the named learning-rate schedule
  (:mod:`memlens.training.schedules`), the step budget and gradient clipping;
* observers, called after every step with a :class:`StepInfo` (they evaluate, record, report
  progress; one returning ``True`` stops training), and a ``checkpoint(step)`` hook, called every
  ``checkpoint_every`` steps, at the end and when the run is interrupted (Ctrl-C), so a rerun
  resumes from ``start_step``.

One step is: batch, learning rate, loss, ``zero_grad``, backward, optional clip, optimizer step.
A ``backward(model, batch)`` hook may replace "loss, backward" when the gradients are not those of
one scalar loss: DP-SGD (:func:`memlens.privacy.dp.train_rows`) fills Opacus's per-sample
gradients there and its ``DPOptimizer`` clips, noises and steps.
A user's own Hugging Face ``Trainer`` is observed with :func:`memlens.track.trainer_callback`
instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from memlens.config import Config
from memlens.errors import UserError
from memlens.training.fused import linear_cross_entropy
from memlens.training.schedules import Schedule, make_schedule


class TrainConfig(Config):
    """Optimization settings of :func:`train`: AdamW, a named schedule, a budget, a clip.

    Attributes
    ----------
    schedule: ``constant``, ``wsd`` (warm-up, stable, linear decay over ``decay_frac`` of the
        steps to ``final_lr_frac * lr``) or ``cosine`` (to ``final_lr_frac * lr``); every
        schedule starts with ``warmup_steps`` of linear warm-up (:mod:`.schedules`).
    lr: peak learning rate.
    max_steps: optimizer steps.
    batch_size: sequences per model per step.
    beta1, beta2, eps: Adam's settings.
    weight_decay: decoupled weight decay (AdamW, Loshchilov & Hutter 2019); 0 is plain Adam.
    grad_clip: gradient-norm clip, per model of a K-model stack (0 disables).
    precision: ``fp32``, or ``bf16`` (the model body autocast to bfloat16; the fused output
        layer and the optimizer state stay in fp32).
    """

    what: ClassVar[str] = "training config"

    schedule: Literal["constant", "wsd", "cosine"] = "constant"
    lr: float = Field(default=3e-3, gt=0)
    max_steps: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=64, ge=1)
    warmup_steps: int = Field(default=0, ge=0)
    decay_frac: float = Field(default=0.0, ge=0, lt=1)
    final_lr_frac: float = Field(default=0.1, ge=0, le=1)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.98, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float = Field(default=0.0, ge=0)
    precision: Literal["fp32", "bf16"] = "fp32"

    def make_schedule(self, hold_frac: float = 0.0) -> Schedule:
        """This config's learning-rate schedule over ``max_steps``."""
        return make_schedule(
            self.schedule, self.lr, self.max_steps, self.warmup_steps,
            decay_frac=self.decay_frac, final_lr_frac=self.final_lr_frac, hold_frac=hold_frac,
        )  # fmt: skip

    def make_optimizer(self, params: Iterable[Any]) -> torch.optim.Optimizer:
        """AdamW over ``params`` (tensors, or param groups with their own ``weight_decay``)."""
        return torch.optim.AdamW(
            params,
            lr=self.lr,
            betas=(self.beta1, self.beta2),
            eps=self.eps,
            weight_decay=self.weight_decay,
            foreach=True,
        )

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None


@dataclass
class StepInfo:
    """What an observer sees after an optimizer step."""

    step: int  # optimizer steps done
    total: int  # the current budget (a ``wsd`` schedule may shorten it)
    loss: Tensor | None  # this step's loss (``.item()`` synchronizes); None: a batch without rows

    @property
    def last(self) -> bool:
        return self.step >= self.total


Observer = Callable[[StepInfo], bool | None]


def every(n: int, fn: Observer, *, at_end: bool = True) -> Observer:
    """An observer calling ``fn`` every ``n`` steps (and at the last step when ``at_end``)."""

    def observe(info: StepInfo) -> bool | None:
        if info.step % n == 0 or (at_end and info.last):
            return fn(info)
        return None

    return observe


def train(
    model: nn.Module,
    config: TrainConfig,
    batch_at: Callable[[int], Any],
    loss_of: Callable[[nn.Module, Any], Tensor],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    schedule: Schedule | None = None,
    start_step: int = 0,
    observers: Sequence[Observer] = (),
    check_every: int = 1,
    checkpoint: Callable[[int], None] | None = None,
    checkpoint_every: int = 0,
    backward: Callable[[nn.Module, Any], Tensor | None] | None = None,
) -> int:
    """Train ``model`` from ``start_step`` until the schedule's budget or an observer stops it.

    Parameters
    ----------
    model: any module (a memlens GPT stack, an MLP, ...).
    config: optimizer, schedule, budget and clip settings.
    batch_at: ``batch_at(step)`` returns the batch of optimizer step ``step`` (0-based).
    loss_of: ``loss_of(model, batch)`` returns the scalar loss to minimize.
    optimizer: default ``config.make_optimizer(model.parameters())``; pass one to use parameter
        groups or a state loaded from a checkpoint.
    schedule: default ``config.make_schedule()``.
    start_step: steps already done (resuming).
    observers: called after every step; any returning ``True`` stops training after that step.
    check_every: check the loss is finite every this many steps (and at the last one).
    checkpoint: ``checkpoint(step)`` saves what a rerun needs; called every ``checkpoint_every``
        steps (0: never), when the budget is done or an observer stops training, and on Ctrl-C
        (then the interrupt propagates).
    backward: replaces ``loss_of(model, batch).backward()`` (then ``loss_of`` is not called):
        ``backward(model, batch)`` fills the gradients the optimizer reads (after its
        ``zero_grad``) and returns the loss, or ``None`` for a batch without rows (an empty
        Poisson batch: no loss to check, the optimizer still steps).

    Returns
    -------
    The number of optimizer steps done.
    """
    optimizer = optimizer or config.make_optimizer(model.parameters())
    schedule = schedule or config.make_schedule()
    step = start_step
    model.train()
    try:
        while step < schedule.total:
            batch = batch_at(step)
            lr = schedule.lr_at(step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if backward is None:
                loss = loss_of(model, batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            else:
                optimizer.zero_grad(set_to_none=True)
                loss = backward(model, batch)
            if config.grad_clip > 0:
                clip_gradients(model, config.grad_clip)
            optimizer.step()
            step += 1
            info = StepInfo(step, schedule.total, loss)
            checked = step % check_every == 0 or info.last
            if loss is not None and checked and not math.isfinite(loss.item()):
                raise UserError(
                    "training diverged (NaN or infinite loss); lower the learning rate `lr`."
                )
            stop = [bool(observe(info)) for observe in observers]
            if checkpoint is not None and checkpoint_every and step % checkpoint_every == 0:
                checkpoint(step)
            if any(stop):
                break
    except KeyboardInterrupt:
        if checkpoint is not None:
            checkpoint(step)
        raise
    if checkpoint is not None:
        checkpoint(step)
    return step


def next_token_loss(
    model: nn.Module,
    tokens: Tensor,
    autocast: torch.dtype | None = None,
    lengths: Tensor | None = None,
) -> Tensor:
    """Sum over the K models of a GPT stack of each one's mean next-token cross-entropy (nats).

    ``tokens`` is ``[K, B, S]``. The output layer and the loss are fused
    (:func:`memlens.training.fused.linear_cross_entropy`): the ``[K, B*(S-1), V]`` logits are never
    materialized. With ``autocast`` (``torch.bfloat16``) the model body runs in that dtype.

    ``lengths`` (``[K, B]``, optional): the real tokens of each row, right padding beyond. Then
    only targets inside a row count (position ``t`` predicts token ``t + 1`` only while
    ``t + 1 < length``), and each model's loss is the mean over its real targets in the batch:
    the padding is not trained on. Without it every position counts (data of fixed length).
    """
    K = tokens.shape[0]
    if autocast is not None:
        with torch.autocast(device_type=tokens.device.type, dtype=autocast):
            hidden = model.hidden(tokens[..., :-1])
    else:
        hidden = model.hidden(tokens[..., :-1])
    mask = None
    if lengths is not None:
        targets_at = torch.arange(1, tokens.shape[-1], device=tokens.device)
        mask = (targets_at < lengths.to(tokens.device).unsqueeze(-1)).reshape(K, -1)
    return linear_cross_entropy(hidden, model.wte, tokens[..., 1:].reshape(K, -1), mask=mask)


@torch.no_grad()
def clip_gradients(model: nn.Module, max_norm: float) -> None:
    """Clip the gradient norm to ``max_norm``: of each model of a K-model stack separately (models
    share no parameter, so each is clipped as if trained alone), or of the whole ``model``."""
    params = [p for p in model.parameters() if p.grad is not None]
    K = getattr(model, "n_models", 1)
    if K == 1:
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        return
    sq = torch.zeros(K, device=params[0].device)
    for p in params:
        sq += p.grad.reshape(K, -1).float().square().sum(1)
    scale = (max_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(K, *([1] * (p.dim() - 1))).to(p.grad.dtype))


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: Any, step: int) -> None:
    """Save model, optimizer and step atomically (read back with :func:`load_checkpoint`)."""
    from memlens.store import atomic_path

    with atomic_path(path) as tmp:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}
        torch.save(state, tmp)


def load_checkpoint(path: str | Path, model: nn.Module, optimizer: Any) -> int:
    """Restore a :func:`save_checkpoint` into ``model`` and ``optimizer``; return its step (0 when
    there is no checkpoint). Loaded with ``weights_only=True``: nothing is unpickled."""
    path = Path(path)
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])
