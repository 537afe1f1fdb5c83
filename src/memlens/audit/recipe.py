"""The memorization audit of a trained causal LM: which training samples did it memorize, by how
many bits, can they be extracted, and are they the rare ones.

The experiment, step by step (Morris et al. 2025, arXiv:2505.24832, Sec. 1 and text; Carlini et
al. 2023 for extraction):

1. Load the target and the reference model (:func:`memlens.models.hf.load_causal_lm`), the
   training texts and held-out texts of the same distribution (:func:`memlens.data.text.load_texts`:
   optional chunking into ``seq_len`` target tokens, exact deduplication with counts). Held-out
   texts that also occur in the training set are dropped (they are not held out).
2. One batched scoring pass per model over all texts (:func:`memlens.scoring.score_texts`,
   sorted by length, padded, attention-masked): each text's code length in bits under the target
   and under the reference, each with its own tokenizer, the first text token charged the same
   way under both (:func:`memlens.scoring.comparable_bits`: when only one tokenizer starts texts
   with a BOS, both charge it ``log2 V``; otherwise each model codes it).
3. Per sample: unintended memorization ``max(0, NLL_ref - NLL_target)`` bits, zlib size
   (:func:`memlens.units.zlib_bytes`, the level of the MIA's zlib attack), TF-IDF rarity (target
   tokens, training corpus), greedy k-extraction (``prefix``/``suffix`` tokens,
   :func:`memlens.scoring.k_extraction`).
4. Summary for train and held-out separately, the difference of extraction rates
   (memorization-specific extraction), total memorized bits as a fraction of ``alpha * params``,
   Spearman correlations with TF-IDF and with the duplicate count, the top memorized samples.

:func:`run` does all of it from an :class:`~memlens.audit.config.AuditConfig` and writes a run directory (the run
contract of :mod:`memlens.results`); :func:`audit_texts` is the in-memory core for notebooks that
already hold the models and texts.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memlens.audit.config import AuditConfig
from memlens.audit.plots import plot_audit
from memlens.audit.rarity import TfidfCorpus
from memlens.audit.summary import AuditSummary, SplitSummary
from memlens.audit.unintended import unintended_bits
from memlens.config import require_config
from memlens.data.text import EncodedTexts, TextSet, load_texts
from memlens.errors import UserError
from memlens.progress import ProgressFn
from memlens.results import RunResult
from memlens.scoring import CodeLengths, check_window, comparable_bits, k_extraction
from memlens.units import PUBLISHED_ALPHA, capacity_bits, zlib_bytes


@dataclass(repr=False)
class AuditResult(RunResult[AuditSummary]):
    """What an audit returns: the typed ``audit.json`` (``summary``), ``samples`` (a pandas
    DataFrame, one row per text: ``samples.parquet``), the run directory and the ``reused``
    stages (``target``, ``reference``, ``extraction``) taken from an earlier, interrupted run."""

    samples: Any = None


class StageCache(Protocol):
    """Where :func:`audit_texts` keeps finished stages so an interrupted audit resumes."""

    def load(self, key: str) -> dict[str, np.ndarray] | None: ...

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None: ...


@dataclass
class _Scored(EncodedTexts):
    """What the audit keeps of a scoring pass (all it needs; stored as one cell)."""

    code: CodeLengths

    def pack(self) -> dict[str, np.ndarray]:
        flat = (
            np.concatenate([np.asarray(t, dtype=np.int64) for t in self.tokens])
            if self.tokens
            else np.zeros(0, dtype=np.int64)
        )
        return {
            "lengths": self.lengths,
            "tokens": flat,
            "first_token_bits_scalar": np.array(self.first_token_bits, dtype=np.float64),
            "bos_token_id": np.array(-1 if self.bos_token_id is None else self.bos_token_id),
            **self.code.to_arrays(),
        }

    @classmethod
    def unpack(cls, d: dict[str, np.ndarray]) -> _Scored:
        bounds = np.r_[0, np.cumsum(d["lengths"])]
        bos = int(d["bos_token_id"])
        return cls(
            tokens=[d["tokens"][a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)],
            first_token_bits=float(d["first_token_bits_scalar"]),
            bos_token_id=None if bos < 0 else bos,
            code=CodeLengths.from_arrays(d),
        )


def _texts_digest(texts: list[str], counts: np.ndarray, n_train: int) -> str:
    """A digest of the audited texts, their counts and the train/held-out split (cache keys)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    h.update(np.asarray(counts, dtype=np.int64).tobytes())
    h.update(str(n_train).encode())
    return h.hexdigest()


