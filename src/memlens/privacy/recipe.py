"""The privacy audit, as one function: ``memlens dp-audit``.

Read it as the experiment of Steinke, Nasr & Jagielski 2023 ("Privacy Auditing with One (1)
Training Run", arXiv:2305.08846), with the exposure of Carlini et al. 2019 ("The Secret Sharer",
arXiv:1802.08232) measured on the same canaries:

1. **Data.** Training rows of ``seq_len`` tokens from a built-in source (a seeded
   :class:`~memlens.data.synthetic.MarkovSource`, or uniform tokens) or from the user's texts
   (UTF-8 bytes, or a tokenizer; a Hugging Face model always uses its own).
2. **Canaries.** ``canaries`` random token strings of ``canary_length`` tokens (or the user's
   canary texts), each included *independently with probability ½* (seeded). An included canary
   is one training row: [BOS] + canary, filled up to ``seq_len`` tokens with data tokens that
   appear nowhere else. ``candidates`` random strings of the same format are never trained on;
   they rank the canaries for exposure.
3. **Train once per arm** from the same initialization on the same rows: an arm without DP
   and one arm per target ε with DP-SGD through Opacus (:mod:`memlens.privacy.dp`). A memlens
   GPT without DP trains with the shared loop (:func:`memlens.training.train_to_saturation`, a fixed
   step budget); every other arm with :func:`memlens.privacy.dp.train_rows`, Opacus's step on
   Poisson-sampled batches (without clipping and noise for a Hugging Face model without DP). All
   arms take ``epochs`` epochs of ``ceil(N / batch_size)`` steps. Trained weights are saved
   (safetensors) and reused when the run is repeated with the same ``out``.
4. **Score** every canary and candidate with the shared scoring pass
   (:func:`memlens.scoring.score_tokens`): its code length in bits and its loss in bits per
   predicted token. The membership score is minus the loss (``loss``) or the loss before
   training minus the loss after (``loss_diff``); higher means "more likely IN".
5. **Audit.** Guess IN for the k₊ highest scores and OUT for the k₋ lowest; ε̂ at
   ``confidence`` from Appendix D (:mod:`memlens.privacy.bound`), with k₊, k₋ fixed in advance,
   chosen on a split, or Bonferroni-corrected (``selection``). Reported beside the accountant's ε:
   a sound accountant never has ε below ε̂ (except with probability 1 − confidence).
6. **Exposure** of every canary: rank exposure among the candidates and the skew-normal
   extrapolation (:mod:`memlens.privacy.exposure`), for inserted and never-inserted canaries.

Units: code lengths and exposures in bits; ε in nats (as in differential privacy).
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from memlens.errors import UserError
from memlens.privacy.bound import CanaryAudit, audit_scores
from memlens.privacy.canaries import Canaries

Progress = Callable[[str, int, int], None]
"""Called as ``progress(phase, done, total)``."""

KIND = "dp-audit"
BYTE_BOS = 256


class DPAuditConfig(BaseModel):
    """Everything that defines a privacy audit (saved in the run's manifest).

    Model: a memlens GPT trained from scratch (``n_layer`` blocks of width ``d_model``,
    context ``seq_len``) unless ``model`` names a local Hugging Face causal LM to fine-tune.
    Data: ``train`` (the user's texts) or the built-in ``source`` (``markov`` or ``uniform``
    tokens over ``vocab_size`` ids, ``n_train`` rows). Canaries: ``canaries`` random strings of
    ``canary_length`` tokens, or the texts of ``canary_file``; ``candidates`` random strings (or
    the texts of ``candidate_file``) for exposure. Arms: ``dp_epsilons``, one training per entry
    (``None`` = without DP), all at ``dp_delta`` with clipping norm ``max_grad_norm``. Audit:
    ``confidence``, ``selection`` and the guess counts ``k_in``, ``k_out``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    # model
    model: str | None = None
    n_layer: int = Field(default=2, ge=1)
    d_model: int = Field(default=64, ge=4)
    n_head: int = Field(default=0, ge=0)
    # data
    train: str | None = None
    text_column: str = "text"
    tokenizer: str | None = None
    source: Literal["markov", "uniform"] = "markov"
    vocab_size: int = Field(default=64, ge=2)
    branching: int = Field(default=4, ge=1)
    n_train: int | None = Field(default=2000, ge=1)
    seq_len: int = Field(default=32, ge=3)
    # canaries
    canaries: int = 1000
    canary_length: int = Field(default=16, ge=2)
    canary_file: str | None = None
    candidates: int = Field(default=1000, ge=0)
    candidate_file: str | None = None
    # training
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    physical_batch_size: int | None = Field(default=None, ge=1)
    # DP-SGD arms
    dp_epsilons: tuple[float | None, ...] = (None,)
    dp_delta: float = 1e-5
    max_grad_norm: float = Field(default=1.0, gt=0)
    accountant: Literal["prv", "rdp"] = "prv"
    # audit
    confidence: float = 0.95
    selection: Literal["fixed", "split", "bonferroni"] = "fixed"
    k_in: int | None = Field(default=None, ge=0)
    k_out: int | None = Field(default=None, ge=0)
    score: Literal["loss", "loss_diff"] = "loss"
    # run
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(default=1, ge=1)
    batch_size_scoring: int = Field(default=256, ge=1)

    @field_validator("canaries")
    @classmethod
    def _m(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"an audit needs at least 2 canaries, got {v}")
        return v

    @field_validator("dp_delta")
    @classmethod
    def _delta(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"delta must be strictly between 0 and 1, got {v}")
        return v

    @field_validator("confidence")
    @classmethod
    def _conf(cls, v: float) -> float:
        if not 0.0 < v < 1.0:
            raise ValueError(f"confidence must be strictly between 0 and 1, got {v}")
        return v

    @field_validator("dp_epsilons")
    @classmethod
    def _eps(cls, v: tuple[float | None, ...]) -> tuple[float | None, ...]:
        if not v:
            raise ValueError(
                "give at least one arm (a DP epsilon, or none for training without DP)"
            )
        for e in v:
            if e is not None and not (e > 0 and math.isfinite(e)):
                raise ValueError(f"a DP epsilon must be a positive number, got {e}")
        if len(set(v)) < len(v):
            raise ValueError("the same DP epsilon is listed twice")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DPAuditConfig:
        if self.model is None and self.train is None and self.canary_file is not None:
            raise ValueError(
                "canary texts need text training data and a tokenizer; give training texts too"
            )
        if self.candidate_file is not None and self.canary_file is None:
            raise ValueError("a candidate file goes with a canary file")
        if self.model is not None and self.tokenizer is not None:
            raise ValueError("a Hugging Face model uses its own tokenizer; do not give another")
        if self.canary_file is None and self.canary_length > self.seq_len - 1:
            raise ValueError(
                f"canaries of {self.canary_length} tokens are longer than the context allows "
                f"(seq_len {self.seq_len}, one position for the first token or BOS); use shorter "
                f"canaries or a longer context"
            )
        if (
            self.k_in is not None
            and self.k_out is not None
            and self.k_in + self.k_out > self.canaries
        ):
            raise ValueError(
                f"k_in + k_out = {self.k_in + self.k_out} guesses exceed the {self.canaries} canaries"
            )
        if self.selection != "fixed" and (self.k_in is not None or self.k_out is not None):
            raise ValueError(
                f"guess counts are chosen by the {self.selection} selection; give them only with fixed"
            )
        return self

    @property
    def arms(self) -> list[tuple[str, float | None]]:
        """``(name, target ε)`` per arm, the arm without DP first."""
        out = [(arm_name(e), e) for e in self.dp_epsilons]
        return sorted(out, key=lambda a: (a[1] is not None, a[1] or 0.0))

    @property
    def guess_counts(self) -> tuple[int | None, int | None]:
        """k₊, k₋ for the fixed selection (default: a quarter of the canaries each)."""
        if self.selection != "fixed":
            return None, None
        m = self.canaries
        return (
            m // 4 if self.k_in is None else self.k_in,
            m // 4 if self.k_out is None else self.k_out,
        )


def arm_name(epsilon: float | None) -> str:
    return "no-dp" if epsilon is None else f"dp-eps{epsilon:g}"


def make_config(**fields: Any) -> DPAuditConfig:
    """A validated :class:`DPAuditConfig` (``None`` values mean "default"); :class:`UserError`
    with one sentence on bad input."""
    try:
        return DPAuditConfig(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        raise UserError(f"invalid dp-audit setting{' ' + loc if loc else ''}: {msg}.") from None


# -- results ------------------------------------------------------------------------------------


@dataclass
class ArmResult:
    """One trained model and its audit (ε in nats, code lengths and exposures in bits)."""

    name: str
    epsilon_target: float | None
    train: dict[str, Any]
    included: np.ndarray
    audit: CanaryAudit
    exposure: dict[str, Any] | None
    canary_bits: np.ndarray
    canary_loss: np.ndarray
    scores: np.ndarray
    rank_exposure: np.ndarray | None = None
    extrapolated_exposure: np.ndarray | None = None
    candidate_bits: np.ndarray | None = None
    reused: bool = False

    @property
    def epsilon_spent(self) -> float | None:
        return self.train.get("epsilon_spent")

    def summary(self) -> dict[str, Any]:
        inc = self.included
        return {
            "name": self.name,
            "dp": self.epsilon_target is not None,
            "epsilon_target": self.epsilon_target,
            "accountant_epsilon": self.epsilon_spent,
            "epsilon_lower_bound": self.audit.epsilon_lower_bound,
            "audit": self.audit.to_dict(),
            "exposure": self.exposure,
            "mean_loss_inserted_bits_per_token": float(self.canary_loss[inc].mean())
            if inc.any()
            else None,
            "mean_loss_not_inserted_bits_per_token": float(self.canary_loss[~inc].mean())
            if (~inc).any()
            else None,
            "train": self.train,
            "reused_weights": self.reused,
        }


@dataclass
class DPAuditResult:
    """What ``memlens dp-audit`` found: one :class:`ArmResult` per trained model."""

    config: DPAuditConfig
    arms: list[ArmResult]
    canaries: Canaries
    data: dict[str, Any]
    seconds: float
    out_dir: Path | None = None
    files: list[str] = field(default_factory=list)

    @property
    def reused_arms(self) -> list[str]:
        return [a.name for a in self.arms if a.reused]

    def to_dict(self) -> dict[str, Any]:
        c = self.canaries
        return {
            "method": (
                "one-run epsilon lower bound (Steinke, Nasr & Jagielski 2023, Appendix D) and "
                "canary exposure (Carlini et al. 2019)"
            ),
            "units": "epsilon in nats; code lengths, losses and exposures in bits",
            "canaries": {
                "kind": c.kind,
                "m": c.m,
                "n_included": c.n_included,
                "length_tokens": int(np.median([len(t) for t in c.tokens])),
                "n_candidates": 0 if c.candidates is None else len(c.candidates),
                "inclusion": "each independently with probability 1/2 (seeded)",
            },
            "score": self.config.score,
            "delta": self.config.dp_delta,
            "confidence": self.config.confidence,
            "selection": self.config.selection,
            "data": self.data,
            "arms": {a.name: a.summary() for a in self.arms},
            "seconds": self.seconds,
        }


# -- data ---------------------------------------------------------------------------------------


@dataclass
class _Vocab:
    size: int  # token ids of the model's embedding
    bos: int | None  # prepended to every row and canary (None: synthetic data, no BOS)
    canary_ids: np.ndarray  # ids canaries are drawn from
    describe: str
    tokenizer: Any = None


@dataclass
class _Data:
    rows: np.ndarray  # [N, S] training rows without canaries
    filler: np.ndarray  # [M, S] tokens to fill canary rows (row i for canary i)
    info: dict[str, Any]


def _stream_rows(stream: np.ndarray, width: int, bos: int, n_rows: int | None) -> np.ndarray:
    body = width - 1
    n = len(stream) // body if n_rows is None else min(n_rows, len(stream) // body)
    out = np.empty((n, width), dtype=np.int64)
    out[:, 0] = bos
    out[:, 1:] = stream[: n * body].reshape(n, body)
    return out


def _text_vocab(cfg: DPAuditConfig, tokenizer: Any) -> _Vocab:
    from memlens.data.text import bos_token_id

    if tokenizer is None:
        return _Vocab(257, BYTE_BOS, np.arange(256), "UTF-8 bytes (V=257, BOS=256)")
    bos = bos_token_id(tokenizer)
    if bos is None:
        raise UserError("the tokenizer has neither a BOS nor an EOS token to start rows with.")
    from memlens.privacy.canaries import allowed_token_ids

    V = len(tokenizer)
    ids = allowed_token_ids(V, getattr(tokenizer, "all_special_ids", []) or [])
    return _Vocab(V, bos, ids, f"tokenizer {type(tokenizer).__name__} (V={V})", tokenizer)


def _encode(texts: list[str], vocab: _Vocab) -> list[np.ndarray]:
    if vocab.tokenizer is None:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in texts]
    ids = vocab.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [np.asarray(i, dtype=np.int64) for i in ids]


def _text_data(cfg: DPAuditConfig, vocab: _Vocab, m: int) -> _Data:
    from memlens.data.text import read_texts

    texts, _ = read_texts(cfg.train, text_column=cfg.text_column)
    docs = _encode(texts, vocab)
    sep = np.array([vocab.bos], dtype=np.int64)
    stream = np.concatenate([x for d in docs for x in (d, sep)][:-1])
    fill_len = cfg.seq_len - 1 - cfg.canary_length if cfg.canary_file is None else cfg.seq_len - 1
    reserve = m * max(fill_len, 0)
    body = cfg.seq_len - 1
    if len(stream) < reserve + 2 * body:
        raise UserError(
            f"{cfg.train} holds {len(stream)} tokens, too few for {m} canary rows and at least 2 "
            f"training rows of {cfg.seq_len} tokens."
        )
    filler_tokens, rest = stream[:reserve], stream[reserve:]
    rows = _stream_rows(rest, cfg.seq_len, vocab.bos, cfg.n_train if cfg.n_train else None)
    filler = np.zeros((m, max(fill_len, 0)), dtype=np.int64)
    if fill_len > 0:
        filler = filler_tokens.reshape(m, fill_len)
    return _Data(
        rows=rows,
        filler=filler,
        info={
            "source": str(cfg.train),
            "tokens": vocab.describe,
            "n_texts": len(texts),
            "n_rows": int(len(rows)),
            "seq_len": cfg.seq_len,
        },
    )


def _synthetic_data(cfg: DPAuditConfig, m: int) -> _Data:
    from memlens.data.synthetic import MarkovSource, uniform_sequences

    S, V, n = cfg.seq_len, cfg.vocab_size, cfg.n_train or 2000
    fill_len = S - cfg.canary_length
    if cfg.source == "markov":
        src = MarkovSource(V, branching=min(cfg.branching, V), seed=cfg.seed)
        rows = src.sample(n, S, seed=cfg.seed + 1).numpy()
        filler = src.sample(m, max(fill_len, 2), seed=cfg.seed + 2).numpy()[:, :fill_len]
        desc = f"MarkovSource(V={V}, branching={min(cfg.branching, V)}, seed={cfg.seed})"
        extra = {"entropy_rate_bits_per_token": src.entropy_rate_bits()}
    else:
        rows = uniform_sequences(V, S, n, seed=cfg.seed + 1).numpy()
        filler = uniform_sequences(V, max(fill_len, 2), m, seed=cfg.seed + 2).numpy()[:, :fill_len]
        desc = f"uniform tokens (V={V})"
        extra = {"entropy_rate_bits_per_token": math.log2(V)}
    return _Data(
        rows=rows.astype(np.int64),
        filler=filler.astype(np.int64),
        info={"source": desc, "n_rows": n, "seq_len": S, "vocab_size": V, **extra},
    )


def _canaries(cfg: DPAuditConfig, vocab: _Vocab) -> Canaries:
    from memlens.data.text import read_texts
    from memlens.privacy.canaries import file_canaries, random_canaries

    if cfg.canary_file is None:
        return random_canaries(
            cfg.canaries, cfg.canary_length, vocab.canary_ids, cfg.seed, cfg.candidates
        )
    texts, _ = read_texts(cfg.canary_file, text_column=cfg.text_column)
    toks = _encode(texts, vocab)
    limit = cfg.seq_len - 1
    for i, t in enumerate(toks):
        if len(t) < 1:
            raise UserError(f"canary {i} ({texts[i][:40]!r}) tokenizes to no tokens.")
        if len(t) > limit:
            raise UserError(
                f"canary {i} has {len(t)} tokens, longer than the context of {cfg.seq_len} tokens "
                f"allows after the BOS ({limit})."
            )
    cand_texts = cand_toks = None
    if cfg.candidate_file is not None:
        cand_texts, _ = read_texts(cfg.candidate_file, text_column=cfg.text_column)
        cand_toks = _encode(cand_texts, vocab)
        if set(cand_texts) & set(texts):
            raise UserError(
                "some candidate texts are also canaries; candidates must never be trained on."
            )
    return file_canaries(texts, toks, cfg.seed, cand_texts, cand_toks)


def _with_bos(seqs: list[np.ndarray], bos: int | None) -> list[np.ndarray]:
    if bos is None:
        return [np.asarray(s, dtype=np.int64) for s in seqs]
    return [np.concatenate([[bos], s]).astype(np.int64) for s in seqs]


def _training_rows(data: _Data, canaries: Canaries, vocab: _Vocab, S: int) -> np.ndarray:
    """Data rows plus one row per included canary: [BOS] + canary + filler, cut to S tokens."""
    rows = [data.rows]
    for i in np.flatnonzero(canaries.included):
        head = _with_bos([canaries.tokens[i]], vocab.bos)[0]
        row = np.concatenate([head, data.filler[i]])[:S]
        if len(row) < S:  # a short canary text: fill from the canary's own filler row
            row = np.concatenate([row, data.filler[i][: S - len(row)]])
        if len(row) < S:
            row = np.pad(
                row, (0, S - len(row)), constant_values=vocab.bos if vocab.bos is not None else 0
            )
        rows.append(row[None])
    return np.concatenate(rows).astype(np.int64)


# -- models -------------------------------------------------------------------------------------


def _gpt_config(cfg: DPAuditConfig, vocab_size: int) -> Any:
    from memlens.models.gpt import GPTConfig

    return GPTConfig(vocab_size, cfg.seq_len, cfg.n_layer, cfg.d_model, cfg.n_head)


def _fresh_model(cfg: DPAuditConfig, vocab: _Vocab, device: Any) -> Any:
    """The initial model of every arm: a seeded GPT, or the Hugging Face model as loaded."""
    import torch

    if cfg.model is None:
        from memlens.models.gpt import GPT

        g = torch.Generator().manual_seed(cfg.seed)
        return GPT(_gpt_config(cfg, vocab.size), n_models=1, generator=g).to(device)
    from memlens.models.hf import load_causal_lm

    lm = load_causal_lm(cfg.model, device=str(device), dtype="float32")
    return lm.model


@contextlib.contextmanager
def _no_hf_bars() -> Iterator[None]:
    """No "Writing model shards" / "Loading weights" bars from transformers in memlens output."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _save_weights(model: Any, path: Path, is_gpt: bool) -> None:
    """Save trained weights (safetensors) into ``path`` atomically (a temporary directory renamed)."""
    import os

    tmp = path.parent / f".{path.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    if is_gpt:
        from memlens.models.hf import save_gpt_checkpoint

        save_gpt_checkpoint(model, tmp)
    else:
        with _no_hf_bars():
            model.save_pretrained(tmp, safe_serialization=True)
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


def _load_weights(path: Path, is_gpt: bool, device: Any) -> Any | None:
    try:
        if is_gpt:
            from memlens.models.hf import load_gpt_checkpoint

            return load_gpt_checkpoint(path).to(device).eval()
        from transformers import AutoModelForCausalLM

        from memlens.privacy.dp import quiet

        with quiet(), _no_hf_bars():
            return AutoModelForCausalLM.from_pretrained(path, dtype="float32").to(device).eval()
    except (UserError, OSError, ValueError, RuntimeError):
        return None


# -- scoring ------------------------------------------------------------------------------------


def score_bits(
    model: Any, seqs: list[np.ndarray], *, is_gpt: bool, device: Any, batch_size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Code length in bits of the predicted tokens of each sequence and their number, through the
    shared scoring pass (:func:`memlens.scoring.score_tokens` for a memlens GPT, one model on a
    leading axis; :func:`memlens.models.hf.score_sequences` for a Hugging Face model)."""
    import torch

    from memlens.scoring import gpt_forward, hf_forward, score_sequences, score_tokens

    model.eval()
    if is_gpt:
        lengths = np.array([len(s) for s in seqs], dtype=np.int64)
        T = int(lengths.max())
        ids = np.zeros((len(seqs), T), dtype=np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
        sc = score_tokens(
            gpt_forward(model),
            torch.from_numpy(ids)[None],
            lengths,
            batch_size=batch_size,
            device=device,
        )
        return sc.nll_bits[0], sc.n_predicted[0]
    sc = score_sequences(hf_forward(model), seqs, batch_size=batch_size, device=device)
    return sc.nll_bits, sc.n_predicted


# -- the run ------------------------------------------------------------------------------------


def _train_arm(
    cfg: DPAuditConfig,
    model: Any,
    rows: np.ndarray,
    epsilon: float | None,
    device: Any,
    is_gpt: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    import torch

    from memlens.privacy.dp import DPSettings, train_rows

    N = len(rows)
    steps_per_epoch = math.ceil(N / min(cfg.batch_size, N))
    tokens = torch.from_numpy(rows)
    if epsilon is None and is_gpt:
        # The shared training loop, for a fixed budget of the same number of steps.
        from memlens.training import TrainConfig, train_to_saturation
        from memlens.units import uniform_entropy_bits

        steps = cfg.epochs * steps_per_epoch
        tc = TrainConfig(
            lr=cfg.lr,
            batch_size=min(cfg.batch_size, N),
            max_steps=steps,
            min_steps=steps,
            warmup_steps=max(cfg.warmup_steps, 1),
            eval_every=steps,
            decay_frac=0.0,
        )
        V = model.config.vocab_size
        res = train_to_saturation(
            model,
            tokens[None],
            [N],
            tc,
            entropy_bits=uniform_entropy_bits(cfg.seq_len, V),
            first_token_bits=math.log2(V),
            seed=cfg.seed,
            device=device,
            progress=(lambda s, _b: progress(s, steps)) if progress else None,
        )
        model.eval()
        nll = res.final_nll_bits[0]
        return {
            "steps": res.steps,
            "epochs": cfg.epochs,
            "seconds": res.seconds,
            "private": False,
            "expected_batch_size": min(cfg.batch_size, N),
            "sample_rate": None,
            "final_loss_bits_per_token": float(nll.sum() / (N * cfg.seq_len)),
            "loop": "memlens.training.train_to_saturation (fixed budget, random permutations)",
        }
    dp = None
    if epsilon is not None:
        dp = DPSettings(epsilon, cfg.dp_delta, cfg.max_grad_norm, cfg.accountant)
    stats = train_rows(
        model,
        tokens,
        torch.full((N,), rows.shape[1]),
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        dp=dp,
        warmup_steps=cfg.warmup_steps,
        physical_batch_size=cfg.physical_batch_size,
        seed=cfg.seed,
        device=device,
        progress=progress,
    )
    return stats.to_dict()


@dataclass
class _Prepared:
    """Everything an audit needs before training, built (and checked) before anything is written."""

    vocab: _Vocab
    canaries: Canaries
    data: _Data
    rows: np.ndarray  # [N, S] training rows, canary rows included
    canary_seqs: list[np.ndarray]  # what is scored: [BOS] + canary
    candidate_seqs: list[np.ndarray] | None
    is_gpt: bool
    device: Any
    hf_model: Any = None  # the loaded Hugging Face model (before fine-tuning)


def prepare(cfg: DPAuditConfig, device: Any) -> _Prepared:
    """Load the model's vocabulary, draw the canaries, build the training rows and check that
    DP-SGD can train the model. Raises :class:`UserError` on bad input; writes nothing."""
    import torch

    is_gpt = cfg.model is None
    tokenizer = hf_model = None
    if not is_gpt:
        from memlens.models.hf import load_causal_lm

        lm = load_causal_lm(cfg.model, device=str(device), dtype="float32")
        hf_model, tokenizer = lm.model, lm.tokenizer
        if tokenizer is None:
            raise UserError(f"model {cfg.model} has no tokenizer to encode the training texts.")
        if cfg.train is None:
            raise UserError("fine-tuning a Hugging Face model needs training texts.")
        if lm.context_length is not None and cfg.seq_len > lm.context_length:
            raise UserError(
                f"rows of {cfg.seq_len} tokens are longer than the context of "
                f"{lm.context_length} tokens of model {cfg.model}."
            )
    elif cfg.tokenizer is not None:
        if cfg.train is None:
            raise UserError("a tokenizer applies only to training texts; give training texts too.")
        from memlens.models.hf import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
    if cfg.train is not None:
        vocab = _text_vocab(cfg, tokenizer)
    else:
        from memlens.privacy.canaries import allowed_token_ids

        V = cfg.vocab_size
        vocab = _Vocab(V, None, allowed_token_ids(V), f"synthetic ids (V={V})")
    canaries = _canaries(cfg, vocab)
    m = canaries.m
    k_in, k_out = cfg.guess_counts
    if (k_in or 0) + (k_out or 0) > m:
        raise UserError(f"k_in + k_out = {k_in + k_out} guesses exceed the {m} canaries.")
    data = _text_data(cfg, vocab, m) if cfg.train is not None else _synthetic_data(cfg, m)
    rows = _training_rows(data, canaries, vocab, cfg.seq_len)
    if any(e is not None for e in cfg.dp_epsilons):
        from memlens.privacy.dp import check_private_trainable

        probe = _fresh_model(cfg, vocab, device) if is_gpt else hf_model
        check_private_trainable(probe, torch.from_numpy(rows[:2]), device)
    return _Prepared(
        vocab=vocab,
        canaries=canaries,
        data=data,
        rows=rows,
        canary_seqs=_with_bos(canaries.tokens, vocab.bos),
        candidate_seqs=_with_bos(canaries.candidates, vocab.bos) if canaries.candidates else None,
        is_gpt=is_gpt,
        device=device,
        hf_model=hf_model,
    )


def _trained_arm(
    cfg: DPAuditConfig,
    prep: _Prepared,
    run_dir: Any,
    name: str,
    epsilon: float | None,
    progress: Progress | None,
) -> tuple[Any, dict[str, Any], bool]:
    """The arm's trained model and training stats: reused from ``run_dir`` when a finished cell and
    its weights are there, else trained from the shared initialization and saved."""
    key, path = f"arm-{name}", run_dir.path / "models" / name
    stats = run_dir.load_cell(key)
    if stats is not None:
        model = _load_weights(path, prep.is_gpt, prep.device)
        if model is not None:
            return model, stats, True
    model = _fresh_model(cfg, prep.vocab, prep.device)

    def tick(done: int, total: int) -> None:
        if progress is not None:
            progress(f"training {name}", done, total)

    stats = _train_arm(cfg, model, prep.rows, epsilon, prep.device, prep.is_gpt, tick)
    _save_weights(model, path, prep.is_gpt)
    run_dir.save_cell(key, stats)  # written after the weights: a cell means "weights complete"
    return model, stats, False


def _audit_arm(
    cfg: DPAuditConfig,
    prep: _Prepared,
    model: Any,
    name: str,
    epsilon: float | None,
    stats: dict[str, Any],
    reused: bool,
    base_bits: np.ndarray | None,
) -> ArmResult:
    """Score the canaries (and candidates), guess, bound ε and measure exposure for one model."""
    from memlens.privacy.exposure import exposure_summary, extrapolated_exposure, rank_exposure

    kw = dict(is_gpt=prep.is_gpt, device=prep.device, batch_size=cfg.batch_size_scoring)
    bits, n_pred = score_bits(model, prep.canary_seqs, **kw)
    loss = bits / np.maximum(n_pred, 1)  # bits per predicted token
    scores = -loss if base_bits is None else base_bits / np.maximum(n_pred, 1) - loss
    k_in, k_out = cfg.guess_counts
    audit = audit_scores(
        scores,
        prep.canaries.included,
        delta=cfg.dp_delta,
        confidence=cfg.confidence,
        selection=cfg.selection,
        k_in=k_in,
        k_out=k_out,
        seed=cfg.seed,
    )
    arm = ArmResult(
        name=name,
        epsilon_target=epsilon,
        train=stats,
        included=prep.canaries.included,
        audit=audit,
        exposure=None,
        canary_bits=bits,
        canary_loss=loss,
        scores=scores,
        reused=reused,
    )
    if prep.candidate_seqs:
        cbits, _ = score_bits(model, prep.candidate_seqs, **kw)
        ext, fit = extrapolated_exposure(bits, cbits)
        arm.candidate_bits = cbits
        arm.rank_exposure = rank_exposure(bits, cbits)
        arm.extrapolated_exposure = ext
        arm.exposure = {
            **exposure_summary(arm.rank_exposure, ext, prep.canaries.included, len(cbits)),
            "skew_normal": fit.to_dict(),
        }
    return arm


def _opacus_version() -> str | None:
    import importlib.metadata as md

    try:
        return md.version("opacus")
    except md.PackageNotFoundError:  # pragma: no cover
        return None


def run(
    config: DPAuditConfig, out: str | Path, *, progress: Progress | None = None
) -> DPAuditResult:
    """Run the privacy audit described by ``config`` into the run directory ``out``.

    Every arm's trained weights are a resumable cell: rerunning with the same ``out`` and config
    reuses them and only scores again. Bad input raises :class:`UserError` before anything is
    written.

    Returns
    -------
    DPAuditResult, also written as ``dp_audit.json``, ``arms.csv``, ``canaries.parquet`` and
    ``dp_audit.png`` (with ``manifest.json``) in ``out``.
    """
    import torch

    from memlens.store import RunDir
    from memlens.training import pick_device

    cfg = config
    start = time.perf_counter()
    threads_before = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        prep = prepare(cfg, pick_device(cfg.device))
        run_dir = RunDir(out, KIND, cfg.model_dump(), cfg.seed)
        run_dir.write_manifest(status="running")
        (run_dir.path / "models").mkdir(exist_ok=True)
        base_bits = None
        if cfg.score == "loss_diff":  # the same initial model for every arm
            init = _fresh_model(cfg, prep.vocab, prep.device) if prep.is_gpt else prep.hf_model
            base_bits, _ = score_bits(
                init, prep.canary_seqs, is_gpt=prep.is_gpt, device=prep.device,
                batch_size=cfg.batch_size_scoring,
            )  # fmt: skip
        prep.hf_model = None
        arms: list[ArmResult] = []
        for name, eps in cfg.arms:
            model, stats, reused = _trained_arm(cfg, prep, run_dir, name, eps, progress)
            if progress is not None:
                progress(f"scoring {name}", 0, 1)
            arms.append(_audit_arm(cfg, prep, model, name, eps, stats, reused, base_bits))
            if progress is not None:
                progress(f"scoring {name}", 1, 1)
            del model
        result = DPAuditResult(
            config=cfg,
            arms=arms,
            canaries=prep.canaries,
            data={
                **prep.data.info,
                "n_training_rows": int(len(prep.rows)),
                "tokens": prep.vocab.describe,
            },
            seconds=time.perf_counter() - start,
            out_dir=run_dir.path,
        )
        result.files = _write_outputs(run_dir, result)
        run_dir.write_manifest(
            status="done",
            opacus=_opacus_version(),
            accountant_epsilon={a.name: a.epsilon_spent for a in arms},
            epsilon_lower_bound={a.name: a.audit.epsilon_lower_bound for a in arms},
            reused_arms=result.reused_arms,
            seconds=result.seconds,
        )
        return result
    finally:
        torch.set_num_threads(threads_before)


# -- outputs ------------------------------------------------------------------------------------


def arms_table(result: DPAuditResult) -> Any:
    """One row per arm: the accountant's ε beside ε̂, guesses, ceiling and exposure margins."""
    import pandas as pd

    rows = []
    for a in result.arms:
        ex = a.exposure or {}
        rows.append(
            {
                "arm": a.name,
                "epsilon_target": a.epsilon_target,
                "accountant_epsilon": a.epsilon_spent,
                "noise_multiplier": a.train.get("noise_multiplier"),
                "epsilon_lower_bound": a.audit.epsilon_lower_bound,
                "guesses": a.audit.guesses,
                "correct": a.audit.correct,
                "ceiling": a.audit.ceiling,
                "ceiling_at_guesses": a.audit.ceiling_at_guesses,
                "rank_exposure_inserted": ex.get("rank_inserted_mean"),
                "rank_exposure_not_inserted": ex.get("rank_not_inserted_mean"),
                "rank_exposure_margin": ex.get("rank_margin"),
                "extrapolated_exposure_inserted": ex.get("extrapolated_inserted_mean"),
                "extrapolated_exposure_not_inserted": ex.get("extrapolated_not_inserted_mean"),
                "extrapolated_exposure_margin": ex.get("extrapolated_margin"),
                "train_seconds": a.train.get("seconds"),
                "steps": a.train.get("steps"),
                "reused_weights": a.reused,
            }
        )
    return pd.DataFrame(rows)


def canaries_table(result: DPAuditResult) -> Any:
    """One row per canary: inclusion, and per arm its code length, loss, score, guess and exposures."""
    import pandas as pd

    from memlens.privacy.bound import guess

    c = result.canaries
    df = pd.DataFrame({"canary": np.arange(c.m), "included": c.included})
    if c.texts is not None:
        df["text"] = c.texts
    else:
        df["tokens"] = [" ".join(map(str, t.tolist())) for t in c.tokens]
    for a in result.arms:
        p = a.name
        df[f"{p}:bits"] = a.canary_bits
        df[f"{p}:loss_bits_per_token"] = a.canary_loss
        df[f"{p}:score"] = a.scores
        if a.audit.selection != "split":
            df[f"{p}:guess"] = guess(a.scores, a.audit.k_in, a.audit.k_out)
        if a.rank_exposure is not None:
            df[f"{p}:rank_exposure"] = a.rank_exposure
            df[f"{p}:extrapolated_exposure"] = a.extrapolated_exposure
    return df


def plot(result: DPAuditResult) -> Any:
    """ε̂ against the accountant's ε (nats): DP arms on a log axis with the soundness diagonal
    ε̂ = ε, the arm without DP in a panel of its own at ε = ∞, and the ceilings."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    dp = [a for a in result.arms if a.epsilon_spent is not None]
    nodp = [a for a in result.arms if a.epsilon_spent is None]
    audit0 = result.arms[0].audit
    ceil, cg = audit0.ceiling, audit0.ceiling_at_guesses
    top = max([ceil] + [a.audit.epsilon_lower_bound for a in result.arms]) * 1.3 + 0.1
    panels = [p for p, arms in (("dp", dp), ("nodp", nodp)) if arms]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(6.4 if len(panels) == 2 else 5.0, 4.8),
        sharey=True,
        gridspec_kw={"width_ratios": [4, 1] if len(panels) == 2 else [1]},
        squeeze=False,
    )
    axes = axes[0]
    for ax, panel in zip(axes, panels, strict=True):
        ax.axhline(
            ceil,
            ls="--",
            color="k",
            lw=1,
            label=f"ceiling, all {audit0.canaries} canaries ({ceil:.2f})",
        )
        if abs(cg - ceil) > 1e-6:
            ax.axhline(
                cg,
                ls="-.",
                color="k",
                lw=0.8,
                alpha=0.6,
                label=f"ceiling at {audit0.guesses} guesses ({cg:.2f})",
            )
        if panel == "dp":
            xs = np.array([a.epsilon_spent for a in dp])
            lo, hi = xs.min() / 3, xs.max() * 3
            grid = np.geomspace(lo, hi, 50)
            ax.plot(
                grid,
                np.minimum(grid, top * 2),
                ":",
                color="gray",
                label="ε̂ = accountant's ε (soundness limit)",
            )
            ax.plot(
                xs,
                [a.audit.epsilon_lower_bound for a in dp],
                "o",
                color="C0",
                ms=8,
                label="DP-SGD arms: ε̂",
            )
            for a in dp:
                ax.annotate(
                    f"{a.audit.epsilon_lower_bound:.2f}",
                    (a.epsilon_spent, a.audit.epsilon_lower_bound),
                    textcoords="offset points",
                    xytext=(6, 6),
                    fontsize=8,
                )
            ax.set_xscale("log")
            ax.set_xlim(lo, hi)
            ax.xaxis.set_major_formatter(FormatStrFormatter("%.3g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(xs)
            ax.set_xlabel(f"accountant's ε ({dp[0].train.get('accountant', '').upper()}, nats)")
        else:
            for a in nodp:
                ax.plot([0], [a.audit.epsilon_lower_bound], "s", color="C3", ms=8, label="no DP: ε̂")
                ax.annotate(
                    f"{a.audit.epsilon_lower_bound:.2f}",
                    (0, a.audit.epsilon_lower_bound),
                    textcoords="offset points",
                    xytext=(-8, 8),
                    fontsize=8,
                )
            ax.set_xlim(-1, 1)
            ax.set_xticks([0], ["∞"])
            ax.set_xlabel("no DP")
        ax.set_ylim(0, top)
    axes[0].set_ylabel("ε̂, one-run 95% lower bound (nats)")
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=2, frameon=False)
    fig.suptitle(
        f"One-run audit (Steinke et al. 2023): δ = {result.config.dp_delta:g}, "
        f"{audit0.selection} k±, {result.config.confidence * 100:g}% confidence",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    return fig


def _write_outputs(run_dir: Any, result: DPAuditResult) -> list[str]:
    run_dir.write_json("dp_audit.json", result.to_dict())
    run_dir.write_table("arms.csv", arms_table(result))
    run_dir.write_table("canaries.parquet", canaries_table(result))
    run_dir.save_figure("dp_audit.png", plot(result))
    return ["dp_audit.json", "arms.csv", "canaries.parquet", "dp_audit.png"]


__all__ = [
    "ArmResult",
    "DPAuditConfig",
    "DPAuditResult",
    "arm_name",
    "arms_table",
    "canaries_table",
    "make_config",
    "plot",
    "prepare",
    "run",
    "score_bits",
]
