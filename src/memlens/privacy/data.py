"""The audit's data: token vocabulary, training rows and canaries (``memlens dp-audit``).

Training rows of ``seq_len`` tokens come from a built-in source (a seeded
:class:`~memlens.data.synthetic.MarkovSource`, or uniform tokens; no BOS) or from the user's
texts (UTF-8 bytes with BOS 256, or a tokenizer whose BOS, or EOS, starts every row). Canaries
are random token strings over the ids :func:`~memlens.privacy.canaries.allowed_token_ids` allows
(or the user's canary texts), each included with probability ½; an included canary is one
training row, [BOS] + canary filled up to ``seq_len`` with data tokens used nowhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.privacy.canaries import Canaries
from memlens.privacy.config import DPAuditConfig

BYTE_BOS = 256


@dataclass
class Vocab:
    """The token ids of an audit: the model's vocabulary, the BOS, the ids canaries use."""

    size: int  # token ids of the model's embedding
    bos: int | None  # prepended to every row and canary (None: synthetic data, no BOS)
    canary_ids: np.ndarray  # ids canaries are drawn from
    describe: str
    tokenizer: Any = None


@dataclass
class TrainingData:
    """Training rows without canaries, the filler of each canary's row, a description."""

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


def text_vocab(cfg: DPAuditConfig, tokenizer: Any) -> Vocab:
    from memlens.data.text import bos_token_id

    if tokenizer is None:
        return Vocab(257, BYTE_BOS, np.arange(256), "UTF-8 bytes (V=257, BOS=256)")
    bos = bos_token_id(tokenizer)
    if bos is None:
        raise UserError("the tokenizer has neither a BOS nor an EOS token to start rows with.")
    from memlens.privacy.canaries import allowed_token_ids

    V = len(tokenizer)
    ids = allowed_token_ids(V, getattr(tokenizer, "all_special_ids", []) or [])
    return Vocab(V, bos, ids, f"tokenizer {type(tokenizer).__name__} (V={V})", tokenizer)


def encode(texts: list[str], vocab: Vocab) -> list[np.ndarray]:
    if vocab.tokenizer is None:
        return [np.frombuffer(t.encode("utf-8"), dtype=np.uint8).astype(np.int64) for t in texts]
    ids = vocab.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [np.asarray(i, dtype=np.int64) for i in ids]


