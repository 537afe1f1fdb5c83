"""memlens.data.tables: one reader, one missing-value rule, used for texts, labels and scores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from memlens.data.tables import is_missing, read_table
from memlens.data.text import read_texts
from memlens.errors import UserError


def _write_all(tmp_path, rows: list[dict]) -> dict[str, object]:
    """The same rows as CSV (None -> empty cell), JSON Lines (None -> null) and Parquet."""
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)  # None -> empty cell
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    return {s: tmp_path / f"t.{s}" for s in ("csv", "jsonl", "parquet")}


ROWS = [
    {"text": "a b", "label": "1", "score": "0.5"},
    {"text": None, "label": "0", "score": "0.25"},  # missing text
    {"text": "NA", "label": "1", "score": None},  # the text "NA"; a missing score
    {"text": "null", "label": "0", "score": "0.75"},
]


@pytest.mark.parametrize("suffix", ["csv", "jsonl", "parquet"])
def test_one_missing_value_rule_in_every_format(tmp_path, suffix):
    path = _write_all(tmp_path, ROWS)[suffix]
    df = read_table(path)
    text = df["text"].tolist()
    assert [is_missing(v) for v in text] == [False, True, False, False]
    assert text[2] == "NA" and text[3] == "null"  # strings, never missing (pandas' CSV default)
    assert [is_missing(v) for v in df["score"]] == [False, False, True, False]
    # a missing text is an empty text: dropped and counted by the text reader
    assert read_texts(path) == (["a b", "NA", "null"], 1)


def test_missing_score_is_unscored_and_missing_label_is_an_error(tmp_path):
    from memlens.mia.recipe import MIAMetricsConfig, run_metrics

    paths = _write_all(tmp_path, ROWS)
    for suffix, path in paths.items():
        s = run_metrics(MIAMetricsConfig(scores=str(path), n_boot=10, fprs=[0.5])).summary
        assert s.unscored == [{"id": 2, "label": 1, "attacks": ["score"]}], suffix
        # the three scored rows: members 0.5; non-members 0.25, 0.75 -> AUC 1/2 by hand
        assert s.n_evaluated == 3 and s.attacks["score"].auc == 0.5
    pd.DataFrame({"score": [0.1, 0.2], "label": [1, None]}).to_csv(tmp_path / "l.csv", index=False)
    with pytest.raises(UserError, match="empty labels"):
        run_metrics(MIAMetricsConfig(scores=str(tmp_path / "l.csv")))


def test_table_errors_are_one_sentence(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n{"body": "y"}\n')
    with pytest.raises(UserError, match=r"line 2 of .* has no 'text' field .*`text_column`"):
        read_table(tmp_path / "a.jsonl", columns={"text": "text_column"})
    (tmp_path / "b.csv").write_bytes(b"text\ncaf\xe9\n")
    with pytest.raises(UserError, match="not valid UTF-8"):
        read_table(tmp_path / "b.csv")
    with pytest.raises(UserError, match="does not exist"):
        read_table(tmp_path / "nope.parquet")
    pd.DataFrame({"body": ["a"]}).to_parquet(tmp_path / "c.parquet")
    with pytest.raises(UserError, match=r"no column 'text' \(columns: body\)"):
        read_table(tmp_path / "c.parquet", columns={"text": "text_column"})


def test_csv_cells_stay_strings(tmp_path):
    (tmp_path / "d.csv").write_text("text,n\n007,1\n1e3,2\n")
    df = read_table(tmp_path / "d.csv")
    assert df["text"].tolist() == ["007", "1e3"] and df["n"].tolist() == ["1", "2"]
    assert np.asarray(pd.to_numeric(df["n"])).tolist() == [1, 2]
