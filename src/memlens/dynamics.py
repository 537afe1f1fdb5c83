"""Training dynamics: which examples a model memorizes, and when, while it trains.

A :class:`Tracker` watches a fixed set of examples (training samples in groups such as
``repeated`` and ``unique``, plus ``heldout`` controls the model never sees) during training. At
the steps of a :class:`Schedule` (log-spaced by default) it scores every tracked example through
the shared batched scoring pass (:func:`memlens.bits.score_tokens`, via
:func:`memlens.models.hf.score_sequences`) and appends, per example:

* ``code_bits``: the code length ``NLL_bits(x) = -log2 p(x | model)`` in bits, the first token
  charged ``first_token_bits`` (``log2 V`` for synthetic sources, 0 after a BOS token);
* ``unintended_bits``: ``max(0, NLL_bits(x | R) - NLL_bits(x | T))`` against a reference R, the
  maximum taken over whole-sequence code lengths (Morris et al. 2025, "How much do language models
  memorize?", arXiv:2505.24832). For synthetic data R is the true source (exact entropy); for text
  it is a reference model, or absent;
* ``extracted``: greedy k-extraction (Carlini et al. 2023, "Quantifying memorization across neural
  language models"): decoding greedily from the first ``prefix`` tokens reproduces the next
  ``suffix`` tokens exactly. It is read off the same teacher-forced pass: greedy decoding
  reproduces the suffix *if and only if* every suffix token is the model's argmax given the true
  prefix (by induction over the suffix: while the decoded tokens equal the true ones, the decoder
  sees the true prefix). ``suffix_top1`` is the fraction of suffix tokens that are the argmax;
  it is not Pythia's match fraction (which decodes past the first mismatch).

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
:func:`memlens.train.train_to_saturation`; :func:`trainer_callback` for a Hugging Face
``transformers.Trainer``. In any loop::

    from memlens.dynamics import Tracker, TrackSet

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

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memlens.errors import UserError

# -- schedules ----------------------------------------------------------------------------------


class Schedule:
    """The steps at which a :class:`Tracker` observes the model.

    Build one with :meth:`log` (default: step 0 and ``round(10 ** (k / points_per_decade))`` for
    ``k = 0, 1, 2, ...``, duplicates removed), :meth:`every` or :meth:`at`. Schedules need no
    final step: a log schedule goes on forever with a bounded number of points per decade.
    """

    def __init__(self, kind: str, value: Any) -> None:
        self.kind = kind
        self.value = value

    @classmethod
    def log(cls, points_per_decade: int = 12) -> Schedule:
        if points_per_decade < 1:
            raise UserError(f"points per decade must be at least 1, got {points_per_decade}.")
        return cls("log", int(points_per_decade))

    @classmethod
    def every(cls, n: int) -> Schedule:
        if n < 1:
            raise UserError(f"the observation interval must be at least 1 step, got {n}.")
        return cls("every", int(n))

    @classmethod
    def at(cls, steps: Sequence[int]) -> Schedule:
        steps = sorted({int(s) for s in steps})
        if not steps or steps[0] < 0:
            raise UserError("explicit observation steps must be a non-empty list of steps >= 0.")
        return cls("at", steps)

    def describe(self) -> str:
        if self.kind == "log":
            return f"log-spaced, {self.value} points per decade, plus step 0"
        if self.kind == "every":
            return f"every {self.value} steps, plus step 0"
        return f"at steps {self.value}"

    def next_at_or_after(self, step: int) -> int | None:
        """The first scheduled step ``>= step`` (``None`` when an explicit list is exhausted)."""
        step = max(0, int(step))
        if self.kind == "at":
            return next((s for s in self.value if s >= step), None)
        if step == 0:
            return 0
        if self.kind == "every":
            n = self.value
            return -(-step // n) * n
        d = self.value
        k = max(0, math.floor(d * math.log10(step)) - 2)
        while round(10 ** (k / d)) < step:
            k += 1
        return int(round(10 ** (k / d)))

    def due(self, after: int | None, step: int) -> bool:
        """Whether a scheduled step lies in ``(after, step]`` (``after=None``: in ``[0, step]``)."""
        nxt = self.next_at_or_after(0 if after is None else after + 1)
        return nxt is not None and nxt <= step

    def steps_until(self, last: int) -> list[int]:
        """Every scheduled step in ``[0, last]``."""
        out, s = [], self.next_at_or_after(0)
        while s is not None and s <= last:
            out.append(s)
            s = self.next_at_or_after(s + 1)
        return out


# -- the tracked examples -----------------------------------------------------------------------


@dataclass
class TrackSet:
    """The examples a :class:`Tracker` watches.

    Attributes
    ----------
    tokens: one int64 array of token ids per example (BOS first when ``n_lead = 1``).
    groups: a group name per example (e.g. ``repeated``, ``unique``, ``heldout``).
    reference_bits: the code length of each example under the reference, in bits, with the same
        first-token convention as the model (``first_token_bits``); NaN when there is none.
    first_token_bits: bits charged for token 0 (``log2 V`` for synthetic data, 0 after a BOS).
    n_lead: leading ids that are context, not text (1 for a BOS), excluded from extraction.
    counts: how many times each example occurs in the training data (0 for held-out controls).
    rarity: TF-IDF rarity of each example (Morris et al. 2025), NaN when unknown.
    reference: a description of the reference (reported with every result).
    texts: the texts, when the examples came from text.
    """

    tokens: list[np.ndarray]
    groups: np.ndarray
    reference_bits: np.ndarray
    first_token_bits: float = 0.0
    n_lead: int = 0
    counts: np.ndarray | None = None
    rarity: np.ndarray | None = None
    reference: str = "none"
    texts: list[str] | None = None

    def __post_init__(self) -> None:
        self.tokens = [np.asarray(t, dtype=np.int64).reshape(-1) for t in self.tokens]
        n = len(self.tokens)
        if n == 0:
            raise UserError("there are no examples to track.")
        if any(len(t) < 2 for t in self.tokens):
            raise UserError("every tracked example needs at least 2 tokens (1 to condition on).")
        self.groups = np.asarray(self.groups, dtype=object).astype(str)
        self.reference_bits = np.asarray(self.reference_bits, dtype=np.float64).reshape(-1)
        if self.reference_bits.size == 1 and n > 1:
            self.reference_bits = np.full(n, float(self.reference_bits[0]))
        self.counts = (
            np.zeros(n, dtype=np.int64)
            if self.counts is None
            else np.asarray(self.counts, dtype=np.int64)
        )
        self.rarity = (
            np.full(n, np.nan) if self.rarity is None else np.asarray(self.rarity, dtype=np.float64)
        )
        for name, arr in (("groups", self.groups), ("reference_bits", self.reference_bits),
                          ("counts", self.counts), ("rarity", self.rarity)):  # fmt: skip
            if len(arr) != n:
                raise ValueError(f"{name} must have one entry per example ({n}), got {len(arr)}")

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(t) for t in self.tokens], dtype=np.int64)

    @property
    def has_reference(self) -> bool:
        return bool(np.isfinite(self.reference_bits).any())

    def fingerprint(self) -> str:
        """A hash of the tokens, groups, reference bits and first-token convention."""
        h = hashlib.sha256()
        for t, g, r in zip(self.tokens, self.groups, self.reference_bits, strict=True):
            h.update(t.tobytes())
            h.update(g.encode())
            h.update(b"nan" if not np.isfinite(r) else f"{r:.6f}".encode())
        h.update(f"{self.first_token_bits:.9f}/{self.n_lead}".encode())
        return h.hexdigest()[:16]

    def table(self) -> Any:
        """One row per example: index, group, counts, rarity, length, reference bits (and text)."""
        import pandas as pd

        df = pd.DataFrame(
            {
                "example": np.arange(len(self), dtype=np.int64),
                "group": self.groups,
                "count": self.counts,
                "rarity_tfidf": self.rarity,
                "n_tokens": self.lengths - self.n_lead,
                "reference_bits": self.reference_bits,
            }
        )
        if self.texts is not None:
            df["text"] = list(self.texts)
        return df


def tfidf_rarity_tokens(
    examples: Sequence[np.ndarray],
    corpus: Sequence[np.ndarray],
    counts: Sequence[int] | None,
    members: np.ndarray,
) -> np.ndarray:
    """TF-IDF rarity of each example's tokens against a token corpus (Morris et al. 2025).

    ``TFIDF(d) = (1/|d|) sum_{w in d} log(|D| / tf(w, D))`` with natural log, via
    :class:`memlens.audit.rarity.TfidfCorpus`; ``members[i]`` says whether example ``i`` is in
    the corpus (a held-out example is scored against the corpus plus itself).
    """
    from memlens.audit.rarity import TfidfCorpus

    corp = TfidfCorpus([np.asarray(d).tolist() for d in corpus], counts)
    return np.array(
        [
            corp.score(np.asarray(x).tolist(), member=bool(m))
            for x, m in zip(examples, members, strict=True)
        ]
    )


# -- observations -------------------------------------------------------------------------------


@dataclass
class Observations:
    """Everything a tracker recorded, as ``[N examples, n observations]`` matrices.

    ``extracted`` is False for examples too short for extraction (see ``eligible``).
    ``score_seconds`` and ``train_seconds`` are per observation: the wall time of the scoring
    pass, and the training wall time accumulated before it.
    """

    steps: np.ndarray
    code_bits: np.ndarray
    unintended_bits: np.ndarray
    extracted: np.ndarray
    suffix_top1: np.ndarray
    score_seconds: np.ndarray
    train_seconds: np.ndarray

    @property
    def n(self) -> int:
        return len(self.steps)


CRITERIA = {
    "bits": (
        "memorized when unintended_bits >= threshold * reference_bits, i.e. the model's code length "
        "is at most (1 - threshold) of the reference's (Morris et al. 2025)"
    ),
    "extraction": (
        "memorized when greedy decoding from the first `prefix` tokens reproduces the next `suffix` "
        "tokens exactly (Carlini et al. 2023)"
    ),
}
"""The two memorization criteria. ``auto`` uses ``bits`` when the examples have reference bits,
else ``extraction``. The default threshold is 0.5: an example counts as memorized once the
model needs at most half the bits the reference needs for it."""


def resolve_criterion(criterion: str, examples: TrackSet) -> str:
    if criterion == "auto":
        return "bits" if examples.has_reference else "extraction"
    if criterion not in CRITERIA:
        raise UserError(
            f"unknown memorization criterion {criterion!r}; use auto, bits or extraction."
        )
    if criterion == "bits" and not examples.has_reference:
        raise UserError(
            "the bits criterion needs reference bits; give a reference or use extraction."
        )
    return criterion


# -- the tracker --------------------------------------------------------------------------------

_PART_META = b"memlens_observations"


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

        # Extraction columns: token j is predicted by column j - 1 of the scoring pass.
        lengths = examples.lengths
        self.eligible = lengths - examples.n_lead >= self.prefix + self.suffix
        width = int(lengths.max()) - 1
        start = examples.n_lead + self.prefix - 1
        cols = np.zeros(width, dtype=bool)
        cols[start : start + self.suffix] = True
        self._suffix_cols = cols

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
            write_table_atomic(d / "examples.parquet", self.examples.table())
            write_json_atomic(meta_file, meta)

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
        """``cb(model, step)`` for :func:`memlens.train.train_to_saturation`'s ``callbacks``."""
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
            from memlens.bits import hf_forward
            from memlens.models.hf import context_length_of

            return hf_forward(model), context_length_of(model.config), device
        raise TypeError(
            "the tracker scores memlens GPT models and Hugging Face causal LMs; pass forward= for others"
        )

    def _score(self, model: Any) -> dict[str, Any]:
        from memlens.bits import memorized_bits
        from memlens.models.hf import score_sequences

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
        ref = ex.reference_bits
        unintended = np.where(np.isfinite(ref), memorized_bits(np.nan_to_num(ref), code), np.nan)
        cols = np.zeros(scores.is_argmax.shape[1], dtype=bool)
        w = min(len(cols), len(self._suffix_cols))
        cols[:w] = self._suffix_cols[:w]
        hits = scores.is_argmax & cols
        extracted = (hits.sum(axis=1) == self.suffix) & self.eligible
        top1 = np.where(self.eligible, hits.sum(axis=1) / self.suffix, np.nan)
        return {
            "code_bits": code,
            "unintended_bits": unintended,
            "extracted": extracted,
            "suffix_top1": top1,
        }

    # -- results ---------------------------------------------------------------------------
    def observations(self) -> Observations:
        """All recorded observations (stored parts plus anything still buffered)."""
        pending = [_stack(self._buffer)] if self._buffer else []
        if self.directory is not None:
            stored = load_observations(self.directory, len(self.examples))
            return _concat([stored, *pending])
        return _concat([*self._parts, *pending])

    def cost(self) -> dict[str, Any]:
        """What tracking cost: observations, scoring and training wall time, overhead fraction."""
        obs = self.observations()
        n_tok = int((self.examples.lengths - 1).sum())
        score = float(obs.score_seconds.sum()) if obs.n else 0.0
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


