"""Training K same-shaped GPTs at once, to saturation of memorized bits.

Each of the K models in a :class:`~memlens.models.gpt.GPT` stack trains on its own dataset (the
datasets may differ in size) through the one training loop (:func:`memlens.training.train`).
Every ``eval_every`` steps every model is scored on its whole training set through the shared
scoring engine (:mod:`memlens.scoring`) and its memorization curve recorded. A model is
*saturated* when its memorized bits grew by less than ``plateau_tol`` (default 1%) over the last
``plateau_frac`` (default 20%) of its steps (Morris et al. 2025, arXiv:2505.24832, train "to
saturation"; every capacity is a lower bound, so we say whether the plateau was reached).

Schedule (``wsd``, :class:`memlens.training.schedules.WarmupStableDecay`, with an honest plateau
check at the end):

1. *stable*: linear warm-up, then a constant learning rate until ``1 - decay_frac - plateau_frac``
   of the budget is used, or earlier if every curve is flat (grew < ``plateau_tol / 4`` over the
   last half of the steps);
2. *decay*: linear decay to ``final_lr_frac * lr`` over a further ``decay_frac`` share;
3. *hold*: training continues at the final learning rate for the last ``plateau_frac`` share of
   the steps. A model is *saturated* when its memorized bits grew by less than ``plateau_tol``
   over those last steps: the criterion, measured while still training.

Without a decay (``decay_frac = 0``) training stops as soon as every model is saturated. A run
stopped by its wall-clock budget (``time_budget_s``) is never called saturated:
:attr:`TrainResult.stopped_by` says ``"time_budget"``.

Recipe (chosen by measurement on two CPU cores, see README "The recipe, and the evidence for
it"): Adam (β = 0.9, 0.98, no weight decay, no dropout) at a high peak learning rate after a
warm-up, mini-batches drawn as per-model random permutations (every sequence once per epoch),
all dataset sizes of one shape trained as one batched stack of models, and the output layer
fused with its cross-entropy (:mod:`memlens.training.fused`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from memlens.models.gpt import GPT
from memlens.progress import ProgressFn, emit
from memlens.scoring.core import gpt_forward, memorized_bits, score_tokens
from memlens.training.loop import StepInfo, TrainConfig, every, next_token_loss, train
from memlens.training.schedules import WarmupStableDecay


class SaturationConfig(TrainConfig):
    """:class:`TrainConfig` plus when to measure and when to call a model saturated.

    Attributes
    ----------
    min_steps: never stop before this many steps.
    eval_every: steps between memorization measurements.
    plateau_frac, plateau_tol: saturated when memorized bits grew < ``plateau_tol`` (relative)
        over the last ``plateau_frac`` of the steps; with a ``wsd`` decay the learning rate is held
        at its final value over that share.
    """

    what: ClassVar[str] = "training config"

    schedule: Literal["constant", "wsd", "cosine"] = "wsd"
    max_steps: int = Field(default=20_000, ge=1)
    warmup_steps: int = Field(default=100, ge=0)
    decay_frac: float = Field(default=0.0, ge=0, lt=0.8)
    min_steps: int = Field(default=500, ge=1)
    eval_every: int = Field(default=250, ge=1)
    plateau_frac: float = Field(default=0.2, gt=0, lt=1)
    plateau_tol: float = Field(default=0.01, gt=0)


@dataclass
class ModelCurve:
    """The memorization curve of one model: (step, seconds, memorized bits, mean NLL bits/token)."""

    steps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    memorized_bits: list[float] = field(default_factory=list)
    nll_bits_per_token: list[float] = field(default_factory=list)

    def saturated(self, frac: float, tol: float) -> bool:
        """Memorized bits grew < ``tol`` (relative) over the last ``frac`` of the steps."""
        if len(self.steps) < 3 or self.memorized_bits[-1] <= 0:
            return False
        last = self.steps[-1]
        ref_step = last * (1.0 - frac)
        # the latest measurement at or before (1 - frac) * last
        earlier = [b for s, b in zip(self.steps, self.memorized_bits, strict=True) if s <= ref_step]
        if not earlier:
            return False
        return (self.memorized_bits[-1] - earlier[-1]) < tol * self.memorized_bits[-1]


@dataclass
class TrainResult:
    """What :func:`train_to_saturation` returns.

    ``stopped_by`` is ``"steps"`` (the budget ran out), ``"saturated"`` (every model plateaued,
    constant schedule only) or ``"time_budget"`` (the wall-clock budget stopped the run; then no
    model is called saturated).
    """

    steps: int
    seconds: float
    curves: list[ModelCurve]
    saturated: list[bool]
    final_memorized_bits: list[float]
    final_nll_bits: list[np.ndarray]
    stopped_by: Literal["steps", "saturated", "time_budget"] = "steps"


class PermutationBatches:
    """Per-model random permutations over datasets of different sizes (every sequence once per
    epoch of its own dataset)."""

    def __init__(self, sizes: list[int], batch_size: int, generator: torch.Generator) -> None:
        self.sizes = sizes
        self.batch = batch_size
        self.g = generator
        self.perms = [torch.randperm(n, generator=generator) for n in sizes]
        self.ptr = [0] * len(sizes)

    def next(self) -> Tensor:
        """Row indices ``[K, batch_size]``."""
        rows = []
        for k, n in enumerate(self.sizes):
            need, parts = self.batch, []
            while need > 0:
                if self.ptr[k] >= n:
                    self.perms[k] = torch.randperm(n, generator=self.g)
                    self.ptr[k] = 0
                take = min(need, n - self.ptr[k])
                parts.append(self.perms[k][self.ptr[k] : self.ptr[k] + take])
                self.ptr[k] += take
                need -= take
            rows.append(torch.cat(parts))
        return torch.stack(rows)  # [K, B]


def evaluate_memorization(
    model: GPT,
    data: Tensor,
    sizes: list[int],
    entropy_bits: float | np.ndarray,
    first_token_bits: float,
    batch_size: int = 256,
    autocast_dtype: torch.dtype | None = None,
    lengths: Tensor | np.ndarray | None = None,
) -> tuple[list[float], list[np.ndarray]]:
    """Memorized bits of each model on its own training set, via the shared scoring pass.

    ``data`` is ``[K, N_max, S]`` (model k uses its first ``sizes[k]`` rows); ``entropy_bits``
    is ``H(x)`` per sequence under the true source (a scalar for uniform data, or ``[K, N_max]``).
    ``lengths`` (``[K, N_max]``, optional): the real tokens of each row; the code length counts
    only predicted tokens inside a row (the padding beyond is not charged).
    Returns per-model total memorized bits ``sum_x max(0, H(x) - NLL_bits(x))`` and per-model
    per-sequence code lengths ``NLL_bits(x)`` (first token charged ``first_token_bits``).
    """
    was_training = model.training
    model.eval()
    n_max = max(sizes)
    scores = score_tokens(
        gpt_forward(model), data[:, :n_max], batch_size=batch_size, autocast_dtype=autocast_dtype
    )
    model.train(was_training)
    if lengths is None:
        nll = scores.nll_bits + first_token_bits  # [K, N_max]
    else:  # per-model lengths: mask the predicted tokens t = 1..S-1 with t < length
        L = np.asarray(torch.as_tensor(lengths).cpu())[:, :n_max, None]
        real = np.arange(1, data.shape[-1]) < L  # [K, N_max, S-1]
        nll = -np.where(real, scores.log2p, 0.0).sum(-1) + first_token_bits
    H = np.broadcast_to(np.asarray(entropy_bits, dtype=np.float64), nll.shape)
    totals, per_seq = [], []
    for k, n in enumerate(sizes):
        per_seq.append(nll[k, :n].copy())
        totals.append(float(memorized_bits(H[k, :n], nll[k, :n]).sum()))
    return totals, per_seq


def train_to_saturation(
    model: GPT,
    data: Tensor,
    sizes: list[int],
    config: SaturationConfig,
    *,
    entropy_bits: float | np.ndarray,
    first_token_bits: float,
    seed: int = 0,
    device: torch.device | None = None,
    callbacks: list[Callable[[GPT, int], None]] | None = None,
    progress: ProgressFn | None = None,
    task: str = "training",
    time_budget_s: float | None = None,
    lengths: Tensor | np.ndarray | None = None,
) -> TrainResult:
    """Train the K models of ``model`` on their datasets until every one is saturated.

    Parameters
    ----------
    model: a :class:`GPT` stack with ``K = len(sizes)`` models.
    data: ``[K, N_max, S]`` token ids; model k trains on ``data[k, :sizes[k]]``.
    sizes: dataset size (sequences) per model.
    config: optimization and stopping settings.
    entropy_bits: ``H(x)`` per sequence (scalar or ``[K, N_max]``), in bits.
    first_token_bits: bits charged for each sequence's first token (``log2 V`` for uniform data).
    seed: seeds the mini-batch permutations.
    callbacks: called as ``cb(model, step)`` after every evaluation (e.g. a tracker's).
    progress: receives a :class:`~memlens.progress.ProgressEvent` for ``task`` after every
        evaluation (steps done of the budget; note: the best memorized bits per parameter).
    time_budget_s: optional wall-clock cap; a run it stops is not saturated.
    lengths: optional ``[K, N_max]`` real tokens of each row of ``data`` (right padding beyond,
        e.g. texts of different lengths): the loss averages over real next-token targets only
        (:func:`~memlens.training.loop.next_token_loss`) and the memorization measurements
        charge only real tokens. Without it every position counts (fixed-length data).

    Returns
    -------
    TrainResult with each model's memorization curve and saturation flag.
    """
    K = model.n_models
    if len(sizes) != K or data.shape[0] != K:
        raise ValueError("need one dataset size and one data slab per model")
    device = device or next(model.parameters()).device
    data = data.to(device)
    batches = PermutationBatches(
        list(sizes), config.batch_size, torch.Generator().manual_seed(seed)
    )
    model_index = torch.arange(K, device=device).view(K, 1)
    optimizer = config.make_optimizer(model.parameters())
    schedule = config.make_schedule(hold_frac=config.plateau_frac)
    decays = isinstance(schedule, WarmupStableDecay) and schedule.decays
    autocast = config.autocast_dtype
    params = model.num_parameters_per_model()
    curves = [ModelCurve() for _ in range(K)]
    per_seq: list[np.ndarray] = []
    stopped_by = "steps"
    start = time.perf_counter()

    if lengths is not None:
        lengths = torch.as_tensor(np.asarray(lengths), dtype=torch.long).to(device)
        if lengths.shape != data.shape[:2]:
            raise ValueError("need lengths [K, N_max] like the first two axes of data")
        n_tokens = [int(lengths[k, :n].sum()) for k, n in enumerate(sizes)]
    else:
        n_tokens = [n * data.shape[-1] for n in sizes]

    def batch_at(step: int) -> Tensor | tuple[Tensor, Tensor]:
        idx = batches.next().to(device)
        if lengths is None:
            return data[model_index, idx]  # [K, B, S]
        return data[model_index, idx], lengths[model_index, idx]  # [K, B, S], [K, B]

    def loss_of(m: GPT, batch: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        if lengths is None:
            return next_token_loss(m, batch, autocast)
        tokens, rows_len = batch
        return next_token_loss(m, tokens, autocast, lengths=rows_len)

    def measure(info: StepInfo) -> bool:
        nonlocal per_seq, stopped_by
        totals, per_seq = evaluate_memorization(
            model, data, sizes, entropy_bits, first_token_bits, autocast_dtype=autocast,
            lengths=lengths,
        )  # fmt: skip
        elapsed = time.perf_counter() - start
        for k, c in enumerate(curves):
            c.steps.append(info.step)
            c.seconds.append(elapsed)
            c.memorized_bits.append(totals[k])
            c.nll_bits_per_token.append(float(per_seq[k].sum() / n_tokens[k]))
        for cb in callbacks or []:
            cb(model, info.step)
        emit(
            progress, task, info.step, schedule.total, f"best {max(totals) / params:.2f} bits/param"
        )
        saturated = [
            info.step >= config.min_steps and c.saturated(config.plateau_frac, config.plateau_tol)
            for c in curves
        ]
        if decays:
            # A constant-LR curve is too noisy to call a plateau early (measured: it stopped a
            # quick-preset shape at 2.6 bits/param); decay early only on a strict plateau. With a
            # decay, saturation is judged at the end only.
            strict = [
                info.step >= config.min_steps and c.saturated(0.5, config.plateau_tol / 4)
                for c in curves
            ]
            if info.step < schedule.stable_end and all(strict):
                schedule.end_stable(info.step)  # the constant-LR phase has plateaued: decay now
        elif all(saturated):
            stopped_by = "saturated"
            return True
        if time_budget_s is not None and elapsed > time_budget_s and not info.last:
            stopped_by = "time_budget"
            return True
        return False

    steps = train(
        model,
        config,
        batch_at,
        loss_of,
        optimizer=optimizer,
        schedule=schedule,
        observers=[every(config.eval_every, measure)],
        check_every=config.eval_every,
    )
    seconds = time.perf_counter() - start
    if stopped_by == "time_budget":
        saturated = [False] * K
    else:
        saturated = [c.saturated(config.plateau_frac, config.plateau_tol) for c in curves]
    return TrainResult(
        steps=steps,
        seconds=seconds,
        curves=curves,
        saturated=saturated,
        final_memorized_bits=[c.memorized_bits[-1] if c.memorized_bits else 0.0 for c in curves],
        final_nll_bits=per_seq,
        stopped_by=stopped_by,
    )