def text_data(cfg: DPAuditConfig, vocab: Vocab, m: int, texts: list[str]) -> TrainingData:
    """The training stream of ``texts`` (the ``cfg.train`` file, read once by :func:`prepare`)."""
    docs = encode(texts, vocab)
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
    return TrainingData(
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


def synthetic_data(cfg: DPAuditConfig, m: int) -> TrainingData:
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
    return TrainingData(
        rows=rows.astype(np.int64),
        filler=filler.astype(np.int64),
        info={"source": desc, "n_rows": n, "seq_len": S, "vocab_size": V, **extra},
    )


def check_canaries_not_in_training(canary_texts: list[str], train_texts: list[str]) -> None:
    """Raise :class:`UserError` if a canary text occurs verbatim in the training texts.

    The one-run audit needs each canary in the training data only through its own coin
    (Steinke, Nasr & Jagielski 2023): a canary the training texts hold anyway is trained on in
    its "out" world too, so guessing it measures the data, not the inclusion.
    """
    _refuse_trained_texts(
        "canary",
        canary_texts,
        train_texts,
        "also occurs in the training texts; a canary must reach the training data only through "
        "its own coin",
    )


def _refuse_trained_texts(kind: str, texts: list[str], train_texts: list[str], why: str) -> None:
    """Raise :class:`UserError` naming the first of ``texts`` found verbatim in ``train_texts``."""
    corpus = "\x00".join(train_texts)
    for i, c in enumerate(texts):
        if c and c in corpus:
            raise UserError(f"{kind} {i} ({c[:40]!r}) {why}, so remove it from one of the two.")


def _check_lengths(kind: str, texts: list[str], toks: list[Any], seq_len: int) -> None:
    """Every text tokenizes to at least one token and fits the context after the BOS."""
    limit = seq_len - 1
    for i, t in enumerate(toks):
        if len(t) < 1:
            raise UserError(f"{kind} {i} ({texts[i][:40]!r}) tokenizes to no tokens.")
        if len(t) > limit:
            raise UserError(
                f"{kind} {i} has {len(t)} tokens, longer than the context of {seq_len} tokens "
                f"allows after the BOS ({limit})."
            )


def make_canaries(
    cfg: DPAuditConfig, vocab: Vocab, train_texts: list[str] | None = None
) -> Canaries:
    from memlens.data.text import read_texts
    from memlens.privacy.canaries import file_canaries, random_canaries

    if cfg.canary_file is None:
        return random_canaries(
            cfg.canaries, cfg.canary_length, vocab.canary_ids, cfg.seed, cfg.candidates
        )
    texts, _ = read_texts(cfg.canary_file, text_column=cfg.text_column)
    if train_texts is not None:
        check_canaries_not_in_training(texts, train_texts)
    toks = encode(texts, vocab)
    seen: dict[bytes, int] = {}
    for i, t in enumerate(toks):  # (identical lines are refused below, with their own sentence)
        j = seen.setdefault(np.asarray(t, dtype=np.int64).tobytes(), i)
        if j != i and texts[j] != texts[i]:
            raise UserError(
                f"canaries {j} and {i} are different texts but the same tokens; every canary "
                "must be distinct as the model sees it."
            )
    _check_lengths("canary", texts, toks, cfg.seq_len)
    cand_texts = cand_toks = None
    if cfg.candidate_file is not None:
        cand_texts, _ = read_texts(cfg.candidate_file, text_column=cfg.text_column)
        cand_toks = encode(cand_texts, vocab)
        if len(cand_texts) < 10:
            raise UserError(
                f"exposure needs at least 10 candidate texts, got {len(cand_texts)} in "
                f"{cfg.candidate_file}."
            )
        if set(cand_texts) & set(texts):
            raise UserError(
                "some candidate texts are also canaries; candidates must never be trained on."
            )
        if train_texts is not None:
            _refuse_trained_texts(
                "candidate",
                cand_texts,
                train_texts,
                "occurs in the training texts; exposure ranks canaries among texts never "
                "trained on",
            )
        _check_lengths("candidate", cand_texts, cand_toks, cfg.seq_len)
    return file_canaries(texts, toks, cfg.seed, cand_texts, cand_toks)


def with_bos(seqs: list[np.ndarray], bos: int | None) -> list[np.ndarray]:
    if bos is None:
        return [np.asarray(s, dtype=np.int64) for s in seqs]
    return [np.concatenate([[bos], s]).astype(np.int64) for s in seqs]


def training_rows(data: TrainingData, canaries: Canaries, vocab: Vocab, S: int) -> np.ndarray:
    """Data rows plus one row per included canary: [BOS] + canary + filler, cut to S tokens."""
    rows = [data.rows]
    for i in np.flatnonzero(canaries.included):
        head = with_bos([canaries.tokens[i]], vocab.bos)[0]
        row = np.concatenate([head, data.filler[i]])[:S]
        if len(row) < S:  # a short canary text: fill from the canary's own filler row
            row = np.concatenate([row, data.filler[i][: S - len(row)]])
        if len(row) < S:
            row = np.pad(
                row, (0, S - len(row)), constant_values=vocab.bos if vocab.bos is not None else 0
            )
        rows.append(row[None])
    return np.concatenate(rows).astype(np.int64)


def _with_lora(cfg: DPAuditConfig, model: Any) -> Any:
    """``model`` with a fresh LoRA adapter of ``cfg.lora`` (raises on targets it lacks)."""
    import torch

    from memlens.models.finetune import attach_lora

    with torch.random.fork_rng(devices=[]):
        return attach_lora(model, cfg.lora, name=str(cfg.model))


def _without_lora(peft_model: Any) -> Any:
    """The base model again, its LoRA layers removed (``peft``'s ``unload``)."""
    from memlens.models.loading import quiet_transformers

    with quiet_transformers():
        base = peft_model.unload()
    for p in base.parameters():  # peft froze the base; restore as loaded
        p.requires_grad_(True)
    return base.eval()


@dataclass
class Prepared:
    """Everything an audit needs before training, built (and checked) before anything is written."""

    vocab: Vocab
    canaries: Canaries
    data: TrainingData
    rows: np.ndarray  # [N, S] training rows, canary rows included
    canary_seqs: list[np.ndarray]  # what is scored: [BOS] + canary
    candidate_seqs: list[np.ndarray] | None
    is_gpt: bool
    device: Any
    hf_model: Any = None  # the loaded Hugging Face model (before fine-tuning)


def prepare(cfg: DPAuditConfig, device: Any) -> Prepared:
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
            raise UserError("fine-tuning a Hugging Face model needs training texts (`train`).")
        if lm.context_length is not None and cfg.seq_len > lm.context_length:
            raise UserError(
                f"rows of {cfg.seq_len} tokens (`seq_len`) are longer than the context of "
                f"{lm.context_length} tokens of model {cfg.model}."
            )
    elif cfg.tokenizer is not None:
        if cfg.train is None:
            raise UserError("`tokenizer` applies only to training texts; give `train` too.")
        from memlens.models.hf import load_tokenizer

        tokenizer = load_tokenizer(cfg.tokenizer)
    if cfg.train is not None:
        vocab = text_vocab(cfg, tokenizer)
    else:
        from memlens.privacy.canaries import allowed_token_ids

        V = cfg.vocab_size
        vocab = Vocab(V, None, allowed_token_ids(V), f"synthetic ids (V={V})")
    train_texts = None
    if cfg.train is not None:
        from memlens.data.text import read_texts

        train_texts, _ = read_texts(cfg.train, text_column=cfg.text_column)
    canaries = make_canaries(cfg, vocab, train_texts)
    m = canaries.m
    cfg.check_canary_count(m)
    if train_texts is not None:
        data = text_data(cfg, vocab, m, train_texts)
    else:
        data = synthetic_data(cfg, m)
    rows = training_rows(data, canaries, vocab, cfg.seq_len)
    if any(e is not None for e in cfg.dp_epsilons):
        from memlens.privacy.arms import fresh_model
        from memlens.privacy.dp import DPSettings, check_private_trainable, check_reachable

        # Opacus's Poisson rate and step count of train_rows: ceil(N / batch) steps per epoch
        steps_per_epoch = math.ceil(len(rows) / min(cfg.batch_size, len(rows)))
        for eps in cfg.dp_epsilons:
            if eps is not None:
                dp = DPSettings(eps, cfg.dp_delta, cfg.max_grad_norm, cfg.accountant)
                check_reachable(dp, 1.0 / steps_per_epoch, cfg.epochs * steps_per_epoch)
        probe = fresh_model(cfg, vocab, device) if is_gpt else hf_model
        if cfg.lora is not None:  # DP-SGD trains the adapter only: probe base + adapter
            probe = _with_lora(cfg, hf_model)
        check_private_trainable(probe, torch.from_numpy(rows[:2]), device)
        if cfg.lora is not None:
            hf_model = _without_lora(probe)
    elif cfg.lora is not None:  # the targets are checked before anything is written
        hf_model = _without_lora(_with_lora(cfg, hf_model))
    return Prepared(
        vocab=vocab,
        canaries=canaries,
        data=data,
        rows=rows,
        canary_seqs=with_bos(canaries.tokens, vocab.bos),
        candidate_seqs=with_bos(canaries.candidates, vocab.bos) if canaries.candidates else None,
        is_gpt=is_gpt,
        device=device,
        hf_model=hf_model,
    )