def _stack(rows: list[dict[str, Any]]) -> Observations:
    return Observations(
        steps=np.array([r["step"] for r in rows], dtype=np.int64),
        code_bits=np.stack([r["code_bits"] for r in rows], axis=1),
        unintended_bits=np.stack([r["unintended_bits"] for r in rows], axis=1),
        extracted=np.stack([r["extracted"] for r in rows], axis=1),
        suffix_top1=np.stack([r["suffix_top1"] for r in rows], axis=1),
        score_seconds=np.array([r["score_seconds"] for r in rows]),
        train_seconds=np.array([r["train_seconds"] for r in rows]),
    )


def _concat(parts: list[Observations]) -> Observations:
    """Concatenate along observations; a step seen twice keeps its latest record."""
    parts = [p for p in parts if p.n]
    if not parts:
        return Observations(
            np.zeros(0, np.int64), *(np.zeros((0, 0)) for _ in range(4)), np.zeros(0), np.zeros(0)
        )
    cat = {
        f: np.concatenate([getattr(p, f) for p in parts], axis=-1)
        for f in Observations.__dataclass_fields__
    }
    steps = cat["steps"]
    # keep the last occurrence of each step, ordered by step
    last = {int(s): i for i, s in enumerate(steps)}
    order = np.array([last[s] for s in sorted(last)], dtype=np.int64)
    return Observations(**{k: v[..., order] for k, v in cat.items()})


