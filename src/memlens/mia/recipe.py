"""Run membership-inference attacks on a causal LM and evaluate them: ``memlens mia``.

The whole experiment, as a function a notebook can call::

    from memlens.mia.recipe import MIAConfig, run
    result = run(MIAConfig(model="path/to/model", references=["path/to/ref"],
                           members="train.jsonl", nonmembers="heldout.jsonl"), "runs/mia")
    result.summary.attacks["loss"].auc

Steps: read members and non-members (:func:`memlens.mia.samples.load_samples`), score every text
once with the target through the shared scoring pass (:func:`memlens.scoring.score_texts`; the
lowercased texts ride in the same batched pass), score the texts with each reference model (code
length in bits under its own tokenizer, the first token charged as the target's is:
:func:`memlens.scoring.comparable_bits`), compute per-sample gradient norms when a ``gradnorm``
attack is asked for (:func:`memlens.scoring.grad_norms`, one backward pass per sample for both
norms), run the attacks of :mod:`memlens.mia.attacks` and evaluate them with
:func:`memlens.mia.metrics.evaluate_attacks` (one NaN policy for all attacks).

``memlens mia metrics`` is :func:`run_metrics`: the same metrics for score columns of a file
computed elsewhere (read by :func:`memlens.data.tables.read_table`; a missing score is an
unscored sample, a missing label an error).

Both follow the run contract (:mod:`memlens.results`): ``run(config, out, *, progress=None)``
returns a :class:`~memlens.results.RunResult` whose ``summary`` is the typed ``mia.json``
(:class:`~memlens.mia.summary.MIASummary`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memlens.config import require_config
from memlens.errors import UserError
from memlens.mia import attacks as A
from memlens.mia.config import MIAConfig, MIAMetricsConfig
from memlens.mia.metrics import evaluate_attacks, parse_labels
from memlens.mia.plots import plot_roc
from memlens.mia.samples import MIASamples, load_samples
from memlens.mia.summary import MIAMetricsSummary, MIASummary
from memlens.progress import ProgressFn
from memlens.results import RunResult

__all__ = [
    "MIAConfig",
    "MIAMetricsConfig",
    "MIASamples",
    "SampleScores",
    "load_samples",
    "run",
    "run_metrics",
    "score_samples",
]

#: The gradient norm behind each gradient attack (see :data:`memlens.scoring.GRAD_NORMS`).
GRADIENT_ATTACKS = {"gradnorm": "l2", "gradnorm_mimir": "mimir"}


def select_attacks(spec: Sequence[str] | str | None, n_references: int) -> list[str]:
    """The attacks to run: ``spec`` validated, or by default all (``ref`` only with a reference)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        names = list(A.ATTACKS)
        return [n for n in names if n != "ref" or n_references > 0]
    names = A.parse_attacks(spec)
    if "ref" in names and n_references == 0:
        raise UserError("the ref attack needs at least one reference model; pass `references`.")
    return names


def reference_names(paths: Sequence[str]) -> list[str]:
    """Short unique labels for reference models (directory name, ``#2`` on repeats)."""
    out: list[str] = []
    for p in paths:
        base = Path(str(p).rstrip("/")).name or str(p)
        name, i = base, 2
        while name in out:
            name, i = f"{base}#{i}", i + 1
        out.append(name)
    return out


@dataclass
class SampleScores:
    """What :func:`score_samples` computes for N samples.

    Attributes
    ----------
    scores: attack column -> one score per sample (higher = member).
    target_bits: code length of each text under the target, in bits.
    n_tokens: predicted tokens per text under the target.
    grad_norms: gradient norm name (``l2``, ``mimir``) -> per-sample values.
    reference_bits: reference name -> code lengths as compared with the target (first token
        charged alike, see :func:`memlens.scoring.comparable_bits`).
    first_token: reference name -> the first-token convention of that comparison.
    """

    scores: dict[str, np.ndarray]
    target_bits: np.ndarray
    n_tokens: np.ndarray
    grad_norms: dict[str, np.ndarray] = field(default_factory=dict)
    reference_bits: dict[str, np.ndarray] = field(default_factory=dict)
    first_token: dict[str, str] = field(default_factory=dict)


