"""memlens.data.text: readers, chunking, exact dedup, BOS encoding (known answers by construction)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from helpers_hf import write_jsonl, write_lines
from memlens.data.text import chunk_texts, deduplicate, encode_texts, load_texts, read_texts
from memlens.errors import UserError

TEXTS = [
    "alpha beta",
    "gamma, délta  ",
    "alpha beta",
    "日本語 text",
    "  leading space",
    "alpha beta",
]
# unique in first-seen order, with counts and first indices known by hand
UNIQUE = ["alpha beta", "gamma, délta  ", "日本語 text", "  leading space"]
COUNTS = [3, 1, 1, 1]
FIRST = [0, 1, 3, 4]


@pytest.fixture
def sources(tmp_path):
    paths = {
        "txt": write_lines(tmp_path / "d.txt", TEXTS),
        "jsonl": write_jsonl(tmp_path / "d.jsonl", TEXTS),
    }
    pd.DataFrame({"id": range(len(TEXTS)), "text": TEXTS}).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame({"text": TEXTS, "n": range(len(TEXTS))}).to_parquet(tmp_path / "d.parquet")
    paths["csv"] = tmp_path / "d.csv"
    paths["parquet"] = tmp_path / "d.parquet"
    import datasets

    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": TEXTS})}).save_to_disk(
        str(tmp_path / "ds")
    )
    paths["dataset"] = tmp_path / "ds"
    return paths


@pytest.mark.parametrize("kind", ["txt", "jsonl", "csv", "parquet", "dataset"])
def test_every_format_gives_the_same_samples_and_counts(sources, kind):
    ts = load_texts(sources[kind], split="train" if kind == "dataset" else None)
    assert ts.texts == UNIQUE
    assert ts.counts.tolist() == COUNTS
    assert ts.first_index.tolist() == FIRST
    assert ts.n_raw == 6 and ts.n_duplicates_removed == 2 and ts.n_empty_dropped == 0


def test_txt_blank_lines_dropped_and_crlf_stripped(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"one two\r\n\r\n   \nthree\n")
    texts, n_empty = read_texts(p)
    assert texts == ["one two", "three"]
    assert n_empty == 2  # the final newline ends a line; it is not an empty sample


def test_no_dedup_keeps_everything(sources):
    ts = load_texts(sources["txt"], dedup=False)
    assert ts.texts == TEXTS and ts.counts.tolist() == [1] * 6


def test_deduplicate_known_answer():
    u, c, f = deduplicate(["b", "a", "b", "b", "c", "a"])
    assert u == ["b", "a", "c"] and c.tolist() == [3, 2, 1] and f.tolist() == [0, 1, 4]


@pytest.mark.parametrize(
    ("content", "name", "column", "fragment"),
    [
        (b"caf\xe9\n", "bad.txt", "text", "not valid UTF-8"),
        (b"", "empty.txt", "text", "is empty"),
        (b"\n  \n", "blank.txt", "text", "no non-empty texts"),
        (b'{"body": "x"}\n', "d.jsonl", "text", "has no 'text' field"),
        (b'{"text": 3}\n', "d.jsonl", "text", "not a string"),
        (b"{oops\n", "d.jsonl", "text", "not valid JSON"),
        (b"body\nx\n", "d.csv", "text", "has no column 'text'"),
        (b"x", "d.xml", "text", "unsupported suffix"),
    ],
)
def test_bad_input_is_one_sentence(tmp_path, content, name, column, fragment):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(UserError) as err:
        read_texts(p, text_column=column)
    msg = str(err.value)
    assert fragment in msg and "\n" not in msg


def test_missing_file_and_missing_parquet_column(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        read_texts(tmp_path / "nope.jsonl")
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)  # "data/train" under an existing ./data is a path, not a hub name
    with pytest.raises(UserError, match="data file data/train does not exist"):
        read_texts("data/train")
    pd.DataFrame({"body": ["a"]}).to_parquet(tmp_path / "p.parquet")
    with pytest.raises(UserError, match="no column 'text'.*columns: body"):
        read_texts(tmp_path / "p.parquet")


def test_text_column_option(tmp_path):
    p = write_jsonl(tmp_path / "d.jsonl", ["x y", "z"], column="content")
    assert read_texts(p, text_column="content") == (["x y", "z"], 0)


def test_chunks_are_exact_word_counts_and_concatenate_back(word_tokenizer):
    text = "the cat sees the red boat and likes the old lamp at noon"  # 13 words
    pieces = chunk_texts([text], word_tokenizer, 4)
    assert "".join(pieces) == text
    sizes = [len(word_tokenizer(p, add_special_tokens=False)["input_ids"]) for p in pieces]
    assert sizes == [4, 4, 4, 1]


def test_chunking_then_dedup_counts_repeated_chunks(tmp_path, word_tokenizer):
    p = write_lines(tmp_path / "c.txt", ["the cat sees the red boat", "the cat sees the old lamp"])
    ts = load_texts(p, tokenizer=word_tokenizer, seq_len=3)
    # pieces: "the cat sees ", "the red boat", "the cat sees ", "the old lamp" -> one duplicate
    assert ts.texts == ["the cat sees ", "the red boat", "the old lamp"]
    assert ts.counts.tolist() == [2, 1, 1] and ts.n_duplicates_removed == 1 and ts.seq_len == 3


def test_encode_prepends_bos_and_codes_first_token_uniformly_without_one(word_tokenizer):
    enc = encode_texts(["the cat", "a dog sees"], word_tokenizer)
    assert enc.bos_token_id == 0 and enc.first_token_bits == 0.0
    vocab = word_tokenizer.get_vocab()
    assert enc.tokens[0].tolist() == [0, vocab["the"], vocab["cat"]]
    assert enc.lengths.tolist() == [3, 4]

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel({"[UNK]": 0, "x": 1, "y": 2}, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    nobos = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    enc2 = encode_texts(["x y x"], nobos)
    assert enc2.bos_token_id is None
    assert enc2.tokens[0].tolist() == [1, 2, 1]
    assert enc2.first_token_bits == pytest.approx(math.log2(3))
    assert np.issubdtype(enc2.tokens[0].dtype, np.int64)