def _write_part(parts_dir: Path, obs: Observations) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from memlens.store import atomic_path

    N, n = obs.code_bits.shape
    table = pa.table(
        {
            "step": np.repeat(obs.steps, N),
            "example": np.tile(np.arange(N, dtype=np.int64), n),
            "code_bits": obs.code_bits.T.reshape(-1),
            "unintended_bits": obs.unintended_bits.T.reshape(-1),
            "extracted": obs.extracted.T.reshape(-1),
            "suffix_top1": obs.suffix_top1.T.reshape(-1),
        }
    )
    meta = [
        {"step": int(s), "score_seconds": float(a), "train_seconds": float(b)}
        for s, a, b in zip(obs.steps, obs.score_seconds, obs.train_seconds, strict=True)
    ]
    table = table.replace_schema_metadata({_PART_META: json.dumps(meta).encode()})
    path = parts_dir / f"part-{int(obs.steps[0]):012d}-{int(obs.steps[-1]):012d}.parquet"
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def load_observations(
    directory: str | os.PathLike[str], n_examples: int | None = None
) -> Observations:
    """Read every Parquet part a tracker wrote to ``directory`` (unreadable parts are skipped)."""
    import pyarrow.parquet as pq

    directory = Path(directory)
    files = sorted(
        (directory / "parts").glob("part-*.parquet"), key=lambda f: (f.stat().st_mtime_ns, f.name)
    )
    if n_examples is None:
        n_examples = len(pq.read_table(directory / "examples.parquet", columns=["example"]))
    parts = []
    for f in files:
        try:
            t = pq.read_table(f)
        except Exception:  # a torn file from a crash: atomic writes make this unlikely
            continue
        meta = json.loads(t.schema.metadata[_PART_META])
        steps = np.array([m["step"] for m in meta], dtype=np.int64)
        n = len(steps)
        cols = {
            c: t.column(c).to_numpy()
            for c in ("code_bits", "unintended_bits", "extracted", "suffix_top1")
        }
        parts.append(
            Observations(
                steps=steps,
                code_bits=cols["code_bits"].reshape(n, n_examples).T,
                unintended_bits=cols["unintended_bits"].reshape(n, n_examples).T,
                extracted=cols["extracted"].astype(bool).reshape(n, n_examples).T,
                suffix_top1=cols["suffix_top1"].reshape(n, n_examples).T,
                score_seconds=np.array([m["score_seconds"] for m in meta]),
                train_seconds=np.array([m["train_seconds"] for m in meta]),
            )
        )
    return _concat(parts)


