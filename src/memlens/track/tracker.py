"""Training dynamics: which examples a model memorizes, and when, while it trains.

A :class:`Tracker` watches a fixed set of examples (training samples in groups such as
``repeated`` and ``unique``, plus ``heldout`` controls the model never sees) during training. At
the steps of a :class:`Schedule` (log-spaced by default) it scores every tracked example through
the shared batched scoring pass (:func:`memlens.scoring.score_tokens`, via
:func:`memlens.scoring.score_sequences`) and appends, per example:

* ``code_bits``: the code length ``NLL_bits(x) = -log2 p(x | model)`` in bits, the first token
  charged ``first_token_bits`` (``log2 V`` for synthetic sources, 0 after a BOS token);
* ``unintended_bits``: ``max(0, NLL_bits(x | R) - NLL_bits(x | T))`` against a reference R, the
  maximum taken over whole-sequence code lengths (Morris et al. 2025, "How much do language models
  memorize?", arXiv:2505.24832). For synthetic data R is the true source (exact entropy); for text
  it is a reference model, or absent;
* ``extracted``: greedy k-extraction (Carlini et al. 2023, "Quantifying memorization across neural
  language models"): decoding greedily from the first ``prefix`` tokens reproduces the next
  ``suffix`` tokens exactly, read off the same teacher-forced pass under the eligibility rule of
  :mod:`memlens.scoring.extraction` (:func:`~memlens.scoring.teacher_forced_extraction`).
  ``suffix_top1`` is the fraction of suffix tokens that are the argmax given the true prefix; it
  is not Pythia's match fraction (which decodes past the first mismatch).

Cost is bounded by construction: an observation is one forward pass over ``N`` tracked examples
(no backward), and a log schedule with ``d`` points per decade makes about ``d * log10(steps)``
observations. The tracker measures the wall time it spends scoring against the training time in
between and reports the overhead fraction (:meth:`Tracker.cost`); ``max_overhead`` optionally
skips observations that would exceed a wall-clock budget (this makes the observed steps depend on
timing, so it is off by default).

Storage is append-only: every ``flush_every`` observations become one Parquet part file written
atomically, so a crash loses at most the observations since the last flush; a new tracker on the
same directory resumes (it checks that the examples are the same and skips steps it already has).

Analyses (:func:`analyze`), with the memorization threshold documented in :data:`CRITERIA`:
first step at which each example counts as memorized, forgetting events (memorized at one
observation, not at the next), memorization by group and by TF-IDF rarity, and whether continued
training increases memorization (the second half of training against the first). Memorization
sinks (Ghosal, Maini & Raghunathan 2025, arXiv:2507.09937) report that repeated sequences are
memorized early and that longer training reinforces memorization; :func:`run_quick` reproduces
this on a structured synthetic source.

Entry points: ``tracker.observe(model, step)`` from any PyTorch loop; ``tracker.callback`` for
:func:`memlens.training.train_to_saturation`; :func:`trainer_callback` for a Hugging Face
``transformers.Trainer``. In any loop::

    from memlens.track import Tracker, TrackSet

    examples = TrackSet(tokens=rows, groups=groups, reference_bits=ref_bits, first_token_bits=0.0)
    tracker = Tracker(examples, "runs/dynamics", prefix=16, suffix=16)  # log-spaced schedule
    for step in range(n_steps + 1):
        if step:
            train_one_step(model)
        tracker.observe(model, step)  # scores only when a scheduled step is due
    tracker.close()
    summary = tracker.analyze(threshold=0.5)  # summary["groups"]["repeated"]["fraction_memorized"]

References: Morris et al. 2025 (arXiv:2505.24832); Carlini et al. 2023 (arXiv:2202.07646);
Ghosal, Maini & Raghunathan 2025 (arXiv:2507.09937).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memlens.errors import UserError
from memlens.track.analysis import analyze
from memlens.track.examples import TrackSet
from memlens.track.observations import Observations, _concat, _stack, _write_part, load_observations
from memlens.track.schedules import Schedule


class Tracker:
    """Record code length, unintended bits and greedy extraction of tracked examples during training.

    Parameters
    ----------
    examples:
        The :class:`TrackSet` to watch.
    directory:
        Where to append the Parquet part files (``None``: keep everything in memory). A directory
        that already holds a tracker for the same examples is resumed.
    schedule:
        When to observe (default :meth:`Schedule.log` with 12 points per decade). A call to
        :meth:`observe` records when a scheduled step lies between the last observation and the
        given step, so loops that call it every step observe exactly on the schedule and loops
        that call it sparsely observe at the first call at or after each scheduled step.
    prefix, suffix:
        Extraction prompt and target lengths in tokens (after the ``n_lead`` ids).
    batch_size:
        Examples per forward pass.
    model_index:
        Which model of a memlens :class:`~memlens.models.gpt.GPT` stack to track.
    forward:
        Optional ``forward(model) -> callable`` for a model that is neither a memlens GPT nor a
        Hugging Face causal LM; the callable maps ids ``[b, T]`` (and ``attention_mask=``) to
        logits ``[b, T, V]``.
    flush_every:
        Observations per Parquet part (a crash loses at most this many).
    max_overhead:
        Optional wall-clock budget: skip a scheduled observation while the scoring time so far
        exceeds this fraction of the training time so far (step 0 and forced observations are
        never skipped).
    """

    def __init__(
        self,
        examples: TrackSet,
        directory: str | os.PathLike[str] | None = None,
        *,
        schedule: Schedule | None = None,
        prefix: int = 32,
        suffix: int = 32,
        batch_size: int = 128,
        model_index: int = 0,
        forward: Callable[[Any], Callable[..., torch.Tensor]] | None = None,
        flush_every: int = 1,
        max_overhead: float | None = None,
    ) -> None:
        if prefix < 1 or suffix < 1:
            raise UserError(
                f"extraction prefix and suffix must be at least 1 token, got {prefix} and {suffix}."
            )
        if flush_every < 1:
            raise UserError(f"flush_every must be at least 1, got {flush_every}.")
        if max_overhead is not None and max_overhead <= 0:
            raise UserError(f"max_overhead must be positive, got {max_overhead}.")
        self.examples = examples
        self.schedule = schedule or Schedule.log()
        self.prefix, self.suffix = int(prefix), int(suffix)
        self.batch_size = int(batch_size)
        self.model_index = int(model_index)
        self.forward = forward
        self.flush_every = int(flush_every)
        self.max_overhead = max_overhead
        self.directory = Path(directory) if directory is not None else None

        from memlens.scoring import extraction_eligible

        self.eligible = extraction_eligible(
            examples.lengths, prefix=self.prefix, suffix=self.suffix, n_lead=examples.n_lead
        )
        if not examples.has_reference and not self.eligible.any():
            # without reference bits the criterion is extraction: nothing could ever count
            raise UserError(
                f"no tracked example has the {self.prefix + self.suffix} tokens that extraction "
                f"needs (prefix {self.prefix} + suffix {self.suffix}, after {examples.n_lead} "
                "lead ids) and there are no reference bits, so none could ever count as "
                "memorized; use a shorter `prefix` and `suffix` or give reference bits."
            )

        self._buffer: list[dict[str, Any]] = []
        self._parts: list[Observations] = []
        self._last: int | None = None  # last step observed (this session or a resumed one)
        self._cursor: int | None = None  # last step considered (observed or skipped)
        self.n_skipped = 0
        self._score_total = 0.0
        self._train_before = 0.0  # training seconds accumulated by earlier sessions
        self._score_session = 0.0
        self._clock = time.perf_counter()
        if self.directory is not None:
            self._open()

    # -- storage ---------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {
            "format": 1,
            "fingerprint": self.examples.fingerprint(),
            "n_examples": len(self.examples),
            "prefix": self.prefix,
            "suffix": self.suffix,
            "first_token_bits": self.examples.first_token_bits,
            "first_token": self.examples.first_token,
            "n_lead": self.examples.n_lead,
            "reference": self.examples.reference,
            "schedule": self.schedule.describe(),
        }

    def _open(self) -> None:
        from memlens.store import write_json_atomic, write_table_atomic

        d = self.directory
        try:
            (d / "parts").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot write tracker files to {d}: {exc.strerror or exc}.") from None
        meta_file = d / "tracker.json"
        meta = self._meta()
        if meta_file.exists():
            try:
                old = json.loads(meta_file.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            keys = ("fingerprint", "prefix", "suffix", "first_token_bits", "n_lead")
            if old is not None and any(old.get(k) != meta[k] for k in keys):
                raise UserError(
                    f"{d} holds a tracker for different examples or settings; use a new directory or the same ones to resume."
                )
            obs = load_observations(d, len(self.examples))
            if obs.n:
                self._last = self._cursor = int(obs.steps.max())
                self._score_total = float(obs.score_seconds.sum())
                self._train_before = float(obs.train_seconds.max())
        else:
            from memlens.store import git_revision, versions

            # what the run contract records in a manifest, for a tracker in a user's own loop
            provenance = {"versions": versions(), "git_revision": git_revision()}
            write_table_atomic(d / "examples.parquet", self.examples.table())
            write_json_atomic(meta_file, meta | provenance)

    def flush(self) -> None:
        """Write buffered observations as one Parquet part (atomically)."""
        if not self._buffer:
            return
        obs = _stack(self._buffer)
        self._buffer = []
        if self.directory is None:
            self._parts.append(obs)
            return
        _write_part(self.directory / "parts", obs)

    def close(self) -> None:
        self.flush()

    # -- timing ----------------------------------------------------------------------------
    def start(self) -> None:
        """Restart the training clock (call right before training when the tracker was built early)."""
        if self._score_session == 0.0:
            self._clock = time.perf_counter()

    def train_seconds(self) -> float:
        """Training wall time so far: elapsed time minus the time spent scoring."""
        return self._train_before + (time.perf_counter() - self._clock) - self._score_session

    # -- observing -------------------------------------------------------------------------
    @property
    def last_step(self) -> int | None:
        return self._last

    def callback(self, model: Any, step: int) -> None:
        """``cb(model, step)`` for :func:`memlens.training.train_to_saturation`'s ``callbacks``."""
        self.observe(model, step)

    def observe(self, model: Any, step: int, *, force: bool = False) -> bool:
        """Score the tracked examples under ``model`` if a scheduled step is due (or ``force``).

        Returns True when an observation was recorded. Steps at or before the last recorded one
        are never recorded again (so a resumed run continues where the stored data ends).
        """
        step = int(step)
        if self._last is not None and step <= self._last:
            return False
        if not force:
            if not self.schedule.due(self._cursor, step):
                return False
            if (
                self.max_overhead is not None
                and self._last is not None
                and self._score_total > self.max_overhead * self.train_seconds()
            ):
                self._cursor = step
                self.n_skipped += 1
                return False
        train_s = self.train_seconds()
        t0 = time.perf_counter()
        row = self._score(model)
        dt = time.perf_counter() - t0
        self._score_session += dt
        self._score_total += dt
        row.update(step=step, score_seconds=dt, train_seconds=train_s)
        self._buffer.append(row)
        self._last = self._cursor = step
        if len(self._buffer) >= self.flush_every:
            self.flush()
        return True

    def _forward_for(
        self, model: Any
    ) -> tuple[Callable[..., torch.Tensor], int | None, torch.device]:
        from memlens.models.gpt import GPT

        device = (
            next(model.parameters()).device
            if isinstance(model, torch.nn.Module)
            else torch.device("cpu")
        )
        if self.forward is not None:
            return self.forward(model), None, device
        if isinstance(model, GPT):
            m = model if model.n_models == 1 else model.select([self.model_index])

            def fwd(ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
                return m(ids.unsqueeze(0))[0]

            return fwd, model.config.seq_len, device
        if isinstance(model, torch.nn.Module) and hasattr(model, "config"):
            from memlens.models.hf import context_length_of
            from memlens.scoring import hf_forward

            return hf_forward(model), context_length_of(model.config), device
        raise TypeError(
            "the tracker scores memlens GPT models and Hugging Face causal LMs; pass forward= for others"
        )

    def _score(self, model: Any) -> dict[str, Any]:
        from memlens.scoring import memorized_bits, score_sequences, teacher_forced_extraction

        fwd, context, device = self._forward_for(model)
        was_training = getattr(model, "training", False)
        if isinstance(model, torch.nn.Module):
            model.eval()
        try:
            scores = score_sequences(
                fwd,
                self.examples.tokens,
                batch_size=self.batch_size,
                context_length=context,
                device=device,
                argmax=True,
            )
        finally:
            if isinstance(model, torch.nn.Module):
                model.train(was_training)
        ex = self.examples
        code = scores.nll_bits + ex.first_token_bits
        if ex.first_token == "uniform" and ex.n_lead == 1:
            code = code + scores.log2p[:, 0]  # the first text token: log2 V, not the model's code
        ref = ex.reference_bits
        unintended = np.where(np.isfinite(ref), memorized_bits(np.nan_to_num(ref), code), np.nan)
        ext = teacher_forced_extraction(
            scores, prefix=self.prefix, suffix=self.suffix, n_lead=ex.n_lead
        )
        return {
            "code_bits": code,
            "unintended_bits": unintended,
            "extracted": ext.exact,
            "suffix_top1": ext.suffix_accuracy,
        }

    # -- results ---------------------------------------------------------------------------
    def observations(self) -> Observations:
        """All recorded observations (stored parts plus anything still buffered)."""
        pending = [_stack(self._buffer)] if self._buffer else []
        if self.directory is not None:
            stored = load_observations(self.directory, len(self.examples))
            return _concat([stored, *pending])
        return _concat([*self._parts, *pending])

    def cost(self, *, until_last_observation: bool = False) -> dict[str, Any]:
        """What tracking cost: observations, scoring and training wall time, overhead fraction.

        Parameters
        ----------
        until_last_observation:
            Count training time up to the last recorded observation (the one a finished run
            makes at its final step), as stored with it, instead of up to now. A run's result
            uses this, so that the analysis and plots made after training are not counted as
            training and a rerun of a finished run reports the same cost.
        """
        obs = self.observations()
        n_tok = int((self.examples.lengths - 1).sum())
        score = float(obs.score_seconds.sum()) if obs.n else 0.0
        if until_last_observation and obs.n:
            train = float(obs.train_seconds[int(np.argmax(obs.steps))])
        else:
            train = self.train_seconds()
        return {
            "schedule": self.schedule.describe(),
            "n_observations": obs.n,
            "n_skipped": self.n_skipped,
            "n_examples": len(self.examples),
            "tokens_scored_per_observation": n_tok,
            "score_seconds": score,
            "seconds_per_observation": score / obs.n if obs.n else None,
            "train_seconds": train,
            "overhead_fraction": score / train if train > 0 else None,
        }

    def analyze(self, threshold: float = 0.5, criterion: str = "auto") -> dict[str, Any]:
        return analyze(
            self.observations(),
            self.examples,
            self.eligible,
            threshold=threshold,
            criterion=criterion,
        )
