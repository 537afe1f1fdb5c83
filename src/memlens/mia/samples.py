"""Members and non-members for membership inference: the input layouts of ``memlens mia``.

* ``members`` + ``nonmembers``: two sources in any format of :func:`memlens.data.text.read_texts`
  (``.txt`` one text per line, ``.jsonl``/``.csv``/``.parquet`` with a text column, a
  ``save_to_disk`` directory or a hub dataset name);
* ``data``: one ``.jsonl``/``.csv``/``.parquet`` table or ``save_to_disk`` directory (read by
  :func:`memlens.data.tables.read_table`) with a text column and a ``label`` column (1/member,
  0/non-member; WikiMIA's layout, text column ``input``), or with ``member`` and ``nonmember``
  text columns (MIMIR's layout, one pair per row).

Missing values follow the one rule of :mod:`memlens.data.tables`: a missing text is an empty text
(dropped and counted), a missing label is an error. Texts are exactly deduplicated within each
class; a text found among both members and non-members is excluded from both and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memlens.data.tables import is_missing, read_table
from memlens.data.text import read_texts, texts_from_column
from memlens.errors import UserError
from memlens.mia.metrics import parse_labels

TEXT_COLUMN_CANDIDATES = ("text", "input")


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
        raise UserError("pass either `data` or `members` with `nonmembers`, not both.")
    if data is None:
        if members is None or nonmembers is None:
            raise UserError(
                "pass `members` and `nonmembers` (two sources), or `data` (one labeled table)."
            )

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

    df = read_table(data, split=split)
    cols = [str(c) for c in df.columns]
    if text_column is None and label_column not in cols and {"member", "nonmember"} <= set(cols):
        mem = texts_from_column(df["member"].tolist(), "member", str(data))
        non = texts_from_column(df["nonmember"].tolist(), "nonmember", str(data))
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
                "needs a text column (`text_column`) and a label column (`label_column`), or "
                "'member' and 'nonmember' columns."
            )
    texts = texts_from_column(df[text_column].tolist(), text_column, str(data))
    values = df[label_column].tolist()
    missing = [i for i, v in enumerate(values) if is_missing(v)]
    if missing:
        raise UserError(
            f"row {missing[0]} of column '{label_column}' in {data} has no label; every row needs 1 or 0."
        )
    labels = parse_labels(values)
    info = {
        "layout": "text + label column",
        "data": str(data),
        "text_column": text_column,
        "label_column": label_column,
    }
    return _assemble(texts, labels, np.arange(len(texts)), info)