# -- Hugging Face Trainer -------------------------------------------------------------------------


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


# -- analyses -----------------------------------------------------------------------------------

GROUP_ORDER = ["repeated", "unique", "heldout"]


def _none(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _ordered_groups(groups: np.ndarray) -> list[str]:
    present = list(dict.fromkeys(groups.tolist()))
    return [g for g in GROUP_ORDER if g in present] + sorted(
        g for g in present if g not in GROUP_ORDER
    )


def memorized_matrix(
    obs: Observations, examples: TrackSet, eligible: np.ndarray, threshold: float, criterion: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(memorized [N, n_obs], scorable [N])`` under a criterion of :data:`CRITERIA`."""
    if criterion == "bits":
        ref = examples.reference_bits[:, None]
        scorable = np.isfinite(examples.reference_bits)
        with np.errstate(invalid="ignore"):
            mem = (
                np.isfinite(ref)
                & (obs.unintended_bits >= threshold * ref)
                & (obs.unintended_bits > 0)
            )
        return mem, scorable
    return obs.extracted & eligible[:, None], eligible.copy()


def first_true_step(flags: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per row, the step of the first True column (NaN when never True)."""
    any_ = flags.any(axis=1)
    idx = flags.argmax(axis=1)
    return np.where(any_, steps[idx].astype(np.float64) if len(steps) else np.nan, np.nan)


def forgetting_events(flags: np.ndarray) -> np.ndarray:
    """Per row, the number of True -> False transitions between consecutive observations."""
    if flags.shape[1] < 2:
        return np.zeros(flags.shape[0], dtype=np.int64)
    return (flags[:, :-1] & ~flags[:, 1:]).sum(axis=1)


def median_first_step_all(first: np.ndarray) -> float | None:
    """Median first-memorized step counting never-memorized examples as later than every step.

    ``None`` when at least half of the examples were never memorized.
    """
    if len(first) == 0:
        return None
    v = np.where(np.isnan(first), np.inf, first)
    m = float(np.median(v))
    return m if math.isfinite(m) else None


def analyze(
    obs: Observations,
    examples: TrackSet,
    eligible: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    criterion: str = "auto",
) -> dict[str, Any]:
    """Per-group memorization statistics, rarity split and the continued-training comparison.

    Parameters
    ----------
    obs: the tracker's observations (at least one).
    examples: the tracked examples.
    eligible: examples long enough for extraction (all, when omitted).
    threshold: the fraction of reference bits for the ``bits`` criterion (see :data:`CRITERIA`).
    criterion: ``auto``, ``bits`` or ``extraction``.

    Returns
    -------
    A JSON-ready dict: ``groups`` (per group ``n``, ``fraction_memorized`` at the last
    observation, ``fraction_ever_memorized``, ``median_first_memorized_step`` among the examples
    ever memorized, ``median_first_memorized_step_all`` counting never-memorized ones as later
    than every step, forgetting events, mean bits and extraction rate), ``comparisons``,
    ``continued_training``, ``by_rarity`` and per-step ``curves``.
    """
    if obs.n == 0:
        raise UserError(
            "the tracker recorded no observation; train for at least one scheduled step."
        )
    if not 0 < threshold <= 1:
        raise UserError(f"the memorization threshold must be in (0, 1], got {threshold}.")
    eligible = (
        np.ones(len(examples), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    )
    crit = resolve_criterion(criterion, examples)
    mem, scorable = memorized_matrix(obs, examples, eligible, threshold, crit)
    first = first_true_step(mem, obs.steps)
    forgets = forgetting_events(mem)
    steps = obs.steps
    final_step = int(steps[-1])
    mid = int(
        np.searchsorted(steps, final_step / 2.0)
    )  # first observation at or after half the steps
    groups = _ordered_groups(examples.groups)
    has_ref = examples.has_reference

    def mean(a: np.ndarray) -> float | None:
        return _none(np.nanmean(a)) if a.size and np.isfinite(a).any() else None

    out_groups: dict[str, Any] = {}
    curves: dict[str, Any] = {"steps": steps.tolist()}
    continued: dict[str, Any] = {"from_step": int(steps[mid]), "to_step": final_step, "groups": {}}
    for g in groups:
        sel = (examples.groups == g) & scorable
        n = int(sel.sum())
        m = mem[sel]
        f = first[sel]
        ever = ~np.isnan(f)
        elig = (examples.groups == g) & eligible
        out_groups[g] = {
            "n": n,
            "training_occurrences": _none(np.mean(examples.counts[examples.groups == g])),
            "fraction_memorized": _none(m[:, -1].mean()) if n else None,
            "fraction_ever_memorized": _none(ever.mean()) if n else None,
            "median_first_memorized_step": _none(np.median(f[ever])) if ever.any() else None,
            "median_first_memorized_step_all": median_first_step_all(f),
            "forgetting_events": int(forgets[sel].sum()),
            "examples_forgotten": int((ever & ~m[:, -1]).sum()) if n else 0,
            "mean_code_bits_final": mean(obs.code_bits[examples.groups == g, -1]),
            "mean_reference_bits": mean(examples.reference_bits[examples.groups == g])
            if has_ref
            else None,
            "mean_unintended_bits_final": mean(obs.unintended_bits[sel, -1]) if has_ref else None,
            "extraction_rate_final": _none(obs.extracted[elig, -1].mean()) if elig.any() else None,
            "n_extraction_eligible": int(elig.sum()),
        }
        curves[g] = {
            "fraction_memorized": [
                _none(x) for x in (m.mean(axis=0) if n else np.full(obs.n, np.nan))
            ],
            "mean_unintended_bits": [_none(x) for x in np.nanmean(obs.unintended_bits[sel], axis=0)]
            if has_ref and n
            else None,
            "mean_code_bits": [_none(x) for x in obs.code_bits[examples.groups == g].mean(axis=0)],
            "extraction_rate": [_none(x) for x in obs.extracted[elig].mean(axis=0)]
            if elig.any()
            else None,
        }
        cg = {
            "fraction_memorized": [_none(m[:, mid].mean()), _none(m[:, -1].mean())] if n else None,
        }
        if has_ref and n:
            cg["mean_unintended_bits"] = [
                mean(obs.unintended_bits[sel, mid]),
                mean(obs.unintended_bits[sel, -1]),
            ]
        continued["groups"][g] = cg

    # Does continued training increase memorization of the training examples?
    train_sel = (examples.counts > 0) & scorable
    if train_sel.any() and mid < obs.n - 1:
        a, b = mem[train_sel, mid].mean(), mem[train_sel, -1].mean()
        continued["training_examples"] = {"fraction_memorized": [float(a), float(b)]}
        verdict = b > a
        if has_ref:
            ua = float(np.nanmean(obs.unintended_bits[train_sel, mid]))
            ub = float(np.nanmean(obs.unintended_bits[train_sel, -1]))
            continued["training_examples"]["mean_unintended_bits"] = [ua, ub]
            verdict = ub > ua
        continued["increases"] = bool(verdict)
    else:
        continued["increases"] = None
    continued["definition"] = (
        "compares the first observation at or after half of the final step with the final one; "
        "'increases' uses mean unintended bits of training examples when a reference exists, "
        "else the fraction memorized"
    )

    comparisons: dict[str, Any] = {}
    if "repeated" in out_groups and "unique" in out_groups:
        r, u = out_groups["repeated"], out_groups["unique"]
        inf = float("inf")
        r_step = r["median_first_memorized_step_all"]
        u_step = u["median_first_memorized_step_all"]
        comparisons["repeated_vs_unique"] = {
            "memorized_more": (r["fraction_memorized"] or 0.0) > (u["fraction_memorized"] or 0.0),
            "memorized_earlier": (inf if r_step is None else r_step)
            < (inf if u_step is None else u_step),
        }
    if "heldout" in out_groups:
        comparisons["heldout_never_memorized"] = (
            out_groups["heldout"]["fraction_ever_memorized"] == 0.0
        )

    return {
        "criterion": {
            "name": crit,
            "threshold": threshold if crit == "bits" else None,
            "definition": CRITERIA[crit],
        },
        "reference": examples.reference,
        "first_token_bits": examples.first_token_bits,
        "final_step": final_step,
        "n_observations": obs.n,
        "groups": out_groups,
        "comparisons": comparisons,
        "continued_training": continued,
        "by_rarity": _by_rarity(examples, mem, first, scorable, obs, has_ref),
        "curves": curves,
    }


def _by_rarity(
    examples: TrackSet,
    mem: np.ndarray,
    first: np.ndarray,
    scorable: np.ndarray,
    obs: Observations,
    has_ref: bool,
) -> dict[str, Any]:
    """Within each training group: rare (TF-IDF at or above the median) versus common examples."""
    from scipy.stats import spearmanr

    out: dict[str, Any] = {}
    for g in _ordered_groups(examples.groups):
        sel = (
            (examples.groups == g) & scorable & (examples.counts > 0) & np.isfinite(examples.rarity)
        )
        if sel.sum() < 4:
            continue
        r = examples.rarity[sel]
        cut = float(np.median(r))
        rare = r >= cut
        entry: dict[str, Any] = {"median_tfidf": cut}
        for name, part in (("rare", rare), ("common", ~rare)):
            f = first[sel][part]
            entry[name] = {
                "n": int(part.sum()),
                "fraction_memorized": _none(mem[sel][part, -1].mean()) if part.any() else None,
                "median_first_memorized_step_all": median_first_step_all(f),
            }
            if has_ref:
                entry[name]["mean_unintended_bits_final"] = _none(
                    np.nanmean(obs.unintended_bits[sel][part, -1])
                )
        if has_ref:
            y = obs.unintended_bits[sel, -1]
            rho = spearmanr(r, y).statistic if np.ptp(y) > 0 and np.ptp(r) > 0 else float("nan")
            entry["spearman_tfidf_vs_unintended_bits"] = _none(rho)
        out[g] = entry
    return out


# -- plots --------------------------------------------------------------------------------------


def plot_heatmap(
    obs: Observations, examples: TrackSet, analysis: dict[str, Any], eligible: np.ndarray
) -> Any:
    """Example x step heatmap: the fraction of reference bits saved (or suffix top-1 accuracy).

    Rows are grouped (repeated, unique, heldout, ...) and sorted by first memorized step.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    crit = analysis["criterion"]["name"]
    if examples.has_reference:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = obs.unintended_bits / examples.reference_bits[:, None]
        label = "unintended bits / reference bits"
    else:
        values = obs.suffix_top1
        label = "suffix tokens that are the greedy choice (fraction)"
    mem, _ = memorized_matrix(
        obs, examples, eligible, analysis["criterion"]["threshold"] or 0.5, crit
    )
    first = first_true_step(mem, obs.steps)
    rows, bounds, names = [], [], []
    for g in _ordered_groups(examples.groups):
        idx = np.flatnonzero(examples.groups == g)
        key = np.where(np.isnan(first[idx]), np.inf, first[idx])
        order = np.lexsort((-np.nan_to_num(values[idx, -1]), key))
        rows.extend(idx[order].tolist())
        bounds.append(len(rows))
        names.append(g)
    fig, ax = plt.subplots(figsize=(9, 6))
    im = ax.imshow(
        values[rows], aspect="auto", interpolation="nearest", cmap="viridis", vmin=0, vmax=1
    )
    start = 0
    for b, g in zip(bounds, names, strict=True):
        if b < len(rows):
            ax.axhline(b - 0.5, color="white", lw=1.5)
        y = 1 - (start + b) / 2 / len(rows)  # imshow puts row 0 at the top
        ax.text(-0.01, y, g, transform=ax.transAxes, ha="right", va="center")
        start = b
    ax.set_yticks([])
    ticks = np.unique(np.linspace(0, obs.n - 1, min(obs.n, 10)).round().astype(int))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(int(obs.steps[t])) for t in ticks], rotation=45)
    ax.set_xlabel("training step (observations, log-spaced)")
    ax.set_title("per-example memorization during training")
    fig.colorbar(im, ax=ax, label=label)
    return fig


def plot_group_curves(analysis: dict[str, Any]) -> Any:
    """Fraction memorized, mean unintended bits and extraction rate per group against step."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    curves = analysis["curves"]
    steps = np.array(curves["steps"], dtype=float)
    groups = [g for g in curves if g != "steps"]
    panels = [("fraction_memorized", "fraction memorized")]
    if any(curves[g]["mean_unintended_bits"] is not None for g in groups):
        panels.append(("mean_unintended_bits", "mean unintended bits per example"))
    panels.append(("extraction_rate", "greedy extraction rate"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8))
    for ax, (key, label) in zip(np.atleast_1d(axes), panels, strict=True):
        for g in groups:
            y = curves[g][key]
            if y is None:
                continue
            ax.plot(steps, np.array([np.nan if v is None else v for v in y]), marker=".", label=g)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("training step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend()
    crit = analysis["criterion"]
    thr = f", threshold {crit['threshold']}" if crit["threshold"] is not None else ""
    fig.suptitle(f"memorization by group (criterion: {crit['name']}{thr})")
    fig.tight_layout()
    return fig


# -- the built-in experiment ------------------------------------------------------------------------


@dataclass(frozen=True)
class QuickConfig:
    """The ``memlens track --preset quick`` experiment.

    A first-order Markov source (``vocab_size`` tokens, ``branching`` successors per token) gives
    structure to learn. The training set mixes ``n_unique`` sequences seen once per epoch with
    ``n_repeated`` sequences duplicated ``repeats`` times (the memorization-sinks setting of
    Ghosal et al. 2025: a few sequences repeated many times inside a larger corpus). Tracked:
    every repeated sequence, ``n_track_unique`` of the unique ones and ``n_heldout`` fresh
    sequences of the same source that are never trained on. Unintended bits use the exact source
    code length; the first token is charged ``log2 V`` under both model and source.
    """

    vocab_size: int = 64
    branching: int = 4
    concentration: float = 1.0
    seq_len: int = 32
    n_unique: int = 2048
    n_repeated: int = 64
    repeats: int = 16
    n_track_unique: int = 256
    n_heldout: int = 256
    n_layer: int = 2
    d_model: int = 64
    lr: float = 3e-3
    warmup_steps: int = 50
    batch_size: int = 32
    steps: int = 3000
    points_per_decade: int = 12
    prefix: int = 16
    suffix: int = 16
    threshold: float = 0.5
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise UserError("steps, batch size and learning rate must be positive.")
        if self.n_unique < 1 or self.n_repeated < 1 or self.repeats < 2:
            raise UserError(
                "the quick preset needs unique sequences and repeated ones (repeats >= 2)."
            )
        if self.prefix + self.suffix > self.seq_len:
            raise UserError(
                f"extraction prefix {self.prefix} + suffix {self.suffix} exceed the sequence length {self.seq_len}."
            )
        if not 0 < self.threshold <= 1:
            raise UserError(f"the memorization threshold must be in (0, 1], got {self.threshold}.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TrackResult:
    """What a track run produced: the ``dynamics.json`` summary and where it was written."""

    summary: dict[str, Any]
    out_dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def quick_data(cfg: QuickConfig) -> tuple[torch.Tensor, TrackSet, Any]:
    """The training rows ``[N, S]`` (repeats included), the :class:`TrackSet` and the source."""
    from memlens.data.synthetic import MarkovSource

    src = MarkovSource(cfg.vocab_size, cfg.branching, cfg.concentration, seed=cfg.seed)
    unique = src.sample(cfg.n_unique, cfg.seq_len, seed=cfg.seed + 1)
    repeated = src.sample(cfg.n_repeated, cfg.seq_len, seed=cfg.seed + 2)
    heldout = src.sample(cfg.n_heldout, cfg.seq_len, seed=cfg.seed + 3)
    train = torch.cat([unique, repeated.repeat(cfg.repeats, 1)])
    g = torch.Generator().manual_seed(cfg.seed + 4)
    track_unique = unique[torch.randperm(cfg.n_unique, generator=g)[: cfg.n_track_unique]]
    tracked = torch.cat([repeated, track_unique, heldout])
    groups = (
        ["repeated"] * cfg.n_repeated + ["unique"] * len(track_unique) + ["heldout"] * cfg.n_heldout
    )
    counts = [cfg.repeats] * cfg.n_repeated + [1] * len(track_unique) + [0] * cfg.n_heldout
    corpus = [unique[i].numpy() for i in range(cfg.n_unique)] + [
        repeated[i].numpy() for i in range(cfg.n_repeated)
    ]
    corpus_counts = [1] * cfg.n_unique + [cfg.repeats] * cfg.n_repeated
    rarity = tfidf_rarity_tokens(
        [t.numpy() for t in tracked], corpus, corpus_counts, np.array(counts) > 0
    )
    examples = TrackSet(
        tokens=[t.numpy() for t in tracked],
        groups=np.array(groups),
        reference_bits=src.code_length_bits(tracked, include_first=True),
        first_token_bits=math.log2(cfg.vocab_size),
        counts=np.array(counts),
        rarity=rarity,
        reference=(
            f"exact code length under the Markov source (V={cfg.vocab_size}, branching={cfg.branching}, "
            f"entropy rate {src.entropy_rate_bits():.3f} bits/token); first token log2 V bits"
        ),
    )
    return train, examples, src


def epoch_batch(n_rows: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Row indices of the batch for optimizer step ``step`` (0-based): epoch-wise permutations.

    A pure function of ``step`` (each epoch's permutation is seeded by ``(seed, epoch)``), so a
    resumed run draws exactly the batches the interrupted one would have.
    """
    start = step * batch_size
    idx = []
    while len(idx) < batch_size:
        epoch, off = divmod(start + len(idx), n_rows)
        perm = torch.randperm(
            n_rows, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        )
        idx.extend(perm[off : off + batch_size - len(idx)].tolist())
    return torch.tensor(idx, dtype=torch.long)


def _save_checkpoint(
    path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int
) -> None:
    from memlens.store import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, tmp)


def _load_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return int(state["step"])


def run_quick(
    cfg: QuickConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    device: str | None = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> TrackResult:
    """Train a small GPT on the :class:`QuickConfig` data and track memorization as it trains.

    Writes ``dynamics.json``, ``examples.parquet`` (per-example first memorized step and final
    bits), the tracker's append-only ``track/parts/*.parquet``, ``heatmap.png``,
    ``group_curves.png``, a training checkpoint (for resuming) and ``manifest.json``. Rerunning
    with the same ``out_dir`` and settings resumes from the last checkpoint.
    """
    from memlens.models.gpt import GPT, GPTConfig
    from memlens.store import RunDir, default_out_dir
    from memlens.train import pick_device

    dev = pick_device(device)
    train, examples, _ = quick_data(cfg)
    run = RunDir(
        out_dir or default_out_dir("track"), "track", {"preset": "quick", **cfg.to_dict()}, cfg.seed
    )
    run.write_manifest(status="running")
    torch.manual_seed(cfg.seed)
    model = GPT(
        GPTConfig(cfg.vocab_size, cfg.seq_len, cfg.n_layer, cfg.d_model),
        generator=torch.Generator().manual_seed(cfg.seed),
    ).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    ckpt = run.path / "checkpoint.pt"
    step = _load_checkpoint(ckpt, model, opt) if ckpt.exists() else 0
    tracker = Tracker(
        examples,
        run.path / "track",
        schedule=Schedule.log(cfg.points_per_decade),
        prefix=cfg.prefix,
        suffix=cfg.suffix,
        batch_size=256,
    )
    train = train.to(dev)
    loss_bits: list[tuple[int, float]] = []
    t_start = time.perf_counter()
    tracker.start()
    tracker.observe(model, step)
    model.train()
    try:
        while step < cfg.steps:
            batch = train[epoch_batch(len(train), cfg.batch_size, step, cfg.seed).to(dev)][None]
            for group in opt.param_groups:
                group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
            logits = model(batch[..., :-1])
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), batch[..., 1:].reshape(-1)
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if tracker.observe(model, step):
                value = loss.item()
                if not math.isfinite(value):
                    raise UserError(
                        "training diverged (NaN or infinite loss); lower the learning rate."
                    )
                loss_bits.append((step, value / math.log(2)))
            if step % cfg.checkpoint_every == 0:
                _save_checkpoint(ckpt, model, opt, step)
            if progress is not None:
                progress(step, cfg.steps)
    except KeyboardInterrupt:
        tracker.flush()
        _save_checkpoint(ckpt, model, opt, step)
        raise
    tracker.observe(model, step, force=True)
    tracker.close()
    _save_checkpoint(ckpt, model, opt, step)
    summary = _finish(
        run, tracker, cfg.threshold, "bits",
        training={
            "steps": step,
            "wall_seconds_this_session": time.perf_counter() - t_start,
            "model": {"n_layer": cfg.n_layer, "d_model": cfg.d_model, "n_params": model.config.n_params},
            "train_rows": len(train),
            "epochs": step * cfg.batch_size / len(train),
            "batch_loss_bits_per_token_this_session": [[s, v] for s, v in loss_bits],
        },
    )  # fmt: skip
    return TrackResult(summary, run.path)


def _finish(
    run: Any,
    tracker: Tracker,
    threshold: float,
    criterion: str,
    training: dict[str, Any],
    **manifest: Any,
) -> dict[str, Any]:
    """Analyses, plots, tables, ``dynamics.json`` and the final manifest of a track run."""
    obs = tracker.observations()
    ex = tracker.examples
    analysis = analyze(obs, ex, tracker.eligible, threshold=threshold, criterion=criterion)
    mem, _ = memorized_matrix(obs, ex, tracker.eligible, threshold, analysis["criterion"]["name"])
    per = ex.table()
    per["first_memorized_step"] = first_true_step(mem, obs.steps)
    per["forgetting_events"] = forgetting_events(mem)
    per["memorized_final"] = mem[:, -1]
    per["code_bits_final"] = obs.code_bits[:, -1]
    per["unintended_bits_final"] = obs.unintended_bits[:, -1]
    per["extracted_final"] = obs.extracted[:, -1]
    per["extraction_eligible"] = tracker.eligible
    run.write_table("examples.parquet", per)
    run.save_figure("heatmap.png", plot_heatmap(obs, ex, analysis, tracker.eligible))
    run.save_figure("group_curves.png", plot_group_curves(analysis))
    summary = {**analysis, "cost": tracker.cost(), "training": training}
    run.write_json("dynamics.json", summary)
    run.write_manifest(status="finished", **manifest)
    return summary