def _stage_key(stage: str, texts_digest: str, *settings: Any) -> str:
    """Cache key of one stage: the texts' digest and the settings the stage depends on."""
    h = hashlib.sha256(texts_digest.encode())
    h.update(repr(settings).encode())
    return f"{stage}-{h.hexdigest()[:16]}"


def _spearman(
    x: np.ndarray, y: np.ndarray, x_name: str = "x", of: str = "sample(s)"
) -> dict[str, Any]:
    """Spearman's rho with its p-value and n; ``rho`` is None when undefined (n < 3 or constant),
    with ``why`` saying which (``x_name`` names ``x``, ``of`` the samples; ``y`` is the
    unintended bits)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(len(x))
    why = None
    if n < 3:
        why = f"only {n} {of}, 3 needed"
    elif np.ptp(x) == 0:
        why = f"every sample has {x_name} {x[0]:g}"
    elif np.ptp(y) == 0:
        why = f"every sample has {y[0]:g} unintended bits"
    if why is not None:
        return {"rho": None, "p_value": None, "n": n, "why": why}
    res = spearmanr(x, y)
    return {"rho": float(res.statistic), "p_value": float(res.pvalue), "n": n}


def _nan_to_none(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _split_summary(df: Any, texts: TextSet, extra: dict[str, Any]) -> SplitSummary:
    mem = df["unintended_bits"].to_numpy()
    elig = df["extraction_eligible"].to_numpy()
    return SplitSummary(
        n=int(len(df)),
        **texts.summary(),
        **extra,
        mean_unintended_bits=_nan_to_none(mem.mean()) if len(mem) else None,
        total_unintended_bits=float(mem.sum()),
        median_unintended_bits=_nan_to_none(float(np.median(mem))) if len(mem) else None,
        n_positive_unintended=int((mem > 0).sum()),
        mean_target_bits=_nan_to_none(df["target_bits"].mean()),
        mean_reference_bits=_nan_to_none(df["reference_bits"].mean()),
        mean_target_bits_per_token=_nan_to_none(df["target_bits_per_token"].mean()),
        n_extraction_eligible=int(elig.sum()),
        extraction_rate=_nan_to_none(df.loc[elig, "extracted"].mean()) if elig.any() else None,
        mean_match_fraction=(
            _nan_to_none(df.loc[elig, "match_fraction"].mean()) if elig.any() else None
        ),
    )


def audit_texts(
    target: Any,
    reference: Any,
    train: TextSet,
    heldout: TextSet,
    *,
    prefix: int = 32,
    suffix: int = 32,
    batch_size: int = 32,
    window_stride: int | None = None,
    alpha: float = PUBLISHED_ALPHA,
    top_k: int = 20,
    progress: ProgressFn | None = None,
    cache: StageCache | None = None,
) -> AuditResult:
    """Audit ``target`` on ``train`` and ``heldout`` texts against ``reference`` (both
    :class:`~memlens.models.hf.CausalLM`). All code lengths in bits.

    Returns an :class:`AuditResult` whose ``samples`` has one row per unique text with columns
    ``split, sample, source_index, count, text, n_tokens_target, n_tokens_reference, target_bits,
    reference_bits, unintended_bits, target_bits_per_token, zlib_bytes, tfidf,
    extraction_eligible, extracted, match_fraction`` (``target_bits`` and ``reference_bits``
    with the first token charged alike, see :func:`memlens.scoring.comparable_bits`).

    ``cache`` (optional) keeps each finished stage (target scores, reference scores, extraction)
    under a key that covers the texts and the stage's settings, and reuses it when present.
    """
    import pandas as pd

    from memlens.scoring import score_texts

    lead = 1 if target.bos_token_id is not None else 0
    check_window(prefix, suffix, lead, target.context_length)
    texts = list(train.texts) + list(heldout.texts)
    n_train, total = len(train.texts), len(train.texts) + len(heldout.texts)

    digest = _texts_digest(texts, np.r_[train.counts, heldout.counts], n_train)
    reused: list[str] = []

    def scored(stage: str, lm: Any) -> _Scored:
        stamp = getattr(lm, "files_stamp", None)  # a model saved again in place: not reused
        key = _stage_key(stage, digest, lm.describe(), window_stride, "first-token", stamp)
        hit = cache.load(key) if cache is not None else None
        if hit is not None:
            reused.append(stage)
            return _Scored.unpack(hit)
        sc = score_texts(
            lm,
            texts,
            batch_size=batch_size,
            window_stride=window_stride,
            progress=progress,
            task=f"scoring ({stage})",
        )
        out = _Scored(
            tokens=sc.tokens,
            bos_token_id=sc.bos_token_id,
            first_token_bits=sc.first_token_bits,
            code=sc.code_lengths(),
        )
        if cache is not None:
            cache.save(key, out.pack())
        return out

    tgt = scored("target", target)
    ref = scored("reference", reference)
    tgt_bits, ref_bits, first_token = comparable_bits(tgt.code, ref.code)
    mem = unintended_bits(tgt_bits, ref_bits)

    n_lead = 1 if tgt.bos_token_id is not None else 0
    ext_key = _stage_key(
        "extraction",
        digest,
        target.describe(),
        prefix,
        suffix,
        getattr(target, "files_stamp", None),
    )
    hit = cache.load(ext_key) if cache is not None else None
    if hit is not None:
        reused.append("extraction")
        eligible, exact, match_fraction = hit["eligible"], hit["exact"], hit["match_fraction"]
    else:
        ext = k_extraction(
            target.model,
            tgt.tokens,
            prefix=prefix,
            suffix=suffix,
            n_lead=n_lead,
            context_length=target.context_length,
            batch_size=batch_size,
            device=target.device,
            progress=progress,
            task="greedy extraction",
        )
        eligible, exact, match_fraction = ext.eligible, ext.exact, ext.match_fraction
        if cache is not None:
            cache.save(
                ext_key, {"eligible": eligible, "exact": exact, "match_fraction": match_fraction}
            )

    words = [t[n_lead:].tolist() for t in tgt.tokens]
    corpus = TfidfCorpus(words[:n_train], train.counts.tolist())
    tfidf = np.array([corpus.score(w, member=i < n_train) for i, w in enumerate(words)])

    n_tok_t = tgt.n_text_tokens
    df = pd.DataFrame(
        {
            "split": ["train"] * n_train + ["heldout"] * (total - n_train),
            "sample": np.r_[np.arange(n_train), np.arange(total - n_train)],
            "source_index": np.r_[train.first_index, heldout.first_index],
            "count": np.r_[train.counts, heldout.counts],
            "text": texts,
            "n_tokens_target": n_tok_t,
            "n_tokens_reference": ref.n_text_tokens,
            "target_bits": tgt_bits,
            "reference_bits": ref_bits,
            "unintended_bits": mem,
            "target_bits_per_token": tgt_bits / np.maximum(n_tok_t, 1),
            "zlib_bytes": [zlib_bytes(t) for t in texts],
            "tfidf": tfidf,
            "extraction_eligible": eligible,
            "extracted": exact,
            "match_fraction": match_fraction,
        }
    )
    tr, ho = df[df.split == "train"], df[df.split == "heldout"]
    s_train = _split_summary(tr, train, {})
    s_held = _split_summary(ho, heldout, heldout.meta)
    warnings = _extraction_warnings(n_tok_t[:n_train], n_tok_t[n_train:], prefix, suffix)
    cap = capacity_bits(target.n_params, alpha)
    mem_tr = tr["unintended_bits"].to_numpy()
    positive = mem_tr > 0
    tfidf_pos = _spearman(
        tr["tfidf"].to_numpy()[positive],
        mem_tr[positive],
        "TF-IDF",
        "training sample(s) with positive unintended bits",
    )
    tfidf_all = _spearman(tr["tfidf"].to_numpy(), mem_tr, "TF-IDF")
    dup = _spearman(tr["count"].to_numpy().astype(float), mem_tr, "duplicate count")

    def diff(key: str) -> float | None:
        a, b = getattr(s_train, key), getattr(s_held, key)
        return None if a is None or b is None else a - b

    top = tr.sort_values("unintended_bits", ascending=False, kind="stable").head(top_k)
    summary = AuditSummary(
        target=target.describe(),
        reference=reference.describe(),
        code_length_convention=(
            "bits per text: -sum log2 p over the text's tokens under each model's own tokenizer; "
            "a BOS id (bos_token_id, else eos_token_id) is prepended and free, else the first token "
            "costs log2 V; no end-of-text token is charged; when only one of the two tokenizers "
            "has a BOS, both models' first text token is charged log2 V (first_token: uniform)"
        ),
        first_token=first_token,
        first_token_bits={
            "target": float(np.mean(tgt_bits - (tgt.code.bits - tgt.code.first_token_bits))),
            "reference": float(np.mean(ref_bits - (ref.code.bits - ref.code.first_token_bits))),
        },
        unintended_definition=(
            "max(0, NLL_bits(x | reference) - NLL_bits(x | target)), whole-sample code lengths"
        ),
        extraction={
            "prefix": prefix,
            "suffix": suffix,
            "decoding": "greedy",
            "bos_in_prompt": n_lead == 1,
        },
        train=s_train,
        heldout=s_held,
        extraction_rate_difference=diff("extraction_rate"),
        mean_unintended_bits_difference=diff("mean_unintended_bits"),
        capacity={
            "alpha_bits_per_param": alpha,
            "n_params": target.n_params,
            "capacity_bits": cap,
            "train_total_unintended_bits": s_train.total_unintended_bits,
            "fraction_of_capacity": s_train.total_unintended_bits / cap,
        },
        tfidf_spearman=tfidf_pos["rho"],
        tfidf_spearman_detail={
            "positive_train": tfidf_pos,
            "all_train": tfidf_all,
            "note": "Spearman of unintended bits with TF-IDF rarity over training samples with positive memorization (Morris et al. 2025), and over all training samples",
        },
        duplicate_spearman=dup["rho"],
        duplicate_spearman_detail=dup,
        warnings=warnings,
        top_memorized=[
            {
                "sample": int(r.sample),
                "unintended_bits": float(r.unintended_bits),
                "target_bits": float(r.target_bits),
                "reference_bits": float(r.reference_bits),
                "count": int(r.count),
                "tfidf": _nan_to_none(r.tfidf),
                "extracted": bool(r.extracted),
                "text": r.text if len(r.text) <= 200 else r.text[:197] + "...",
            }
            for r in top.itertuples()
        ],
    )
    return AuditResult(summary=summary, samples=df, reused=reused)


def _extraction_warnings(
    n_train: np.ndarray, n_heldout: np.ndarray, prefix: int, suffix: int
) -> list[str]:
    """Say when a split has no text long enough for extraction, and what prefix/suffix would do."""
    short = [
        (name, int(n.max()))
        for name, n in (("training", n_train), ("held-out", n_heldout))
        if len(n) and int(n.max()) < prefix + suffix
    ]
    if not short:
        return []
    longest = max(n for _, n in short)
    half = max(longest // 2, 1)
    which = "text" if len(short) == 2 else f"{short[0][0]} text"
    return [
        f"no {which} has the {prefix} + {suffix} = {prefix + suffix} tokens extraction needs "
        f"(the longest has {longest}), so extraction was not measured{'' if len(short) == 2 else ' there'}; "
        f"choose a prefix and suffix adding up to at most {longest} "
        f"(e.g. `prefix` {half} and `suffix` {max(longest - half, 1)})."
    ]


def _drop_overlap(train: TextSet, heldout: TextSet, *, same_source: bool = False) -> TextSet:
    """Remove held-out texts that also occur in the training set; record how many.

    ``same_source``: both were read from one file or dataset with one split (the error then
    says to give the held-out texts their own split)."""
    seen = set(train.texts)
    keep = [i for i, t in enumerate(heldout.texts) if t not in seen]
    removed = len(heldout.texts) - len(keep)
    if not keep:
        hint = (
            " (both were read from the same data with the same split: name the held-out split "
            "with `heldout_split`)"
            if same_source
            else ""
        )
        raise UserError(
            "every held-out text also occurs in the training set; held-out data must be "
            f"disjoint{hint}."
        )
    return TextSet(
        texts=[heldout.texts[i] for i in keep],
        counts=heldout.counts[keep],
        first_index=heldout.first_index[keep],
        source=heldout.source,
        n_raw=heldout.n_raw - int(heldout.counts.sum() - heldout.counts[keep].sum()),
        n_empty_dropped=heldout.n_empty_dropped,
        seq_len=heldout.seq_len,
        meta={"n_overlap_with_train_removed": removed},
    )


class _RunCache:
    """Stage cache in the run directory (``cells/*.npz``). The directory is created with the
    first finished stage, so input that fails before any work leaves nothing behind."""

    def __init__(self, out: Path, config: AuditConfig) -> None:
        self.out, self.config = out, config
        self._run: Any = None

    def run_dir(self) -> Any:
        from memlens.store import RunDir

        if self._run is None:
            self._run = RunDir(self.out, "audit", self.config, seed=None)
            if not (self.out / "manifest.json").exists():
                self._run.write_manifest(status="running")
        return self._run

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        if not (self.out / "cells" / f"{key}.npz").exists():
            return None
        return self.run_dir().load_arrays(key)

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        self.run_dir().save_arrays(key, arrays)


def run(
    config: AuditConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> AuditResult:
    """Run the whole audit and write ``audit.json``, ``samples.parquet``, plots and the manifest.

    Everything is loaded and validated before the run directory is created, so bad input leaves
    nothing behind; ``out=None`` writes a fresh timestamped directory. Each finished stage
    (target scores, reference scores, extraction) is stored in ``cells/`` at once: rerunning
    with the same ``out`` after an interruption reuses them (``AuditResult.reused``).
    ``progress`` receives :class:`~memlens.progress.ProgressEvent` values for the tasks
    ``scoring (target)``, ``scoring (reference)`` and ``greedy extraction``.
    """
    require_config(config, AuditConfig)
    from memlens.models.hf import load_causal_lm
    from memlens.store import RunDir, default_out_dir

    out = Path(out) if out is not None else default_out_dir("audit")
    if (out / "manifest.json").exists():  # fail now, not after the work, if it holds another run
        RunDir(out, "audit", config, seed=None)
    target = load_causal_lm(
        config.model,
        tokenizer=config.tokenizer,
        dtype=config.dtype,
        device=config.device,
        adapter=config.adapter,
    )
    bare_base = config.reference is None  # with an adapter: the base before fine-tuning
    try:
        reference = load_causal_lm(
            config.model if bare_base else config.reference,
            tokenizer=config.tokenizer if bare_base else config.reference_tokenizer,
            dtype=config.dtype,
            device=config.device,
        )
    except UserError as exc:  # the reference's tokenizer is set by its own parameter
        if bare_base or "pass `tokenizer`" not in str(exc):
            raise
        raise UserError(
            str(exc).replace("pass `tokenizer`", "pass `reference_tokenizer`")
        ) from None
    for lm, param in ((target, "tokenizer"), (reference, "reference_tokenizer")):
        if lm.tokenizer is None:
            raise UserError(f"model {lm.name} has no tokenizer to read text with; pass `{param}`.")
    kw = {
        "text_column": config.text_column,
        "tokenizer": target.tokenizer,
        "seq_len": config.seq_len,
        "dedup": config.dedup,
    }
    train = load_texts(config.train, split=config.split, **kw)
    heldout_split = config.heldout_split or config.split
    heldout = _drop_overlap(
        train,
        load_texts(config.heldout, split=heldout_split, **kw),
        same_source=str(config.heldout) == str(config.train) and heldout_split == config.split,
    )

    cache = _RunCache(out, config)
    result = audit_texts(
        target,
        reference,
        train,
        heldout,
        prefix=config.prefix,
        suffix=config.suffix,
        batch_size=config.batch_size,
        window_stride=config.window_stride,
        alpha=config.alpha,
        top_k=config.top_k,
        progress=progress,
        cache=cache,
    )
    rd = cache.run_dir()
    rd.write_table("samples.parquet", result.samples)
    for name, fig in plot_audit(result.samples).items():
        rd.save_figure(name, fig)
    summary = result.summary
    rd.write_json(summary.file, summary.to_json())
    rd.write_manifest(
        status="finished",
        target=summary.target,
        reference=summary.reference,
        reused_stages=result.reused,
    )
    result.out_dir = rd.path
    return result
