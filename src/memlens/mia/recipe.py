"""Run membership-inference attacks on a causal LM and evaluate them: ``memlens mia``.

The whole experiment, as a function a notebook can call::

    from memlens.mia.recipe import MIAConfig, run
    result = run(MIAConfig(model="path/to/model", references=["path/to/ref"],
                           members="train.jsonl", nonmembers="heldout.jsonl"), out="runs/mia")
    result["attacks"]["loss"]["auc"]

Steps: read members and non-members (:func:`load_samples`), score every text once with the
target through the shared scoring pass (:func:`memlens.scoring.score_texts`, which wraps
:func:`memlens.scoring.score_tokens`; the lowercased texts ride in the same batched pass), score
the texts with each reference model (code length in bits under its own tokenizer), compute
per-sample gradient norms when ``gradnorm`` is asked for (:func:`memlens.scoring.grad_norms`), run
the attacks of :mod:`memlens.mia.attacks` and evaluate them with
:func:`memlens.mia.metrics.evaluate_attacks` (one NaN policy for all attacks).

Input layouts (:func:`load_samples`):

* ``members`` + ``nonmembers``: two sources in any format of :func:`memlens.data.text.read_texts`
  (``.txt`` one text per line, ``.jsonl``/``.csv``/``.parquet`` with a text column, a
  ``save_to_disk`` directory or a hub dataset name);
* ``data``: one ``.jsonl``/``.csv``/``.parquet`` table or ``save_to_disk`` directory with a text
  column and a ``label`` column (1/member, 0/non-member; WikiMIA's layout, text column
  ``input``), or with ``member`` and ``nonmember`` text columns (MIMIR's layout, one pair per
  row).

Texts are exactly deduplicated within each class; a text found among both members and
non-members is excluded from both and reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError
from memlens.mia import attacks as A
from memlens.mia.metrics import DEFAULT_FPRS, evaluate_attacks, parse_labels

TEXT_COLUMN_CANDIDATES = ("text", "input")

Progress = Callable[[str, int, int], None]


@dataclass
class MIASamples:
    """Texts with membership labels (1 = member, 0 = non-member).

    ``source_index`` is each text's row in its source (first occurrence); ``info`` records the
    layout, sources, columns, duplicates and conflicts for the manifest.
    """

    texts: list[str]
    labels: np.ndarray
    source_index: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.texts)


def _read_table(source: str, split: str | None) -> Any:
    """A pandas DataFrame from a .jsonl/.csv/.parquet file or a ``save_to_disk`` directory."""
    import pandas as pd

    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if (
        not path.exists()
        and suffix not in (".jsonl", ".csv", ".parquet")
        and not str(source).startswith((".", "/", "~"))
    ):
        import datasets  # a hub dataset name (needs the hub or its cache)

        try:
            return datasets.load_dataset(str(source), split=split or "train").to_pandas()
        except (FileNotFoundError, ValueError, OSError, ConnectionError) as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"could not load dataset '{source}' (split {split or 'train'}): {msg.rstrip('.')}."
            ) from None
    if path.is_dir():
        import datasets

        try:
            ds = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as exc:
            raise UserError(
                f"could not load dataset directory {path}: {str(exc).splitlines()[0]}."
            ) from None
        if isinstance(ds, datasets.DatasetDict):
            want = split or "train"
            if want not in ds:
                raise UserError(
                    f"dataset {path} has no split '{want}' (splits: {', '.join(ds)}); choose one with --split."
                )
            ds = ds[want]
        return ds.to_pandas()
    if not path.is_file():
        raise UserError(f"data file {path} does not exist.")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty.")
    try:
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True, dtype=False, encoding="utf-8")
        if suffix == ".csv":
            return pd.read_csv(path, keep_default_na=False, encoding="utf-8")
        if suffix == ".parquet":
            return pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a readable {suffix[1:]} table ({msg.rstrip('.')})."
        ) from None
    raise UserError(
        f"{path} has an unsupported suffix '{suffix}' for a labeled table; use .jsonl, .csv or .parquet."
    )


def _texts_of(values: Sequence[Any], column: str, where: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = ""
        if not isinstance(v, str):
            raise UserError(
                f"row {i} of column '{column}' in {where} is a {type(v).__name__}, not a string."
            )
        out.append(v)
    return out


def _assemble(
    texts: list[str], labels: np.ndarray, rows: np.ndarray, info: dict[str, Any]
) -> MIASamples:
    """Drop empty texts, deduplicate within each class, exclude cross-class conflicts."""
    keep = [i for i, t in enumerate(texts) if t.strip()]
    info["n_empty_dropped"] = len(texts) - len(keep)
    first: dict[tuple[str, int], int] = {}
    dup = 0
    for i in keep:
        key = (texts[i], int(labels[i]))
        if key in first:
            dup += 1
        else:
            first[key] = i
    by_text: dict[str, set[int]] = {}
    for t, lab in first:
        by_text.setdefault(t, set()).add(lab)
    conflicts = {t for t, labs in by_text.items() if len(labs) > 1}
    idx = sorted(i for (t, _), i in first.items() if t not in conflicts)
    info["n_duplicates_removed"] = dup
    info["n_conflicts_excluded"] = len(conflicts)
    if conflicts:
        info["conflicts_first_rows"] = sorted(
            int(rows[i]) for (t, _), i in first.items() if t in conflicts
        )[:20]
    out = MIASamples(
        texts=[texts[i] for i in idx],
        labels=labels[idx].astype(np.int8),
        source_index=rows[idx].astype(np.int64),
        info=info,
    )
    n1 = int(out.labels.sum())
    n0 = len(out) - n1
    if n1 == 0 or n0 == 0:
        raise UserError(
            f"need both members and non-members, got {n1} members and {n0} non-members after "
            "dropping empty, duplicate and conflicting texts."
        )
    return out


def load_samples(
    *,
    members: str | None = None,
    nonmembers: str | None = None,
    data: str | None = None,
    text_column: str | None = None,
    label_column: str = "label",
    split: str | None = None,
) -> MIASamples:
    """Read members and non-members in one of the supported layouts (see the module docstring).

    ``text_column`` defaults to ``text`` (or ``input``, WikiMIA's name, when a labeled table has
    no ``text`` column).
    """
    if data is not None and (members is not None or nonmembers is not None):
        raise UserError("pass either --data or --members with --nonmembers, not both.")
    if data is None:
        if members is None or nonmembers is None:
            raise UserError(
                "pass --members and --nonmembers (two sources), or --data (one labeled table)."
            )
        from memlens.data.text import read_texts

        col = text_column or "text"
        mem, n_empty_m = read_texts(members, text_column=col, split=split)
        non, n_empty_n = read_texts(nonmembers, text_column=col, split=split)
        texts = mem + non
        labels = np.r_[np.ones(len(mem), np.int8), np.zeros(len(non), np.int8)]
        rows = np.r_[np.arange(len(mem)), np.arange(len(non))]
        info = {
            "layout": "members+nonmembers",
            "members": str(members),
            "nonmembers": str(nonmembers),
            "text_column": col,
        }
        out = _assemble(texts, labels, rows, info)
        out.info["n_empty_dropped"] += n_empty_m + n_empty_n
        return out

    df = _read_table(data, split)
    cols = [str(c) for c in df.columns]
    if text_column is None and label_column not in cols and {"member", "nonmember"} <= set(cols):
        mem = _texts_of(df["member"].tolist(), "member", str(data))
        non = _texts_of(df["nonmember"].tolist(), "nonmember", str(data))
        texts = mem + non
        labels = np.r_[np.ones(len(mem), np.int8), np.zeros(len(non), np.int8)]
        rows = np.r_[np.arange(len(mem)), np.arange(len(non))]
        info = {"layout": "member/nonmember columns (MIMIR)", "data": str(data)}
        return _assemble(texts, labels, rows, info)
    if text_column is None:
        text_column = next((c for c in TEXT_COLUMN_CANDIDATES if c in cols), "text")
    for c in (text_column, label_column):
        if c not in cols:
            raise UserError(
                f"{data} has no column '{c}' (columns: {', '.join(cols) or 'none'}); a labeled table "
                "needs a text column (--text-column) and a label column (--label-column), or "
                "'member' and 'nonmember' columns."
            )
    texts = _texts_of(df[text_column].tolist(), text_column, str(data))
    labels = parse_labels(df[label_column].tolist())
    info = {
        "layout": "text + label column",
        "data": str(data),
        "text_column": text_column,
        "label_column": label_column,
    }
    return _assemble(texts, labels, np.arange(len(texts)), info)


@dataclass
class MIAConfig:
    """Settings of one ``memlens mia`` run (saved in the manifest).

    Parameters
    ----------
    model: target model: anything :func:`memlens.models.hf.load_causal_lm` accepts (directory,
        GGUF file, fetched registry name, hub name).
    adapter: a PEFT adapter over ``model``, merged at load; ``references`` then default to the
        bare ``model`` (the base before fine-tuning).
    references: reference models for the ``ref`` attack (one score column per reference).
    members, nonmembers, data, text_column, label_column, split: the samples (:func:`load_samples`).
    attacks: attack names (default: every registered attack that the inputs allow).
    k: the Min-K% / Min-K%++ fraction.
    fprs: FPR levels for TPR at FPR <= alpha.
    n_boot, level: bootstrap resamples and level of the AUC confidence interval.
    nan_policy: ``common`` (evaluate all attacks on the samples every attack scored) or ``error``.
    batch_size, window_stride, dtype, device, tokenizer: scoring settings
        (:func:`memlens.models.hf.load_causal_lm`, :func:`memlens.scoring.score_texts`).
    seed: bootstrap seed.
    """

    model: str
    references: list[str] = field(default_factory=list)
    adapter: str | None = None
    members: str | None = None
    nonmembers: str | None = None
    data: str | None = None
    text_column: str | None = None
    label_column: str = "label"
    split: str | None = None
    attacks: list[str] | None = None
    k: float = 0.2
    fprs: list[float] = field(default_factory=lambda: list(DEFAULT_FPRS))
    n_boot: int = 1000
    level: float = 0.95
    nan_policy: str = "common"
    batch_size: int = 32
    window_stride: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    tokenizer: str | None = None
    seed: int = 0

    def validate(self) -> None:
        if not 0.0 < self.k <= 1.0:
            raise UserError(f"--k must be in (0, 1], got {self.k}.")
        for a in self.fprs:
            if not 0.0 < a < 1.0:
                raise UserError(f"FPR level must be strictly between 0 and 1, got {a}.")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}.")
        if self.n_boot < 1:
            raise UserError(f"--n-boot must be at least 1, got {self.n_boot}.")
        if self.nan_policy not in ("common", "error"):
            raise UserError(f"--nan-policy must be 'common' or 'error', got {self.nan_policy!r}.")


def select_attacks(spec: Sequence[str] | str | None, n_references: int) -> list[str]:
    """The attacks to run: ``spec`` validated, or by default all (``ref`` only with a reference)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        names = list(A.ATTACKS)
        return [n for n in names if n != "ref" or n_references > 0]
    names = A.parse_attacks(spec)
    if "ref" in names and n_references == 0:
        raise UserError("the ref attack needs at least one reference model; pass --reference.")
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