def score_samples(
    lm: Any,
    texts: Sequence[str],
    attacks: Sequence[str],
    *,
    references: dict[str, Any] | None = None,
    k: float = 0.2,
    batch_size: int = 32,
    window_stride: int | None = None,
    grad_norms: dict[str, np.ndarray] | None = None,
    progress: ProgressFn | None = None,
) -> SampleScores:
    """Attack scores for ``texts`` under a loaded target ``lm`` (:class:`~memlens.models.hf.CausalLM`).

    One batched scoring pass over the texts, shared by every attack (the lowercased copies for
    ``lowercase`` are scored in the same pass, or in a second batched pass without the Min-K%++
    statistics when those are on). ``references`` maps a name to each text's code lengths under
    that reference: a :class:`~memlens.scoring.CodeLengths` (``score_texts(ref,
    texts).code_lengths()``; compared with the first token charged alike) or an array of bits
    taken as comparable. Gradient norms are computed here (one backward pass per sample for all
    the gradient attacks asked for) unless ``grad_norms`` (norm name -> values) has them.
    """
    from memlens.data.text import encode_texts
    from memlens.scoring import CodeLengths, comparable_bits, score_texts
    from memlens.scoring import grad_norms as engine_grad_norms

    needs = A.requirements(attacks)
    n = len(texts)
    stats = "stats" in needs
    lower = None
    # The lowercased copies ride in the same batched pass, unless the Min-K%++ vocabulary
    # statistics are on: those are needed for the originals only, so the copies get their own
    # (cheaper) pass.
    batch = list(texts)
    if "lowercase" in needs and not stats:
        batch += [t.lower() for t in texts]
    scored = score_texts(
        lm,
        batch,
        batch_size=batch_size,
        window_stride=window_stride,
        stats=stats,
        progress=progress,
        task="scoring (target)",
    )
    target = scored.scores.take(slice(0, n))
    if "lowercase" in needs:
        if len(batch) == 2 * n:
            lower = scored.scores.take(slice(n, 2 * n))
        else:
            lower = score_texts(
                lm,
                [t.lower() for t in texts],
                batch_size=batch_size,
                window_stride=window_stride,
                progress=progress,
                task="scoring (lowercase)",
            ).scores
    code = scored.code_lengths()
    target_code = dataclasses.replace(
        code, bits=code.bits[:n], first_token_bits=code.first_token_bits[:n]
    )
    ref_bits: dict[str, np.ndarray] = {}
    ref_target_bits: dict[str, np.ndarray] = {}
    conventions: dict[str, str] = {}
    for name, ref in (references or {}).items():
        if isinstance(ref, CodeLengths):
            t_bits, r_bits, conventions[name] = comparable_bits(target_code, ref)
            ref_bits[name], ref_target_bits[name] = r_bits, t_bits
        else:
            ref_bits[name] = np.asarray(ref, dtype=np.float64)
    norms = [GRADIENT_ATTACKS[a] for a in attacks if a in GRADIENT_ATTACKS]
    grad_norms = dict(grad_norms or {})
    todo = [m for m in norms if m not in grad_norms]
    if todo:
        enc = encode_texts(texts, lm.tokenizer)
        lengths = enc.lengths
        padded = np.zeros((n, int(lengths.max())), dtype=np.int64)
        for i, t in enumerate(enc.tokens):
            padded[i, : len(t)] = t
        fwd = lm.forward(window_stride) if window_stride is not None else lm.forward()
        grad_norms.update(
            engine_grad_norms(
                fwd,
                list(lm.model.parameters()),
                padded,
                lengths,
                norm=todo,
                pass_attention_mask=False,  # each sequence is trimmed to its length: no padding
                progress=progress,
                task="gradient norms",
            )
        )
    inputs = A.AttackInputs(
        target=target,
        texts=list(texts),
        target_bits=target_code.bits,
        references=ref_bits,
        reference_target_bits=ref_target_bits,
        lowercase=lower,
        grad_norms=grad_norms.get("l2"),
        grad_norms_mimir=grad_norms.get("mimir"),
        k=k,
    )
    return SampleScores(
        scores=A.compute_attacks(attacks, inputs),
        target_bits=target_code.bits,
        n_tokens=target.n_predicted.astype(np.int64),
        grad_norms={m: np.asarray(grad_norms[m], dtype=np.float64) for m in norms},
        reference_bits=ref_bits,
        first_token=conventions,
    )


