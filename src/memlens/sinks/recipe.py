"""The MemSinks experiment: standard vs deduplicated vs MemSinks training at equal compute.

Ghosal, Maini & Raghunathan, "Memorization Sinks: Isolating Memorization during LLM Training",
ICML 2025, arXiv:2507.09937. The setting, as in the paper: a small set of sequences repeated many
times, mixed into a larger corpus of unrepeated sequences from the same source. Three models with
the same architecture, initialization and number of optimizer steps on rows of the same width
(equal compute):

* ``standard``: trained on the corpus with the repetitions;
* ``dedup``: trained on the exactly deduplicated corpus (every repeated sequence once), cycled
  to the same number of rows;
* ``memsinks``: the ``standard`` stream, with MemSinks masks (:mod:`memlens.sinks.masks`).

Every model is scored by the shared engine (:mod:`memlens.scoring`); all losses are in **bits per
token** (token-weighted means over predicted tokens):

* ``val_loss``: loss on held-out sequences drawn fresh from the same source (capability);
* ``repeated_loss``: loss on the repeated sequences;
* ``mem_gap = val_loss - repeated_loss`` (the paper's memorization gap);
* ``fresh_train_loss``: loss on unrepeated training sequences (seen once);
* extraction: a sequence is extracted when greedy decoding from its first ``prefix`` tokens
  reproduces the rest exactly (Carlini et al. 2023), read exactly from one teacher-forced pass:
  greedy decoding reproduces the suffix if and only if every suffix token is the argmax given the
  true tokens before it. Rates for repeated and held-out sequences and their difference.

MemSinks is evaluated in every inference mode: ``memsinks`` (each sequence's own mask, as in
training), ``memsinks_sinks_dropped`` (sinks off, general units rescaled by
``(p_gen + p_mem)/p_gen``), ``memsinks_sinks_dropped_unscaled`` (sinks off, no rescaling) and
``memsinks_sinks_scaled`` (all units on, sinks times ``p_mem``). The published claim: dropping
sinks closes at least 50% of standard training's memorization gap while the validation loss stays
within 2% of standard's.

Each arm is a resumable cell (weights in ``models/<arm>.safetensors``); localization
(:mod:`memlens.sinks.localize`) is one more cell.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError

ARMS = ("standard", "dedup", "memsinks")

CLAIM = (
    "dropping sinks closes at least 50% of standard training's memorization gap while validation "
    "loss stays within 2% of standard's (Ghosal, Maini & Raghunathan, ICML 2025, arXiv:2507.09937)"
)


@dataclass(frozen=True)
class SinksConfig:
    """Everything that defines a MemSinks experiment (saved in the run's manifest).

    Data: a :class:`~memlens.data.synthetic.MarkovSource` (``vocab_size``, ``branching``,
    ``concentration``, ``source_seed``) emitting sequences of ``seq_len`` tokens, or the user's
    texts (``train_path``; byte-level tokens unless ``tokenizer`` is given) cut into documents of
    at most ``seq_len`` tokens. ``n_repeated`` sequences appear ``repetitions`` times each; the
    rest of the ``steps * batch_size`` training rows are unrepeated sequences (synthetic), or
    every remaining document once (text). ``n_heldout`` fresh sequences measure validation loss.
    Model: memlens GPT with ``n_layer`` blocks of width ``d_model`` (MLP width ``4 * d_model``).
    Sinks: ``p_gen``, ``p_mem`` (defaults 0.7 and 0.3), ``drop_scale`` (``None`` for
    ``(p_gen + p_mem)/p_gen``).
    """

    preset: str = "custom"
    vocab_size: int = 128
    branching: int = 4
    concentration: float = 1.0
    source_seed: int = 0
    seq_len: int = 64
    n_repeated: int = 16
    repetitions: int = 256
    n_heldout: int = 256
    n_layer: int = 2
    d_model: int = 64
    steps: int = 800
    batch_size: int = 32
    lr: float = 1e-2
    weight_decay: float = 0.1
    warmup_steps: int = 50
    min_lr_frac: float = 0.1
    p_gen: float = 0.7
    p_mem: float = 0.3
    drop_scale: float | None = None
    eval_every: int = 100
    extraction_prefix: int | None = None
    localize_ks: tuple[int, ...] = (4, 16, 64)
    localize_n: int = 16
    localize_random: int = 3
    seed: int = 0
    train_path: str | None = None
    tokenizer: str | None = None
    text_column: str = "text"

    def __post_init__(self) -> None:
        checks = [
            (self.n_repeated >= 1, f"--n-repeated must be at least 1, got {self.n_repeated}."),
            (self.repetitions >= 2, f"--repetitions must be at least 2, got {self.repetitions}."),
            (self.n_heldout >= 2, f"--n-heldout must be at least 2, got {self.n_heldout}."),
            (self.steps >= 1, f"--steps must be at least 1, got {self.steps}."),
            (self.batch_size >= 1, f"--batch-size must be at least 1, got {self.batch_size}."),
            (self.seq_len >= 4, f"--seq-len must be at least 4, got {self.seq_len}."),
            (self.lr > 0, f"--lr must be positive, got {self.lr}."),
            (self.eval_every >= 1, f"eval_every must be at least 1, got {self.eval_every}."),
            (all(k >= 1 for k in self.localize_ks), "localization k values must be at least 1."),
        ]
        for ok, msg in checks:
            if not ok:
                raise UserError(msg)
        if self.train_path is None:
            if self.steps * self.batch_size <= self.n_repeated * self.repetitions:
                raise UserError(
                    f"{self.n_repeated} sequences x {self.repetitions} repetitions fill all "
                    f"{self.steps} x {self.batch_size} training rows; use more --steps or fewer repetitions."
                )
        if self.tokenizer is not None and self.train_path is None:
            raise UserError("--tokenizer only applies together with --train.")
        from memlens.sinks.masks import SinkConfig

        SinkConfig(self.p_gen, self.p_mem, drop_scale=self.drop_scale).split(4 * self.d_model)
        p = self.prefix
        if not 1 <= p <= self.seq_len - 2:
            raise UserError(
                f"--prefix must be between 1 and seq_len - 2 = {self.seq_len - 2}, got {p}."
            )

    @property
    def prefix(self) -> int:
        """Extraction prompt length in tokens (default: half the sequence)."""
        return self.extraction_prefix if self.extraction_prefix is not None else self.seq_len // 2

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["localize_ks"] = list(self.localize_ks)
        return d


PRESETS: dict[str, SinksConfig] = {
    # For tests and a first look: about 20 seconds on one contended CPU core.
    "smoke": SinksConfig(
        preset="smoke",
        vocab_size=32,
        branching=3,
        seq_len=24,
        n_repeated=8,
        repetitions=24,
        n_heldout=64,
        n_layer=1,
        d_model=32,
        steps=120,
        batch_size=16,
        lr=1e-2,
        eval_every=40,
        localize_ks=(2, 8),
        localize_n=8,
        localize_random=2,
    ),
    # The README experiment: a few minutes on one CPU core.
    "quick": SinksConfig(preset="quick"),
}


def get_preset(name: str) -> SinksConfig:
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; use one of {', '.join(PRESETS)}.")
    return PRESETS[name]


# -- data -----------------------------------------------------------------------------------------


@dataclass
class SinksData:
    """Documents and the three training streams (as packed rows), plus evaluation sets.

    ``docs`` holds every training document (unrepeated ones first, then the repeated ones);
    ``repeated`` indexes the repeated documents; evaluation sets are lists of int64 arrays.
    ``n_lead`` tokens (a BOS) start every document and are never extraction targets.
    """

    docs: list[np.ndarray]
    fresh: np.ndarray
    repeated: np.ndarray
    heldout: list[np.ndarray]
    vocab_size: int
    n_lead: int
    source: str
    streams: dict[str, Any] = field(default_factory=dict)
    heldout_floor_bits: float | None = None  # true source's loss on held-out, bits per token
    meta: dict[str, Any] = field(default_factory=dict)


def _dedup_order(n_docs: int, n_rows: int, rng: np.random.Generator) -> np.ndarray:
    reps = math.ceil(n_rows / n_docs)
    return np.concatenate([rng.permutation(n_docs) for _ in range(reps)])


def synthetic_data(cfg: SinksConfig) -> SinksData:
    """Markov-source data: repeated, unrepeated and held-out sequences, exact source code lengths."""
    from memlens.data.synthetic import MarkovSource
    from memlens.sinks.masks import sequence_ids
    from memlens.sinks.train import rows_of_equal_docs

    src = MarkovSource(cfg.vocab_size, cfg.branching, cfg.concentration, seed=cfg.source_seed)
    n_rows = cfg.steps * cfg.batch_size
    n_rep_rows = cfg.n_repeated * cfg.repetitions
    n_fresh = n_rows - n_rep_rows
    S = cfg.seq_len
    rep = src.sample(cfg.n_repeated, S, seed=cfg.seed * 1000 + 1).numpy()
    fresh = src.sample(n_fresh, S, seed=cfg.seed * 1000 + 2).numpy()
    held = src.sample(cfg.n_heldout, S, seed=cfg.seed * 1000 + 3).numpy()
    # Exact deduplication across the three sets (collisions are astronomically rare, but the
    # experiment's definitions must hold exactly): keep first occurrences, repeated set first.
    seen: set[int] = set()
    keep = []
    for arr in (rep, fresh, held):
        ids = sequence_ids(arr)
        mask = np.array([i not in seen and not seen.add(i) for i in ids.tolist()])
        keep.append(arr[mask])
    rep, fresh, held = keep
    docs_arr = np.concatenate([fresh, rep])
    n_f = len(fresh)
    rep_idx = np.arange(n_f, n_f + len(rep))
    rng = np.random.default_rng(cfg.seed)
    std_order = np.concatenate([np.arange(n_f), np.repeat(rep_idx, cfg.repetitions)])
    rng.shuffle(std_order)
    dedup_order = _dedup_order(len(docs_arr), len(std_order), rng)[: len(std_order)]
    streams = {
        "standard": rows_of_equal_docs(docs_arr, std_order),
        "dedup": rows_of_equal_docs(docs_arr, dedup_order),
    }
    streams["memsinks"] = streams["standard"]
    floor = float(src.code_length_bits(held, include_first=False).sum() / (held.shape[0] * (S - 1)))
    return SinksData(
        docs=list(docs_arr),
        fresh=np.arange(n_f),
        repeated=rep_idx,
        heldout=list(held),
        vocab_size=cfg.vocab_size,
        n_lead=0,
        source=(
            f"MarkovSource(V={cfg.vocab_size}, branching={cfg.branching}, "
            f"concentration={cfg.concentration}, seed={cfg.source_seed})"
        ),
        streams=streams,
        heldout_floor_bits=floor,
        meta={"entropy_rate_bits": src.entropy_rate_bits()},
    )


BYTE_BOS = 256


def _tokenize(cfg: SinksConfig, texts: list[str]) -> tuple[list[np.ndarray], int, str]:
    """Token arrays (BOS first) and the vocabulary size: bytes, or the given tokenizer."""
    if cfg.tokenizer is None:
        out = [np.array([BYTE_BOS, *t.encode("utf-8")], dtype=np.int64) for t in texts]
        return out, 257, "UTF-8 bytes (V=257, BOS=256)"
    from memlens.data.text import encode_texts
    from memlens.models.hf import load_tokenizer

    tok = load_tokenizer(cfg.tokenizer)
    enc = encode_texts(texts, tok)
    if enc.bos_token_id is None:
        raise UserError(
            f"tokenizer {cfg.tokenizer} has neither a BOS nor an EOS token to start documents."
        )
    return enc.tokens, len(tok), f"tokenizer {cfg.tokenizer} (V={len(tok)})"


def text_data(cfg: SinksConfig) -> SinksData:
    """The user's texts: documents of at most ``seq_len`` tokens, packed into rows.

    Each text is tokenized (BOS first) and cut into documents of at most ``seq_len`` tokens (each
    starting with the BOS); exact duplicates are removed. ``n_heldout`` documents are held out
    (at most a fifth), ``n_repeated`` of the rest are repeated ``repetitions`` times and every
    other document appears once. ``steps`` is ignored: the standard stream is one pass.
    """
    from memlens.data.text import read_texts
    from memlens.sinks.masks import sequence_ids
    from memlens.sinks.train import pack_documents

    texts, _ = read_texts(cfg.train_path, text_column=cfg.text_column)
    toks, V, how = _tokenize(cfg, texts)
    body = cfg.seq_len - 1
    pieces: list[np.ndarray] = []
    for t in toks:
        bos, rest = t[:1], t[1:]
        for a in range(0, len(rest), body):
            piece = rest[a : a + body]
            if len(piece) >= 2:
                pieces.append(np.concatenate([bos, piece]))
    ids = sequence_ids(pieces)
    _, first = np.unique(ids, return_index=True)
    pieces = [pieces[i] for i in sorted(first.tolist())]
    n = len(pieces)
    n_held = min(cfg.n_heldout, n // 5)
    need = cfg.n_repeated + 2 * max(n_held, 1)
    if n_held < 2 or n < need:
        raise UserError(
            f"{cfg.train_path} gives {n} distinct documents of at most {cfg.seq_len} tokens; "
            f"need at least {max(need, 10)} (and a fifth of them held out) for {cfg.n_repeated} repeated ones."
        )
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(n)
    held = [pieces[i] for i in perm[:n_held]]
    rep_docs = [pieces[i] for i in perm[n_held : n_held + cfg.n_repeated]]
    fresh_docs = [pieces[i] for i in perm[n_held + cfg.n_repeated :]]
    docs = fresh_docs + rep_docs
    n_f = len(fresh_docs)
    rep_idx = np.arange(n_f, len(docs))
    std_order = np.concatenate([np.arange(n_f), np.repeat(rep_idx, cfg.repetitions)])
    rng.shuffle(std_order)
    standard = pack_documents(docs, std_order, cfg.seq_len)
    # twice the occurrences so the packed dedup stream surely covers as many rows as standard's
    dedup_rows = pack_documents(docs, _dedup_order(len(docs), 2 * len(std_order), rng), cfg.seq_len)
    n_rows = len(standard)
    dedup_rows.tokens = dedup_rows.tokens[:n_rows]
    dedup_rows.doc_index = dedup_rows.doc_index[:n_rows]
    dedup_rows.positions = dedup_rows.positions[:n_rows]
    return SinksData(
        docs=docs,
        fresh=np.arange(n_f),
        repeated=rep_idx,
        heldout=held,
        vocab_size=V,
        n_lead=1,
        source=f"{cfg.train_path}: {len(texts)} texts, {n} distinct documents, {how}",
        streams={"standard": standard, "dedup": dedup_rows, "memsinks": standard},
    )


def build_data(cfg: SinksConfig) -> SinksData:
    return synthetic_data(cfg) if cfg.train_path is None else text_data(cfg)


# -- evaluation -----------------------------------------------------------------------------------


def score_set(model, sink, mode: str, seqs: list[np.ndarray], argmax: bool = False, scale_cfg=None):
    """Teacher-forced scores of ``seqs`` under ``model`` in a sink ``mode`` (shared engine)."""
    from memlens.scoring import score_tokens
    from memlens.sinks.train import masked_forward, pad_sequences

    tokens, lengths = pad_sequences(seqs)
    fwd = masked_forward(model, scale_cfg or sink, mode)
    return score_tokens(
        fwd, tokens, lengths, batch_size=128, argmax=argmax, pass_attention_mask=True
    )


def _bits_per_token(scores) -> float:
    return float(np.nansum(np.where(scores.mask, -scores.log2p, 0.0)) / scores.mask.sum())


def _extraction(scores, prefix: int, n_lead: int) -> tuple[float, float, int]:
    """(exact extraction rate, mean suffix argmax accuracy, eligible count) from argmax flags.

    Column ``t - 1`` of the scores predicts token ``t``; the suffix starts at token
    ``n_lead + prefix``. Sequences with fewer than 4 suffix tokens are not eligible.
    """
    start = n_lead + prefix - 1
    hit = scores.is_argmax[:, start:]
    m = scores.mask[:, start:]
    eligible = m.sum(axis=1) >= 4
    if not eligible.any():
        return float("nan"), float("nan"), 0
    exact = np.all(hit | ~m, axis=1)[eligible]
    acc = (hit.sum(axis=1) / np.maximum(m.sum(axis=1), 1))[eligible]
    return float(exact.mean()), float(acc.mean()), int(eligible.sum())


def evaluate(
    model, sink, mode: str, data: SinksData, cfg: SinksConfig, scale_cfg=None, n_fresh: int = 256
) -> dict:
    """Validation loss, repeated loss, memorization gap and extraction (bits per token)."""
    held = score_set(model, sink, mode, data.heldout, argmax=True, scale_cfg=scale_cfg)
    rep = score_set(
        model, sink, mode, [data.docs[i] for i in data.repeated], argmax=True, scale_cfg=scale_cfg
    )
    fresh_idx = data.fresh[: min(n_fresh, len(data.fresh))]
    fresh = score_set(model, sink, mode, [data.docs[i] for i in fresh_idx], scale_cfg=scale_cfg)
    val = _bits_per_token(held)
    rl = _bits_per_token(rep)
    rep_rate, rep_acc, rep_n = _extraction(rep, cfg.prefix, data.n_lead)
    held_rate, held_acc, held_n = _extraction(held, cfg.prefix, data.n_lead)
    return {
        "val_loss": val,
        "repeated_loss": rl,
        "mem_gap": val - rl,
        "fresh_train_loss": _bits_per_token(fresh),
        "repeated_loss_per_sequence": rep.mean_nll_bits.tolist(),
        "extraction": {
            "prefix_tokens": cfg.prefix,
            "repeated_rate": rep_rate,
            "heldout_rate": held_rate,
            "rate_difference": rep_rate - held_rate,
            "repeated_suffix_argmax_accuracy": rep_acc,
            "heldout_suffix_argmax_accuracy": held_acc,
            "n_repeated_eligible": rep_n,
            "n_heldout_eligible": held_n,
        },
    }


# -- the experiment -------------------------------------------------------------------------------


@dataclass
class SinksResult:
    summary: dict
    out_dir: Path


def _eval_rows(arm: str, model, sink, data, cfg) -> dict[str, dict]:
    from memlens.sinks.masks import SinkConfig

    if arm != "memsinks":
        return {arm: evaluate(model, None, "all", data, cfg)}
    unscaled = SinkConfig(sink.p_gen, sink.p_mem, drop_scale=1.0, mask_seed=sink.mask_seed)
    return {
        "memsinks": evaluate(model, sink, "own", data, cfg),
        "memsinks_sinks_dropped": evaluate(model, sink, "drop", data, cfg),
        "memsinks_sinks_dropped_unscaled": evaluate(
            model, sink, "drop", data, cfg, scale_cfg=unscaled
        ),
        "memsinks_sinks_scaled": evaluate(model, sink, "mean", data, cfg),
    }


def _curve_point(model, sink, arm: str, data: SinksData, cfg: SinksConfig, step: int) -> dict:
    n = min(128, len(data.heldout))
    held = data.heldout[:n]
    rep = [data.docs[i] for i in data.repeated]
    modes = ["own", "drop"] if arm == "memsinks" else ["all"]
    point: dict[str, Any] = {"step": step}
    for mode in modes:
        v = _bits_per_token(score_set(model, sink if arm == "memsinks" else None, mode, held))
        r = _bits_per_token(score_set(model, sink if arm == "memsinks" else None, mode, rep))
        point[mode] = {"val_loss": v, "repeated_loss": r}
    return point


def run(
    cfg: SinksConfig,
    out_dir: str | Path | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    threads: int | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    ray_cpus_per_cell: float = 1,
    ray_gpus_per_cell: float = 0,
) -> SinksResult:
    """Run (or resume) the experiment and write ``sinks.json``, ``arms.csv`` and plots.

    Parameters
    ----------
    cfg: the experiment (see :class:`SinksConfig` and :data:`PRESETS`).
    out_dir: run directory (default ``memlens-runs/sinks-<time>``); re-running with the same
        directory and config reuses finished arms.
    progress: called as ``progress(task, done, total)`` during training.
    threads: torch intra-op threads (``None`` leaves torch's default).
    backend: ``local`` trains the arms one after another here; ``ray`` trains the unfinished
        arms as parallel Ray tasks (:func:`memlens.scale.run_cells`; ``ray_address`` joins a
        cluster, ``ray_cpus_per_cell``/``ray_gpus_per_cell`` per task). Same seeds, same numbers.
    """
    import torch

    from memlens.models.gpt import GPT, GPTConfig
    from memlens.sinks.masks import SinkConfig
    from memlens.sinks.train import SinkTrainConfig
    from memlens.store import RunDir, default_out_dir

    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}.")
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    sink = SinkConfig(cfg.p_gen, cfg.p_mem, drop_scale=cfg.drop_scale)
    data = build_data(cfg)  # bad data stops here, before anything is written
    from memlens.scale import check_backend

    check_backend(backend, ray_address)
    run_dir = RunDir(out_dir or default_out_dir("sinks"), "sinks", cfg.to_dict(), cfg.seed)
    run_dir.write_manifest(status="running")
    n_rows = len(data.streams["standard"])
    steps = cfg.steps if cfg.train_path is None else math.ceil(n_rows / cfg.batch_size)
    gcfg = GPTConfig(data.vocab_size, cfg.seq_len, cfg.n_layer, cfg.d_model)
    tcfg = SinkTrainConfig(
        steps=steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_steps=min(cfg.warmup_steps, max(1, steps // 10)),
        min_lr_frac=cfg.min_lr_frac,
    )
    models: dict[str, GPT] = {}
    cells: dict[str, dict] = {}
    on_ray: list[str] = []
    if backend != "local":
        on_ray = _train_arms_scaled(
            run_dir, cfg, data, sink, gcfg, tcfg, steps, n_rows, progress, backend=backend,
            ray_address=ray_address, ray_num_cpus=ray_cpus_per_cell, ray_num_gpus=ray_gpus_per_cell,
        )  # fmt: skip
    for arm in ARMS:
        weights = run_dir.path / "models" / f"{arm}.safetensors"
        cell = run_dir.load_cell(arm)
        model = GPT(gcfg, 1, generator=torch.Generator().manual_seed(cfg.seed))
        if cell is not None and weights.exists():
            from safetensors.torch import load_file

            model.load_state_dict(load_file(weights))
            model.eval()
            cell["resumed"] = True
        else:
            cell = _train_arm(arm, model, cfg, data, sink, tcfg, steps, n_rows, progress)
            from safetensors.torch import save_file

            from memlens.store import atomic_path

            weights.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(weights) as tmp:
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
            run_dir.save_cell(arm, cell)
            cell["resumed"] = False
        if arm in on_ray:
            cell["resumed"] = False  # trained just now, as a Ray task
        models[arm] = model
        cells[arm] = cell

    loc = run_dir.load_cell("localization")
    if loc is None:
        loc = localization(models, sink, data, cfg)
        run_dir.save_cell("localization", loc)

    summary = _summarize(cfg, data, sink, cells, loc, gcfg, tcfg, n_rows)
    summary["seconds_total_this_invocation"] = time.perf_counter() - t0
    run_dir.write_json("sinks.json", summary)
    _write_tables(run_dir, summary, cells)
    _plots(run_dir, summary, cells, loc)
    run_dir.write_manifest(status="done", seconds=summary["seconds_total_this_invocation"])
    return SinksResult(summary=summary, out_dir=run_dir.path)


def _train_arm(arm: str, model, cfg, data, sink, tcfg, steps: int, n_rows: int, progress) -> dict:
    """Train one arm's ``model`` in place; return its cell (training info, curve, eval rows)."""
    from memlens.sinks.train import train_model

    arm_sink = sink if arm == "memsinks" else None
    curve: list[dict] = []

    def cb(step: int) -> None:
        curve.append(_curve_point(model, arm_sink, arm, data, cfg, step))

    every = max(1, min(cfg.eval_every, steps))
    cb(0)
    info = train_model(
        model,
        data.streams[arm],
        np.arange(n_rows),
        tcfg,
        arm_sink,
        seed=cfg.seed,
        callback=cb,
        callback_every=every,
        progress=(lambda s, _l: progress(arm, s, steps)) if progress else None,
    )
    if steps % every:
        cb(steps)
    return {
        "arm": arm,
        "train": info,
        "curve": curve,
        "rows": _eval_rows(arm, model, sink, data, cfg),
    }


def _arm_task(arm: str, cfg, data, sink, gcfg, tcfg, steps: int, n_rows: int, progress) -> dict:
    """One arm as a :func:`memlens.scale.run_cells` cell: its cell and its weights (safetensors
    bytes, so no filesystem is shared with the node that trained it)."""
    import torch
    from safetensors.torch import save

    from memlens.models.gpt import GPT

    def report(arm: str, done: int, total: int) -> None:
        if done % 10 == 0 or done == total:  # every step would flood the progress queue
            progress((arm, done, total))

    model = GPT(gcfg, 1, generator=torch.Generator().manual_seed(cfg.seed))
    cell = _train_arm(arm, model, cfg, data, sink, tcfg, steps, n_rows, report)
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    return {"cell": cell, "weights": weights}


def _train_arms_scaled(
    run_dir, cfg, data, sink, gcfg, tcfg, steps: int, n_rows: int, progress, **scale: Any
) -> list[str]:
    """Train the unfinished arms through :func:`memlens.scale.run_cells`; store each cell and its
    weights as it arrives. Returns the arms trained."""
    from memlens.scale import run_cells
    from memlens.store import atomic_path

    if scale.get("backend") not in ("local", "ray"):
        raise UserError(f"unknown backend {scale.get('backend')!r}; choose local or ray.")
    weights = {arm: run_dir.path / "models" / f"{arm}.safetensors" for arm in ARMS}
    todo = [a for a in ARMS if run_dir.load_cell(a) is None or not weights[a].exists()]

    def save(j: int, result: dict) -> None:
        arm = todo[j]
        weights[arm].parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(weights[arm]) as tmp:
            tmp.write_bytes(result["weights"])
        run_dir.save_cell(arm, result["cell"])

    cells = [(_arm_task, (a, cfg, data, sink, gcfg, tcfg, steps, n_rows)) for a in todo]
    relay = (lambda _j, payload: progress(*payload)) if progress is not None else None
    if todo:  # a finished run does not start Ray
        run_cells(cells, on_result=save, on_progress=relay, **scale)
    return todo


def localization(models: dict, sink, data: SinksData, cfg: SinksConfig) -> dict:
    """Top-k vs random-k ablation on the repeated sequences each model memorized most."""
    from memlens.sinks.localize import ablation_curve

    out = {}
    rep = [data.docs[i] for i in data.repeated]
    for arm, mode in (("standard", "all"), ("memsinks", "own")):
        model = models[arm]
        s = sink if arm == "memsinks" else None
        per_seq = score_set(model, s, mode, rep).mean_nll_bits
        chosen = np.argsort(per_seq, kind="stable")[: cfg.localize_n]  # most memorized first
        ks = [k for k in cfg.localize_ks if k <= cfg.n_layer * 4 * cfg.d_model]
        out[arm] = ablation_curve(
            model,
            s,
            mode,
            [rep[i] for i in chosen],
            data.heldout,
            ks,
            n_random=cfg.localize_random,
            seed=cfg.seed,
        )
        out[arm]["mode"] = mode
    return out


def _summarize(cfg, data, sink, cells, loc, gcfg, tcfg, n_rows) -> dict:
    rows: dict[str, dict] = {}
    for arm in ARMS:
        for name, r in cells[arm]["rows"].items():
            rows[name] = {k: v for k, v in r.items() if k != "repeated_loss_per_sequence"}
    std = rows["standard"]
    drop = rows["memsinks_sinks_dropped"]
    closed = 1.0 - drop["mem_gap"] / std["mem_gap"] if std["mem_gap"] > 0 else float("nan")
    ratio = drop["val_loss"] / std["val_loss"]
    claim = {
        "published": CLAIM,
        "gap_closed_fraction": closed,
        "val_loss_ratio_dropped_to_standard": ratio,
        "closes_half_the_gap": bool(closed >= 0.5),
        "val_loss_within_2pct": bool(ratio <= 1.02),
    }
    claim["holds"] = claim["closes_half_the_gap"] and claim["val_loss_within_2pct"]
    unscaled = rows["memsinks_sinks_dropped_unscaled"]
    claim["unscaled_drop"] = {
        "gap_closed_fraction": 1.0 - unscaled["mem_gap"] / std["mem_gap"]
        if std["mem_gap"] > 0
        else float("nan"),
        "val_loss_ratio_to_standard": unscaled["val_loss"] / std["val_loss"],
    }
    n_general, n_sink, k = sink.split(4 * cfg.d_model)
    return {
        "units": "bits per token (token-weighted mean over predicted tokens)",
        "paper": "Ghosal, Maini & Raghunathan, Memorization Sinks, ICML 2025, arXiv:2507.09937",
        "preset": cfg.preset,
        "data": {
            "source": data.source,
            "n_repeated": int(len(data.repeated)),
            "repetitions": cfg.repetitions,
            "n_unrepeated": int(len(data.fresh)),
            "n_heldout": len(data.heldout),
            "repeated_fraction_of_rows": (len(data.repeated) * cfg.repetitions / n_rows)
            if cfg.train_path is None
            else None,
            "heldout_source_floor_bits_per_token": data.heldout_floor_bits,
            **data.meta,
        },
        "model": {**gcfg.to_dict(), "n_params": gcfg.n_params, "mlp_hidden": 4 * cfg.d_model},
        "sinks": {
            **sink.to_dict(),
            "n_general": n_general,
            "n_sink": n_sink,
            "sinks_on_per_sequence": k,
        },
        "compute": {
            "steps": tcfg.steps,
            "batch_size": tcfg.batch_size,
            "rows_per_arm": tcfg.steps * tcfg.batch_size,
            "row_tokens": cfg.seq_len,
            "train_seconds": {arm: cells[arm]["train"]["seconds"] for arm in ARMS},
            "resumed": {arm: cells[arm].get("resumed", False) for arm in ARMS},
        },
        "optimizer": tcfg.to_dict(),
        **rows,
        "claim": claim,
        "localization": loc,
    }


def _write_tables(run_dir, summary: dict, cells: dict) -> None:
    import pandas as pd

    names = [n for n in summary if isinstance(summary[n], dict) and "mem_gap" in summary[n]]
    table = []
    for n in names:
        r = summary[n]
        e = r["extraction"]
        table.append(
            {
                "row": n,
                "val_loss_bits": r["val_loss"],
                "repeated_loss_bits": r["repeated_loss"],
                "mem_gap_bits": r["mem_gap"],
                "fresh_train_loss_bits": r["fresh_train_loss"],
                "extraction_repeated": e["repeated_rate"],
                "extraction_heldout": e["heldout_rate"],
            }
        )
    run_dir.write_table("arms.csv", pd.DataFrame(table))


def _plots(run_dir, summary: dict, cells: dict, loc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["standard", "dedup", "memsinks", "memsinks_sinks_scaled", "memsinks_sinks_dropped"]
    labels = [
        "standard",
        "dedup",
        "MemSinks\nown mask",
        "MemSinks\nsinks x p_mem",
        "MemSinks\nsinks dropped",
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4))
    colors = ["#555555", "#999999", "#1f77b4", "#6baed6", "#d62728"]
    for ax, key, title in zip(
        axes,
        ["val_loss", "mem_gap"],
        ["validation loss", "memorization gap (val - repeated)"],
        strict=True,
    ):
        vals = [summary[n][key] for n in names]
        ax.bar(range(len(names)), vals, color=colors)
        ax.set_xticks(range(len(names)), labels, fontsize=7.5)
        ax.set_ylabel("bits per token")
        ax.set_title(title)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        if key == "val_loss":
            lo = min(vals)
            ax.set_ylim(lo * 0.95, max(vals) * 1.02)
            floor = summary["data"].get("heldout_source_floor_bits_per_token")
            if floor is not None:
                ax.axhline(floor, ls=":", color="k", lw=1)
                ax.text(
                    len(names) - 0.5, floor, "source entropy", fontsize=7, va="bottom", ha="right"
                )
    c = summary["claim"]
    fig.suptitle(
        f"MemSinks ({summary['preset']}): sinks dropped close {c['gap_closed_fraction']:.0%} of the gap, "
        f"val loss x{c['val_loss_ratio_dropped_to_standard']:.3f} of standard",
        fontsize=10,
    )
    run_dir.save_figure("sinks_summary.png", fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    styles = {
        "standard": ("#555555", "all"),
        "dedup": ("#999999", "all"),
        "memsinks": ("#1f77b4", "own"),
    }
    for ax, key, title in zip(
        axes,
        ["val_loss", "repeated_loss"],
        ["held-out sequences", "repeated sequences"],
        strict=True,
    ):
        for arm, (color, mode) in styles.items():
            pts = cells[arm]["curve"]
            steps = [p["step"] for p in pts]
            ax.plot(steps, [p[mode][key] for p in pts], color=color, label=f"{arm} ({mode})")
            if arm == "memsinks":
                ax.plot(
                    steps,
                    [p["drop"][key] for p in pts],
                    color="#d62728",
                    label="memsinks (sinks dropped)",
                )
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel("loss, bits per token")
        later = [
            p[m][key]
            for arm in styles
            for p in cells[arm]["curve"]
            if p["step"] > 0
            for m in ("all", "own", "drop")
            if m in p
        ]
        if later:  # the untrained model (step 0, about log2 V) would squash the curves
            ax.set_ylim(0, max(later) * 1.1)
    floor = summary["data"].get("heldout_source_floor_bits_per_token")
    if floor is not None:
        axes[0].axhline(floor, ls=":", color="k", lw=1, label="true source")
    axes[0].legend(fontsize=8)
    run_dir.save_figure("sinks_curves.png", fig)

    if "standard" in loc:
        fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
        for arm, color in (("standard", "#555555"), ("memsinks", "#1f77b4")):
            ks = [r["k"] for r in loc[arm]["ks"]]
            axes[0].plot(
                ks,
                [r["top_removed"] for r in loc[arm]["ks"]],
                "o-",
                color=color,
                label=f"{arm}: top-k",
            )
            axes[0].plot(
                ks,
                [r["random_removed"] for r in loc[arm]["ks"]],
                "o--",
                color=color,
                alpha=0.6,
                label=f"{arm}: random k",
            )
            axes[1].plot(
                ks,
                [r["top_collateral"] for r in loc[arm]["ks"]],
                "o-",
                color=color,
                label=f"{arm}: top-k",
            )
            axes[1].plot(
                ks,
                [r["random_collateral"] for r in loc[arm]["ks"]],
                "o--",
                color=color,
                alpha=0.6,
                label=f"{arm}: random k",
            )
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("ablated MLP units (k, all layers)")
        axes[0].set_ylabel("fraction of memorization gap removed")
        axes[1].set_ylabel("held-out loss increase, bits/token")
        axes[0].set_title("memorization removed by ablation")
        axes[1].set_title("collateral damage")
        axes[0].legend(fontsize=8)
        run_dir.save_figure("sinks_localization.png", fig)


def with_overrides(cfg: SinksConfig, **overrides: Any) -> SinksConfig:
    """``cfg`` with the non-``None`` overrides applied (validated again)."""
    return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