def _take_rows(ts: Any, rows: slice) -> Any:
    """Rows of a :class:`~memlens.scoring.TokenScores`, trimmed to the longest kept sequence."""
    from memlens.scoring import TokenScores

    width = max(int(ts.mask[rows].sum(axis=-1).max(initial=0)), 1)

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[rows, :width]

    return TokenScores(
        log2p=cut(ts.log2p),
        mask=cut(ts.mask),
        mu_log2p=cut(ts.mu_log2p),
        sigma_log2p=cut(ts.sigma_log2p),
        entropy_bits=cut(ts.entropy_bits),
        is_argmax=cut(ts.is_argmax),
    )


def score_samples(
    lm: Any,
    texts: Sequence[str],
    attacks: Sequence[str],
    *,
    references: dict[str, np.ndarray] | None = None,
    k: float = 0.2,
    batch_size: int = 32,
    window_stride: int | None = None,
    grad_norms: np.ndarray | None = None,
    progress: Progress | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Attack scores for ``texts`` under a loaded target ``lm`` (:class:`~memlens.models.hf.CausalLM`).

    One batched scoring pass over the texts, shared by every attack (the lowercased copies for
    ``lowercase`` are scored in the same pass, or in a second batched pass without the Min-K%++
    statistics when those are on); ``references`` maps a name to each text's code length in bits under that
    reference; gradient norms are computed here unless given. Returns ``(scores, extras)``:
    score columns (higher = member) and per-sample ``target_bits`` / ``n_tokens``.
    """
    from memlens.data.text import encode_texts
    from memlens.scoring import grad_norms as engine_grad_norms
    from memlens.scoring import score_texts

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
    report = (lambda done: progress("target", done, len(batch))) if progress else None
    scored = score_texts(
        lm, batch, batch_size=batch_size, window_stride=window_stride, stats=stats, progress=report
    )
    target = _take_rows(scored.scores, slice(0, n))
    if "lowercase" in needs:
        if len(batch) == 2 * n:
            lower = _take_rows(scored.scores, slice(n, 2 * n))
        else:
            report = (lambda done: progress("lowercase", done, n)) if progress else None
            lower = score_texts(
                lm,
                [t.lower() for t in texts],
                batch_size=batch_size,
                window_stride=window_stride,
                progress=report,
            ).scores
    target_bits = scored.bits[:n]
    if "gradnorm" in needs and grad_norms is None:
        enc = encode_texts(texts, lm.tokenizer)
        lengths = enc.lengths
        padded = np.zeros((n, int(lengths.max())), dtype=np.int64)
        for i, t in enumerate(enc.tokens):
            padded[i, : len(t)] = t
        fwd = lm.forward(window_stride) if window_stride is not None else lm.forward()
        report = (lambda done: progress("gradnorm", done, n)) if progress else None
        grad_norms = engine_grad_norms(
            fwd,
            list(lm.model.parameters()),
            padded,
            lengths,
            pass_attention_mask=False,  # each sequence is trimmed to its length: no padding
            progress=report,
        )
    inputs = A.AttackInputs(
        target=target,
        texts=list(texts),
        target_bits=target_bits,
        references=references or {},
        lowercase=lower,
        grad_norms=grad_norms,
        k=k,
    )
    scores = A.compute_attacks(attacks, inputs)
    extras = {"target_bits": target_bits, "n_tokens": target.n_predicted.astype(np.int64)}
    if grad_norms is not None:
        extras["grad_norm"] = np.asarray(grad_norms, dtype=np.float64)
    return scores, extras


def run(config: MIAConfig, out: str | Path, progress: Progress | None = None) -> dict[str, Any]:
    """Run ``memlens mia``: load, score, attack, evaluate, write the run directory.

    Writes ``manifest.json``, ``mia.json`` (metrics per attack), ``scores.parquet`` (one row per
    sample: id, label, text, tokens, code lengths, every attack's score) and log-log ROC plots
    (``roc.png`` with all attacks, ``roc_<attack>.png`` each). Reference code lengths and
    gradient norms are saved as resumable cells. Returns the ``mia.json`` content.
    """
    import pandas as pd

    from memlens.models.hf import load_causal_lm
    from memlens.scoring import score_texts
    from memlens.store import RunDir

    config.validate()
    if config.adapter is not None and not config.references:
        config = replace(config, references=[config.model])  # the bare base
    attacks = select_attacks(config.attacks, len(config.references))
    samples = load_samples(
        members=config.members,
        nonmembers=config.nonmembers,
        data=config.data,
        text_column=config.text_column,
        label_column=config.label_column,
        split=config.split,
    )
    cfg = asdict(config) | {"attacks": attacks}
    rd = RunDir(out, "mia", cfg, config.seed)
    lm = load_causal_lm(
        config.model,
        tokenizer=config.tokenizer,
        dtype=config.dtype,
        device=config.device,
        adapter=config.adapter,
    )
    if lm.tokenizer is None:
        raise UserError(f"model {config.model} has no tokenizer; pass --tokenizer.")

    ref_bits: dict[str, np.ndarray] = {}
    ref_info = []
    if "ref" in attacks:
        for i, (name, path) in enumerate(
            zip(reference_names(config.references), config.references, strict=True)
        ):
            cell = rd.load_cell(f"reference-{i}")
            if cell is not None and cell.get("path") == path and len(cell["bits"]) == len(samples):
                ref_bits[name] = np.asarray(cell["bits"], dtype=np.float64)
                ref_info.append(cell["model"])
                continue
            ref = load_causal_lm(path, dtype=config.dtype, device=config.device)
            report = (
                (lambda done, name=name: progress(f"ref {name}", done, len(samples)))
                if progress
                else None
            )
            scored = score_texts(
                ref,
                samples.texts,
                batch_size=config.batch_size,
                window_stride=config.window_stride,
                progress=report,
            )
            ref_bits[name] = scored.bits
            info = ref.describe() | {"label": name, "first_token_bits": scored.first_token_bits}
            ref_info.append(info)
            rd.save_cell(
                f"reference-{i}", {"path": path, "model": info, "bits": scored.bits.tolist()}
            )
            del ref

    gn = None
    if "gradnorm" in attacks:
        cell = rd.load_cell("gradnorm")
        if cell is not None and len(cell["grad_norm"]) == len(samples):
            gn = np.asarray(
                [np.nan if v is None else v for v in cell["grad_norm"]], dtype=np.float64
            )

    scores, extras = score_samples(
        lm,
        samples.texts,
        attacks,
        references=ref_bits,
        k=config.k,
        batch_size=config.batch_size,
        window_stride=config.window_stride,
        grad_norms=gn,
        progress=progress,
    )
    if "grad_norm" in extras and gn is None:
        rd.save_cell(
            "gradnorm",
            {"grad_norm": [None if not np.isfinite(v) else v for v in extras["grad_norm"]]},
        )

    ids = np.arange(len(samples))
    result = evaluate_attacks(
        scores,
        samples.labels,
        ids=ids.tolist(),
        fprs=config.fprs,
        n_boot=config.n_boot,
        level=config.level,
        seed=config.seed,
        nan_policy=config.nan_policy,
    )
    n1 = int(samples.labels.sum())
    result = {
        "attacks": result.pop("attacks"),
        "n_members": n1,
        "n_nonmembers": len(samples) - n1,
        **result,
        "k": config.k,
        "model": lm.describe(),
        "references": ref_info,
        "data": samples.info,
        "units": "bits (log base 2); ref = code length under the reference minus under the target",
    }

    table = pd.DataFrame(
        {
            "id": ids,
            "label": samples.labels.astype(np.int64),
            "source_index": samples.source_index,
            "n_tokens": extras["n_tokens"],
            "target_bits": extras["target_bits"],
            **{f"ref_bits:{name}": v for name, v in ref_bits.items()},
            **scores,
            "text": samples.texts,
        }
    )
    rd.write_table("scores.parquet", table)
    plot_roc(scores, samples.labels, rd, result)
    rd.write_json("mia.json", result)
    rd.write_manifest(outputs=["mia.json", "scores.parquet", "roc.png"])
    return result


def plot_roc(
    scores: dict[str, np.ndarray], labels: np.ndarray, rd: Any, result: dict[str, Any]
) -> None:
    """Log-log step ROC curves: ``roc.png`` (all attacks) and ``roc_<attack>.png`` (one each)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from memlens.mia.metrics import step_roc

    keep = np.ones(labels.size, dtype=bool)
    for v in scores.values():
        keep &= np.isfinite(v)
    y = labels[keep]
    n0 = int((y == 0).sum())
    floor = 0.5 / max(n0, 1)
    curves = {name: step_roc(v[keep], y) for name, v in scores.items()}

    def draw(ax: Any, names: list[str]) -> None:
        for name in names:
            r = curves[name]
            auc = result["attacks"][name]["auc"]
            ax.step(
                np.maximum(r["fpr"], floor),
                np.maximum(r["tpr"], floor),
                where="post",
                label=f"{name} (AUC {auc:.3f})",
            )
        grid = np.logspace(np.log10(floor), 0, 50)
        ax.plot(grid, grid, ls="--", c="gray", lw=0.8, label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1.05)
        ax.set_xlabel("false positive rate (non-members flagged)")
        ax.set_ylabel("true positive rate (members flagged)")
        ax.legend(fontsize=7, loc="lower right")

    fig, ax = plt.subplots(figsize=(5, 4.5))
    draw(ax, list(curves))
    ax.set_title(f"MIA ROC, log-log ({int(y.sum())} members, {n0} non-members)")
    rd.save_figure("roc.png", fig)
    for name in curves:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        draw(ax, [name])
        ax.set_title(f"{name}: log-log ROC")
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        rd.save_figure(f"roc_{safe}.png", fig)


def read_scores_table(path: str | Path) -> Any:
    """A DataFrame from a ``.csv``, ``.parquet`` or ``.jsonl`` scores file."""
    import pandas as pd

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"scores file {path} does not exist.")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return pd.read_csv(path)
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix == ".jsonl":
            return pd.read_json(path, lines=True)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"{path} is not a readable {suffix[1:]} file ({msg.rstrip('.')})."
        ) from None
    raise UserError(f"{path} has an unsupported suffix '{suffix}'; use .csv, .parquet or .jsonl.")