def _texts_sha256(texts: Any) -> str:
    """SHA-256 of the evaluated texts in order: the config names the data files, not their
    contents, so stored cells carry this and are reused only for the same texts."""
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        b = str(t).encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _model_sha256(lm: Any) -> str:
    """SHA-256 of a loaded model's description (its files' stamp, a GGUF file's hash, a merged
    adapter's hash ...): stored gradient norms are reused only for the same model."""
    import hashlib
    import json

    described = json.dumps(
        lm.describe() | {"files_stamp": getattr(lm, "files_stamp", None)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(described.encode()).hexdigest()


def _reference_code(
    rd: Any, i: int, path: str, n: int, texts_sha256: str
) -> tuple[Any, dict[str, Any]] | None:
    """A reference's stored code lengths (cell ``reference-<i>``), when they were computed for
    ``path`` as its files are now and for the same texts."""
    from memlens.models.loading import checkpoint_stamp
    from memlens.scoring import CodeLengths

    cell = rd.load_cell(f"reference-{i}")
    if cell is None or cell.get("path") != path or "first_token_bits" not in cell:
        return None
    if len(cell["bits"]) != n or cell.get("texts_sha256") != texts_sha256:
        return None
    if cell.get("files_stamp") != checkpoint_stamp(path):
        return None
    return CodeLengths.from_arrays(
        {k: np.asarray(cell[k]) for k in CodeLengths.__dataclass_fields__}
    ), cell["model"]


def run(
    config: MIAConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> RunResult[MIASummary]:
    """Run ``memlens mia``: load, score, attack, evaluate, write the run directory.

    Writes ``manifest.json``, ``mia.json`` (:class:`~memlens.mia.summary.MIASummary`: metrics
    per attack), ``scores.parquet`` (one row per sample: id, label, text, tokens, code lengths,
    every attack's score) and log-log ROC plots (``roc.png`` with all attacks,
    ``roc_<attack>.png`` each); the manifest also describes the target and the references
    (dtype, a GGUF file's quantization, a merged adapter). Reference code lengths and gradient
    norms are saved as resumable cells; a rerun with the same ``out`` reuses them and names them
    in ``reused`` (``reference-<i>``, ``gradnorm``). The data and the target are read and loaded before the
    run directory is created, and a fresh run directory that a later failure (e.g. a reference
    that does not load) left empty is removed, so bad input leaves nothing behind; ``out=None``
    writes a fresh timestamped directory.
    """
    require_config(config, MIAConfig)
    from memlens.models.hf import load_causal_lm
    from memlens.store import RunDir, default_out_dir

    given = list(config.references)
    if config.adapter is not None and not config.references:
        config = config.model_copy(update={"references": [config.model]})  # the bare base
    attacks = select_attacks(config.attacks, len(config.references))
    if given and "ref" not in attacks:
        raise UserError(
            f"{len(given)} reference model(s) given, but only the ref attack uses them and the "
            "chosen `attacks` leave it out; add ref or drop the `references`."
        )
    samples = load_samples(
        members=config.members,
        nonmembers=config.nonmembers,
        data=config.data,
        text_column=config.text_column,
        label_column=config.label_column,
        split=config.split,
    )
    out = Path(out) if out is not None else default_out_dir("mia")
    manifest_config = config.to_dict() | {"attacks": attacks}
    if (out / "manifest.json").exists():  # fail now, not after the work, if it holds another run
        RunDir(out, "mia", manifest_config, config.seed)
    lm = load_causal_lm(
        config.model,
        tokenizer=config.tokenizer,
        dtype=config.dtype,
        device=config.device,
        adapter=config.adapter,
    )
    if lm.tokenizer is None:
        raise UserError(f"model {config.model} has no tokenizer; pass `tokenizer`.")
    fresh = not out.exists()
    rd = RunDir(out, "mia", manifest_config, config.seed)
    try:
        return _score_and_write(config, rd, lm, attacks, samples, progress)
    except BaseException:
        if fresh:  # e.g. a reference that does not load: leave no empty run directory behind
            rd.discard_if_empty()
        raise


def _score_and_write(
    config: MIAConfig,
    rd: Any,
    lm: Any,
    attacks: list[str],
    samples: Any,
    progress: ProgressFn | None,
) -> RunResult[MIASummary]:
    """The part of :func:`run` after the target is loaded: references, attacks, outputs."""
    import pandas as pd

    from memlens.models.hf import load_causal_lm
    from memlens.scoring import score_texts

    refs: dict[str, Any] = {}
    ref_info: list[dict[str, Any]] = []
    reused: list[str] = []  # the cells an earlier run with the same ``out`` left
    texts_sha256 = _texts_sha256(samples.texts)
    if "ref" in attacks:
        for i, (name, path) in enumerate(
            zip(reference_names(config.references), config.references, strict=True)
        ):
            stored = _reference_code(rd, i, path, len(samples), texts_sha256)
            if stored is None:
                ref = load_causal_lm(path, dtype=config.dtype, device=config.device)
                scored = score_texts(
                    ref,
                    samples.texts,
                    batch_size=config.batch_size,
                    window_stride=config.window_stride,
                    progress=progress,
                    task=f"scoring (reference {name})",
                )
                stored = (scored.code_lengths(), ref.describe() | {"label": name})
                arrays = {k: v.tolist() for k, v in stored[0].to_arrays().items()}
                rd.save_cell(
                    f"reference-{i}",
                    {
                        "path": path,
                        "texts_sha256": texts_sha256,
                        "files_stamp": ref.files_stamp,
                        "model": stored[1],
                        **arrays,
                    },
                )
                del ref
            else:
                reused.append(f"reference-{i}")
            refs[name] = stored[0]
            ref_info.append(stored[1])

    norms = [GRADIENT_ATTACKS[a] for a in attacks if a in GRADIENT_ATTACKS]
    cell = rd.load_cell("gradnorm") if norms else None
    target_sha256 = _model_sha256(lm)
    if cell is not None and (
        cell.get("texts_sha256") != texts_sha256 or cell.get("model_sha256") != target_sha256
    ):
        cell = None  # computed for other texts or another model (same file names)
    gn = {
        m: np.asarray([np.nan if v is None else v for v in cell[m]], dtype=np.float64)
        for m in norms
        if cell is not None and len(cell.get(m) or []) == len(samples)
    }
    if gn:
        reused.append("gradnorm")
    res = score_samples(
        lm,
        samples.texts,
        attacks,
        references=refs,
        k=config.k,
        batch_size=config.batch_size,
        window_stride=config.window_stride,
        grad_norms=gn,
        progress=progress,
    )
    if norms and set(gn) != set(norms):
        rd.save_cell(
            "gradnorm",
            {m: [v if np.isfinite(v) else None for v in res.grad_norms[m].tolist()] for m in norms}
            | {"texts_sha256": texts_sha256, "model_sha256": target_sha256},
        )
    for info in ref_info:
        info["first_token"] = res.first_token.get(info["label"], "model")

    ids = np.arange(len(samples))
    evaluation = evaluate_attacks(
        res.scores,
        samples.labels,
        ids=ids.tolist(),
        fprs=config.fprs,
        n_boot=config.n_boot,
        level=config.level,
        seed=config.seed,
        nan_policy=config.nan_policy,
    )
    n1 = int(samples.labels.sum())
    summary = MIASummary(
        **dict(evaluation),
        n_members=n1,
        n_nonmembers=len(samples) - n1,
        k=config.k,
        model=lm.describe(),
        references=ref_info,
        data=samples.info,
        units=(
            "bits (log base 2); ref = code length under the reference minus under the target, "
            "the first token charged alike (first_token: model = each model codes it after its "
            "BOS; uniform = both charge it log2 V of their own tokenizer)"
        ),
    )
    table = pd.DataFrame(
        {
            "id": ids,
            "label": samples.labels.astype(np.int64),
            "source_index": samples.source_index,
            "n_tokens": res.n_tokens,
            "target_bits": res.target_bits,
            **{f"ref_bits:{name}": v for name, v in res.reference_bits.items()},
            **res.scores,
            "text": samples.texts,
        }
    )
    rd.write_table("scores.parquet", table)
    plot_roc(res.scores, samples.labels, rd, summary)
    rd.write_json(summary.file, summary.to_json())
    rd.write_manifest(
        outputs=["mia.json", "scores.parquet", "roc.png"],
        model=summary.model,
        references=summary.references,
    )
    return RunResult(summary=summary, out_dir=rd.path, reused=reused)


def _is_number(value: Any) -> bool:
    """Whether ``pd.to_numeric`` reads ``value`` as a number."""
    import pandas as pd

    try:
        pd.to_numeric(pd.Series([value]), errors="raise")
    except (ValueError, TypeError):
        return False
    return True


def run_metrics(
    config: MIAMetricsConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> RunResult[MIAMetricsSummary]:
    """``memlens mia metrics``: evaluate score columns of a file against its label column.

    The file (:func:`memlens.data.tables.read_table`) has a label column (1/member,
    0/non-member) and the score columns of ``config.columns`` (default ``score``; higher =
    member), e.g. the attack columns of a memlens ``scores.parquet``. A missing score is an
    unscored sample (``nan_policy``); a missing label is an error. With ``out``, also writes
    ``mia.json``, ROC plots and a manifest there; without, nothing is written (``out_dir`` is
    ``None``). ``progress`` is accepted for the run contract; the evaluation reports none.
    """
    require_config(config, MIAMetricsConfig)
    import pandas as pd

    from memlens.data.tables import is_missing, read_table

    path = Path(config.scores).expanduser()
    wanted = [c.strip() for c in config.columns if c.strip()] if config.columns else ["score"]
    if not wanted:
        raise UserError("`columns` names no score column.")
    if path.is_dir() or not path.exists():
        raise UserError(f"scores file {path} does not exist.")
    df = read_table(path)
    cols = [str(c) for c in df.columns]
    for c in [*wanted, config.label_column]:
        if c not in cols:
            numeric = [
                x
                for x in cols
                if x != config.label_column and pd.to_numeric(df[x], errors="coerce").notna().any()
            ]
            hint = (
                f"; numeric columns: {', '.join(numeric)} (choose with `columns`)"
                if numeric
                else ""
            )
            raise UserError(
                f"{path} has no column '{c}' (columns: {', '.join(cols) or 'none'}){hint}."
            )
    if len(df) == 0:
        raise UserError(f"{path} has no rows.")
    labels = df[config.label_column].tolist()
    missing = [i for i, v in enumerate(labels) if is_missing(v)]
    if missing:
        raise UserError(
            f"column '{config.label_column}' of {path} has empty labels (first: row {missing[0]}); "
            "every row needs 1 or 0."
        )
    y = parse_labels(labels)
    scores = {}
    for c in wanted:
        values = df[c].where(df[c].notna(), None)
        try:
            scores[c] = pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64)
        except (ValueError, TypeError):
            row = next((i for i, v in enumerate(values) if v is not None and not _is_number(v)), 0)
            raise UserError(
                f"column '{c}' of {path} holds {values.iloc[row]!r} in row {row}, which is not a "
                "number; leave a missing score empty."
            ) from None
    evaluation = evaluate_attacks(
        scores,
        y,
        fprs=config.fprs,
        n_boot=config.n_boot,
        level=config.level,
        seed=config.seed,
        nan_policy=config.nan_policy,
    )
    summary = MIAMetricsSummary(**dict(evaluation), source=str(path))
    if out is None:
        return RunResult(summary=summary)
    from memlens.store import RunDir

    rd = RunDir(out, "mia-metrics", config.to_dict() | {"columns": wanted}, config.seed)
    plot_roc(scores, y, rd, summary)
    rd.write_json(summary.file, summary.to_json())
    rd.write_manifest(outputs=["mia.json", "roc.png"])
    return RunResult(summary=summary, out_dir=rd.path)
