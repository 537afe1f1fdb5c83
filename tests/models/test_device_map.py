"""Scoring a model split over devices by accelerate (device_map) gives the plain load's bits.

On this CPU-only machine the split is CPU memory + disk offload: ``max_memory`` leaves room for
only part of the weights in CPU memory, so accelerate offloads the rest to disk and streams each
offloaded layer in during the forward. The code lengths must equal the single-device ones.
"""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

from helpers_hf import make_sentences, save_lm, tiny_gpt2, wordlevel_tokenizer
from memlens.errors import UserError
from memlens.models.hf import load_causal_lm, save_gpt_checkpoint
from memlens.scoring import score_texts


@pytest.fixture(scope="module")
def four_layer_dir(tmp_path_factory) -> Path:
    tok = wordlevel_tokenizer()
    model = tiny_gpt2(len(tok), n_layer=4, n_embd=32, seed=3)
    return save_lm(model, tok, tmp_path_factory.mktemp("gpt2-4l"))


def _n_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def test_split_over_cpu_and_disk_scores_like_the_plain_load(four_layer_dir, tmp_path):
    texts = make_sentences(12, seed=5)
    plain = load_causal_lm(four_layer_dir, device="cpu", dtype="float32")
    ref = score_texts(plain, texts, batch_size=5)
    budget = _n_bytes(plain.model) // 3  # a third of the weights fit in "CPU memory"
    split = load_causal_lm(
        four_layer_dir,
        dtype="float32",
        device_map="auto",
        max_memory={"cpu": budget},
        offload_folder=tmp_path / "offload",
    )
    placed = set(split.device_map.values())
    assert placed == {"cpu", "disk"}, split.device_map
    assert any(p.device.type == "meta" for p in split.model.parameters())  # really offloaded
    assert split.n_params == plain.n_params and split.vocab_size == plain.vocab_size
    assert split.device.type == "cpu"
    assert split.describe()["device_map"] == split.device_map
    got = score_texts(split, texts, batch_size=5)
    np.testing.assert_allclose(got.bits, ref.bits, rtol=0, atol=1e-4)
    assert got.bits.sum() > 0


def test_device_map_spelling_and_default_offload_folder(four_layer_dir):
    lm = load_causal_lm(four_layer_dir, device="map", dtype="float32")
    assert lm.device_map == {"": "cpu"}  # it all fits in CPU memory: one entry, accelerate style
    assert set(lm.device_map.values()) <= {"cpu", "disk"}
    plain = load_causal_lm(four_layer_dir, device="cpu", dtype="float32")
    texts = make_sentences(4, seed=1)
    np.testing.assert_allclose(
        score_texts(lm, texts).bits, score_texts(plain, texts).bits, rtol=0, atol=1e-4
    )
    # no device map: describe() is unchanged for every other command's output
    assert "device_map" not in plain.describe()
    del lm
    gc.collect()


def test_device_map_bad_input(four_layer_dir, tmp_path):
    with pytest.raises(UserError, match="unknown device map"):
        load_causal_lm(four_layer_dir, device_map="everywhere")
    with pytest.raises(UserError, match="does not exist"):
        load_causal_lm(tmp_path / "missing", device_map="auto")
    from memlens.models.gpt import GPT, GPTConfig

    ckpt = save_gpt_checkpoint(GPT(GPTConfig(16, 8, 1, 16)), tmp_path / "gpt")
    with pytest.raises(UserError, match="fits one device"):
        load_causal_lm(ckpt, device_map="auto")


def test_mia_run_with_device_map_gives_the_plain_scores(four_layer_dir, tmp_path):
    """``device="map"`` (what ``memlens mia --device map`` passes) splits the model in a real
    command and gives the target code lengths of the plain load."""
    from memlens.mia.recipe import MIAConfig, run

    members, nonmembers = make_sentences(6, seed=2), make_sentences(6, seed=9)
    (tmp_path / "m.txt").write_text("\n".join(members) + "\n")
    (tmp_path / "n.txt").write_text("\n".join(nonmembers) + "\n")
    cfg = MIAConfig(
        model=str(four_layer_dir), members=str(tmp_path / "m.txt"),
        nonmembers=str(tmp_path / "n.txt"), attacks=["loss"], n_boot=10, device="map",
        dtype="float32",
    )  # fmt: skip
    result = run(cfg, tmp_path / "mia")
    assert result.summary.model["device_map"] == {"": "cpu"}
    import pandas as pd

    table = pd.read_parquet(tmp_path / "mia" / "scores.parquet")
    plain = load_causal_lm(four_layer_dir, device="cpu", dtype="float32")
    want = score_texts(plain, list(table["text"])).bits
    np.testing.assert_allclose(table["target_bits"], want, rtol=0, atol=1e-4)