def evaluate_scores_file(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    label_column: str = "label",
    fprs: Sequence[float] = DEFAULT_FPRS,
    n_boot: int = 1000,
    level: float = 0.95,
    nan_policy: str = "common",
    seed: int = 0,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """``memlens mia metrics``: evaluate score columns of a file against its label column.

    The file has a ``label`` column (1/member, 0/non-member) and a ``score`` column (higher =
    member), or the score columns named in ``columns`` (e.g. the attack columns of a memlens
    ``scores.parquet``). Empty scores count as unscored under ``nan_policy``. With ``out``, also
    writes ``mia.json``, ROC plots and a manifest there.
    """
    import pandas as pd

    df = read_scores_table(path)
    cols = [str(c) for c in df.columns]
    wanted = [c.strip() for c in columns if c.strip()] if columns else ["score"]
    if not wanted:
        raise UserError("--columns names no score column.")
    for c in [*wanted, label_column]:
        if c not in cols:
            numeric = [
                x for x in cols if x != label_column and pd.api.types.is_numeric_dtype(df[x])
            ]
            hint = (
                f"; numeric columns: {', '.join(numeric)} (choose with --columns)"
                if numeric
                else ""
            )
            raise UserError(
                f"{path} has no column '{c}' (columns: {', '.join(cols) or 'none'}){hint}."
            )
    if len(df) == 0:
        raise UserError(f"{path} has no rows.")
    labels = df[label_column].tolist()
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in labels):
        raise UserError(
            f"column '{label_column}' of {path} has empty labels; every row needs 1 or 0."
        )
    y = parse_labels(labels)
    scores = {}
    for c in wanted:
        try:
            scores[c] = pd.to_numeric(df[c], errors="raise").to_numpy(dtype=np.float64)
        except (ValueError, TypeError):
            raise UserError(f"column '{c}' of {path} holds values that are not numbers.") from None
    result = evaluate_attacks(
        scores, y, fprs=fprs, n_boot=n_boot, level=level, seed=seed, nan_policy=nan_policy
    )
    result["source"] = str(path)
    if out is not None:
        from memlens.store import RunDir

        cfg = {
            "scores": str(path),
            "columns": wanted,
            "label_column": label_column,
            "fprs": list(fprs),
            "n_boot": n_boot,
            "level": level,
            "nan_policy": nan_policy,
        }
        rd = RunDir(out, "mia-metrics", cfg, seed)
        plot_roc(scores, y, rd, result)
        rd.write_json("mia.json", result)
        rd.write_manifest(outputs=["mia.json", "roc.png"])
    return result
