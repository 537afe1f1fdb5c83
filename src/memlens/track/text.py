"""Track memorization while fine-tuning a user's Hugging Face causal LM on their texts.

The experiment behind ``memlens track --model DIR --train FILE [--track FILE] [--reference DIR]``:

1. Load the model and its tokenizer (:func:`memlens.models.hf.load_causal_lm`, float32 for
   training), the training texts (:func:`memlens.data.text.load_texts`: optional chunking into
   ``seq_len`` tokens, exact deduplication with counts) and the texts to track.
2. Group the tracked texts by how often they occur in the training texts: ``repeated`` (more
   than once), ``unique`` (once) and ``heldout`` (never: the controls). Without ``--track`` a
   seeded sample of the training texts is tracked (and there are no held-out controls).
3. Reference code lengths: with ``--reference`` each tracked text is scored once by the
   reference model (:func:`memlens.scoring.score_texts`, its own tokenizer, bits per text), and
   unintended bits are ``max(0, NLL_ref - NLL_target)`` (Morris et al. 2025, arXiv:2505.24832);
   the answer depends on the reference, which is reported. Both models' first text token is
   charged alike: as each codes it when both tokenizers start texts with a BOS, else ``log2 V``
   of each tokenizer (``first_token``: ``uniform``), as in the audit
   (:func:`memlens.scoring.comparable_bits`). Without a reference the memorization
   criterion is greedy extraction (Carlini et al. 2023).
4. Fine-tune with a Hugging Face ``Trainer`` (constant learning rate, AdamW) on every training
   text as often as it occurs, with :func:`memlens.track.trainer_callback` observing the
   tracked texts on a log-spaced schedule. Trainer checkpoints in ``hf-checkpoints/`` make a
   rerun with the same ``--out`` resume, and the tracker resumes from its stored parts.

Every text is encoded as the scoring engine expects: BOS first (see :mod:`memlens.models.hf`),
so every real token is predicted and the first is not charged.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from memlens.config import Config, require_config
from memlens.errors import UserError
from memlens.progress import ProgressFn, emit
from memlens.results import RunResult
from memlens.track.examples import TrackSet, tfidf_rarity_tokens
from memlens.track.recipe import Threshold, _finish
from memlens.track.schedules import Schedule
from memlens.track.summary import TrackSummary
from memlens.track.tracker import Tracker
from memlens.track.trainer import trainer_callback
from memlens.units import uniform_code_bits


class TextTrackConfig(Config):
    """Settings of a text tracking run (saved in the manifest). Lengths are in target tokens."""

    what: ClassVar[str] = "track config"

    model: str
    train: str
    track: str | None = None
    reference: str | None = None
    tokenizer: str | None = None
    text_column: str = "text"
    split: str | None = None
    seq_len: int | None = Field(default=None, ge=1)
    max_track: int = Field(default=512, ge=1)
    steps: int = Field(default=200, ge=1)
    lr: float = Field(default=5e-4, gt=0)
    batch_size: int = Field(default=8, ge=1)
    weight_decay: float = Field(default=0.0, ge=0)
    prefix: int = Field(default=32, ge=1)
    suffix: int = Field(default=32, ge=1)
    threshold: Threshold = 0.5
    points_per_decade: int = Field(default=12, ge=1)
    checkpoint_every: int = Field(default=100, ge=1)
    device: str = "cpu"
    seed: int = Field(default=0, ge=0)


def _check_context(tokens: list[np.ndarray], context: int | None, what: str) -> None:
    if context is None:
        return
    longest = max(len(t) for t in tokens)
    if longest > context:
        raise UserError(
            f"a {what} text has {longest} tokens (with BOS), longer than the model's context of {context}; "
            "cut texts with `seq_len`."
        )


def build_text_trackset(
    cfg: TextTrackConfig, lm: Any
) -> tuple[TrackSet, list[np.ndarray], list[int]]:
    """The tracked texts as a :class:`TrackSet`, plus the encoded training rows and their counts."""
    from memlens.data.text import encode_texts, load_texts

    tok = lm.tokenizer
    kw = {
        "text_column": cfg.text_column,
        "split": cfg.split,
        "tokenizer": tok,
        "seq_len": cfg.seq_len,
        "dedup": True,
    }
    train = load_texts(cfg.train, **kw)
    count_of = {t: int(c) for t, c in zip(train.texts, train.counts, strict=True)}
    if cfg.track is not None:
        texts = load_texts(cfg.track, **kw).texts
    else:
        texts = list(train.texts)
    if len(texts) > cfg.max_track:
        rng = np.random.default_rng(cfg.seed)
        texts = [texts[i] for i in sorted(rng.choice(len(texts), cfg.max_track, replace=False))]
    counts = np.array([count_of.get(t, 0) for t in texts], dtype=np.int64)
    groups = np.where(counts > 1, "repeated", np.where(counts == 1, "unique", "heldout"))

    enc_train = encode_texts(train.texts, tok)
    enc = encode_texts(texts, tok)
    _check_context(enc_train.tokens, lm.context_length, "training")
    _check_context(enc.tokens, lm.context_length, "tracked")
    n_lead = 1 if enc.bos_token_id is not None else 0
    rarity = tfidf_rarity_tokens(
        [t[n_lead:] for t in enc.tokens],
        [t[n_lead:] for t in enc_train.tokens],
        train.counts.tolist(),
        counts > 0,
    )
    ref_bits = np.full(len(texts), np.nan)
    reference = "none (criterion: greedy extraction)"
    first_bits, first_token = enc.first_token_bits, "model"
    if cfg.reference is not None:
        from memlens.models.hf import load_causal_lm
        from memlens.scoring import score_texts

        ref = load_causal_lm(cfg.reference, dtype="float32", device=cfg.device)
        if ref.tokenizer is None:
            raise UserError(f"reference model {cfg.reference} has no tokenizer to read text with.")
        ref_code = score_texts(ref, texts).code_lengths()
        # Both models' first text token charged alike (as the audit does, see
        # memlens.scoring.comparable_bits): as each model codes it when both tokenizers start
        # texts with a BOS, else log2 V of each tokenizer.
        first_token = "model" if ref_code.has_bos and n_lead == 1 else "uniform"
        ref_bits = ref_code.charged(first_token)
        if first_token == "uniform":
            first_bits = uniform_code_bits(len(tok))
        if first_token == "model":
            how = "first token free after BOS"
        elif ref_code.has_bos or n_lead == 1:
            how = "first text token charged log2 V under both tokenizers, as only one has a BOS"
        else:
            how = "first token coded at log2 V"
        reference = f"model {cfg.reference} (bits per text under its own tokenizer; {how})"
    examples = TrackSet(
        tokens=enc.tokens,
        groups=groups,
        reference_bits=ref_bits,
        first_token_bits=first_bits,
        n_lead=n_lead,
        first_token=first_token,
        counts=counts,
        rarity=rarity,
        reference=reference,
        texts=texts,
    )
    rows = [t for t, c in zip(enc_train.tokens, train.counts, strict=True) for _ in range(int(c))]
    return examples, rows, train.counts.tolist()


class _Rows:
    """A map-style dataset of token rows for the Hugging Face Trainer."""

    def __init__(self, rows: list[np.ndarray]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.rows[i]}


def _collator(pad_id: int) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
    import torch

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        T = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), T), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.as_tensor(b["input_ids"])
            mask[i, :n] = 1
        labels = ids.masked_fill(mask == 0, -100)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def _resume_point(ckpt_dir: Path) -> tuple[int, Path | None]:
    """The step and directory of the latest *complete* Trainer checkpoint in ``ckpt_dir`` (``0,
    None`` when there is none), after deleting the checkpoints a crash cut short.

    The Trainer writes a checkpoint's files in place and its ``trainer_state.json`` last, so a
    checkpoint whose state does not parse was being written when the run was killed; resuming
    from it fails, and the one before it (kept, ``save_total_limit`` = 1 deletes it only after
    the next is complete) holds the same training up to its step.
    """
    import json
    import shutil

    complete: list[tuple[int, Path]] = []
    for d in ckpt_dir.glob("checkpoint-*") if ckpt_dir.is_dir() else []:
        step = d.name.removeprefix("checkpoint-")
        if not (d.is_dir() and step.isdigit()):
            continue
        try:
            json.loads((d / "trainer_state.json").read_text())
            complete.append((int(step), d))
        except (OSError, ValueError):
            shutil.rmtree(d, ignore_errors=True)
    return max(complete, default=(0, None))


def _mean_loss_bits(log_history: list[dict[str, Any]]) -> float | None:
    """Mean training loss in bits per token over every logged step (the Trainer logs each step's
    loss; its history is saved with each checkpoint, so it spans every session of a resumed run),
    or ``None`` when no step was logged."""
    losses = [float(h["loss"]) for h in log_history if "loss" in h]
    return float(np.mean(losses)) / math.log(2) if losses else None


def run(
    cfg: TextTrackConfig,
    out: str | os.PathLike[str] | None = None,
    *,
    progress: ProgressFn | None = None,
) -> RunResult[TrackSummary]:
    """Fine-tune ``cfg.model`` on ``cfg.train`` while tracking memorization of the tracked texts.

    The user's model trains in a Hugging Face ``Trainer`` (constant learning rate, AdamW),
    observed by :func:`memlens.track.trainer_callback`. Everything is loaded and validated before
    the run directory is created, so bad input leaves nothing behind. Writes the same files as
    :func:`memlens.track.run_quick` (except the GPT checkpoint: Trainer checkpoints live in
    ``hf-checkpoints/``). ``progress`` receives a :class:`~memlens.progress.ProgressEvent` per step.
    """
    require_config(cfg, TextTrackConfig)
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from memlens.models.hf import load_causal_lm
    from memlens.store import RunDir, default_out_dir

    lm = load_causal_lm(cfg.model, tokenizer=cfg.tokenizer, dtype="float32", device=cfg.device)
    if lm.tokenizer is None:
        raise UserError(
            f"model {cfg.model} has no tokenizer to read text with; pass one as `tokenizer`."
        )
    examples, rows, _ = build_text_trackset(cfg, lm)
    if (
        not examples.has_reference
        and not (examples.lengths - examples.n_lead >= cfg.prefix + cfg.suffix).any()
    ):
        need = cfg.prefix + cfg.suffix
        if cfg.seq_len is not None and cfg.seq_len < need:
            raise UserError(
                f"texts are cut into pieces of {cfg.seq_len} tokens (`seq_len`), fewer than the "
                f"{need} that extraction needs (`prefix` + `suffix`), and there is no "
                "`reference`; raise `seq_len`, shorten `prefix` and `suffix`, or give a "
                "reference model."
            )
        raise UserError(
            f"no tracked text has {need} tokens for extraction and there is no "
            "`reference`; use a shorter `prefix` and `suffix` or give a reference model."
        )
    pad = lm.tokenizer.pad_token_id
    pad_id = int(pad) if isinstance(pad, int) else 0

    run = RunDir(out or default_out_dir("track"), "track", cfg, cfg.seed)
    run.write_manifest(status="running", target=lm.describe())
    tracker = Tracker(
        examples,
        run.path / "track",
        schedule=Schedule.log(cfg.points_per_decade),
        prefix=cfg.prefix,
        suffix=cfg.suffix,
        batch_size=32,
    )
    ckpt_dir = run.path / "hf-checkpoints"
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        max_steps=cfg.steps,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.lr,
        lr_scheduler_type="constant",
        weight_decay=cfg.weight_decay,
        logging_strategy="steps",  # every step's loss, in the checkpoints' log history
        logging_steps=1,
        save_strategy="steps",
        save_steps=cfg.checkpoint_every,
        save_total_limit=1,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        use_cpu=lm.device.type == "cpu",
        disable_tqdm=True,
        remove_unused_columns=False,
        dataloader_num_workers=0,
    )

    class _Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            emit(progress, "fine-tuning", state.global_step, state.max_steps)

    trainer = Trainer(
        model=lm.model,
        args=args,
        train_dataset=_Rows(rows),
        data_collator=_collator(pad_id),
        callbacks=[trainer_callback(tracker), _Progress()],
    )
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    trainer.remove_callback(PrinterCallback)  # memlens prints its own summary
    resumed_from, checkpoint = _resume_point(ckpt_dir)
    resume = checkpoint is not None
    if resumed_from >= cfg.steps:
        # a finished run: its tracker holds every observation, its last checkpoint the losses
        # (the Trainer, resumed at its last step, would train one step more)
        from transformers import TrainerState

        state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
        global_step, log_history = state.global_step, state.log_history
        if (tracker.last_step or 0) < global_step:  # killed before its last observation
            from safetensors.torch import load_file

            lm.model.load_state_dict(load_file(checkpoint / "model.safetensors"), strict=False)
            tracker.observe(lm.model, global_step, force=True)
            tracker.flush()
    else:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            trainer.train(resume_from_checkpoint=str(checkpoint) if resume else None)
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        global_step, log_history = trainer.state.global_step, trainer.state.log_history
    loss_bits = _mean_loss_bits(log_history)
    if loss_bits is not None and not math.isfinite(loss_bits):
        raise UserError("training diverged (NaN or infinite loss); lower the learning rate `lr`.")
    summary = _finish(
        run,
        tracker,
        cfg.threshold,
        "auto",
        training={
            "steps": int(global_step),
            "train_rows": len(rows),
            "epochs": global_step * cfg.batch_size / max(1, len(rows)),
            "mean_training_loss_bits_per_token": loss_bits,
            "model": lm.describe(),
            "resumed": resume,
            "resumed_from_step": resumed_from,
        },
        target=lm.describe(),
    )
    reused = [f"checkpoint at step {resumed_from}"] if resume and resumed_from else []
    return RunResult(summary, run.path, reused)
