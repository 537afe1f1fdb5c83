"""GGUF checkpoints: a tiny Llama written to GGUF by the test (quantized by the ``gguf`` package)
loads through memlens, its code lengths equal the Hugging Face model's own loss on the
dequantized weights, the float weights are cached, and unreadable files get one sentence."""

from __future__ import annotations

import json
import math

import pytest
import torch

import helpers_gguf as G
import helpers_hf as H
from helpers_cli import cli
from memlens.errors import UserError
from memlens.models import gguf
from memlens.models.gguf import find_gguf
from memlens.models.hf import load_causal_lm
from memlens.scoring import score_texts

pytestmark = pytest.mark.usefixtures("one_thread")

TEXTS = H.make_sentences(40, seed=3)


def _tiny_llama(vocab_size: int, tie: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped-query attention, as SmolLM2 (9 heads, 3 KV heads)
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=tie,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module", name="tiny")
def tiny_fixture(tmp_path_factory):
    """A tiny GQA Llama with tied embeddings (as SmolLM2) written as Q8_0 GGUF, the Hugging Face
    model holding the same dequantized weights, and the original (unquantized) model."""
    root = tmp_path_factory.mktemp("gguf")
    tok = G.byte_bpe_tokenizer(TEXTS)
    model = _tiny_llama(len(tok), tie=True)
    dequantized = G.write_llama_gguf(model, tok, root / "tiny.gguf", "Q8_0")
    ref = _tiny_llama(len(tok), tie=True)
    ref.load_state_dict(dequantized)
    # Quantization changed the weights (so the test below compares against the dequantized ones).
    assert not torch.equal(
        ref.model.layers[0].mlp.up_proj.weight, model.model.layers[0].mlp.up_proj.weight
    )
    return root, tok, ref, model


def _hf_bits(model, tok, text: str) -> tuple[float, int]:
    """The Hugging Face model's own loss on BOS + text, as bits for the whole text."""
    ids = torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"]]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()  # mean nats per predicted token
    n = ids.shape[1] - 1
    return loss * n / math.log(2), n


def test_gguf_bits_equal_hf_loss_of_dequantized_model(tiny, tmp_path, monkeypatch):
    root, tok, ref, original = tiny
    monkeypatch.setenv("MEMLENS_CACHE", str(tmp_path / "cache"))
    lm = load_causal_lm(root / "tiny.gguf", device="cpu")
    d = lm.describe()
    assert d["source"] == "gguf" and d["dtype"] == "float32"
    ck = d["checkpoint"]
    assert ck["quantization"] == "Q8_0" and ck["tensor_types"] == {
        "Q8_0": 15,
        "F32": 5,
    }  # 2 x 7 matrices + embedding; norms
    assert ck["architecture"] == "llama" and ck["dequantized_dtype"] == "float32"
    # The tokenizer comes out of the GGUF file and encodes as the original does.
    for t in TEXTS[:5]:
        assert (
            lm.tokenizer(t, add_special_tokens=False)["input_ids"]
            == tok(t, add_special_tokens=False)["input_ids"]
        )
    # Weights: exactly the dequantized ones.
    for name, p in ref.state_dict().items():
        assert torch.equal(lm.model.state_dict()[name], p), name
    scored = score_texts(lm, TEXTS[:8], batch_size=3)
    for i, text in enumerate(TEXTS[:8]):
        bits, n = _hf_bits(ref, tok, text)
        assert abs(scored.bits[i] - bits) / n < 1e-4
    # The tolerance sees quantization: the unquantized model is off by more than 1e-4 bits per
    # token on some text (measured 9e-4), so scoring the wrong weights fails the check above.
    off = [
        abs(_hf_bits(original, tok, t)[0] - _hf_bits(ref, tok, t)[0]) / _hf_bits(ref, tok, t)[1]
        for t in TEXTS[:8]
    ]
    assert max(off) > 1e-4


def test_gguf_dequantized_weights_are_cached(tiny, tmp_path, monkeypatch, capsys):
    from memlens.cli import show_notes

    root, _, _, _ = tiny
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMLENS_CACHE", str(cache))
    show_notes()  # as the command line does: the first load says it converts (it can take a minute)
    monkeypatch.setattr(gguf, "NOTE_BYTES", 0)  # the note is for real-size files
    first = load_causal_lm(root, device="cpu")  # a directory holding one .gguf works too
    assert capsys.readouterr().err.startswith("note: converting tiny.gguf to float weights")
    cached = sorted((cache / "gguf").iterdir())
    assert len(cached) == 1 and (cached[0] / "model.safetensors").is_file()
    info = json.loads((cached[0] / "memlens_gguf.json").read_text())
    assert cached[0].name == info["sha256"][:16]
    # The second load reads the cache: it works even when transformers' GGUF reader cannot.
    import transformers.modeling_gguf_pytorch_utils as gg

    monkeypatch.setattr(gg, "load_gguf_checkpoint", lambda *a, **k: 1 / 0)
    second = load_causal_lm(root / "tiny.gguf", device="cpu")
    assert "converting" not in capsys.readouterr().err  # the cache: no note
    assert second.describe()["checkpoint"]["sha256"] == first.describe()["checkpoint"]["sha256"]
    assert torch.equal(second.model.lm_head.weight, first.model.lm_head.weight)
    monkeypatch.undo()
    monkeypatch.setenv("MEMLENS_CACHE", str(cache))
    # A damaged cached copy (a truncated safetensors file) is converted again, not reported as
    # a damaged checkpoint of the user's (whose GGUF file is fine).
    # (A new file in its place: the loaded models' weights are mapped from the old one.)
    weights = cached[0] / "model.safetensors"
    (cached[0] / "damaged").write_bytes(weights.read_bytes()[:1000])
    (cached[0] / "damaged").replace(weights)
    third = load_causal_lm(root / "tiny.gguf", device="cpu")
    assert torch.equal(third.model.lm_head.weight, first.model.lm_head.weight)
    # A copy an older conversion made (no conversion_version; version 1 could cache random
    # weights for missing tensors) is converted again: its weights here are zeroed to show it.
    from safetensors.torch import load_file, save_file

    info = json.loads((cached[0] / "memlens_gguf.json").read_text())
    assert info["conversion_version"] == 2
    del info["conversion_version"]
    (cached[0] / "memlens_gguf.json").write_text(json.dumps(info))
    zeroed = {k: torch.zeros_like(v) for k, v in load_file(weights).items()}
    save_file(zeroed, cached[0] / "zeroed", metadata={"format": "pt"})
    (cached[0] / "zeroed").replace(weights)
    fourth = load_causal_lm(root / "tiny.gguf", device="cpu")
    assert torch.equal(fourth.model.lm_head.weight, first.model.lm_head.weight)


def test_find_gguf(tmp_path):
    assert find_gguf(tmp_path) is None
    (tmp_path / "a.gguf").write_bytes(b"x")
    assert find_gguf(tmp_path) == tmp_path / "a.gguf"
    (tmp_path / "b.gguf").write_bytes(b"x")
    with pytest.raises(UserError, match="holds 2 GGUF files"):
        find_gguf(tmp_path)
    (tmp_path / "b.gguf").unlink()
    # A GGUF download that comes with its config.json (and no other weights) is a GGUF one
    # ("no file named model.safetensors" before).
    (tmp_path / "config.json").write_text("{}")
    assert find_gguf(tmp_path) == tmp_path / "a.gguf"
    (tmp_path / "model.safetensors").write_bytes(b"x")  # a Hugging Face directory is not
    assert find_gguf(tmp_path) is None


@pytest.fixture(name="bad_checkpoints")
def bad_checkpoints_fixture(tiny, tmp_path):
    """A GGUF of an architecture transformers does not know, a file that is not GGUF (bytes, or
    none), a GGUF lacking a tensor, a truncated safetensors checkpoint and a directory with only a
    pickled pytorch_model.bin."""
    import pathlib
    import shutil
    import types

    root, tok, ref, _ = tiny
    G.write_llama_gguf(ref, tok, tmp_path / "odd.gguf", "F32", architecture="memlens-toy")
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all")
    (tmp_path / "empty.gguf").write_bytes(b"")
    # A GGUF file without one of its blocks' tensors: transformers would fill it at random.
    state = {
        k: v for k, v in ref.state_dict().items() if k != "model.layers.1.mlp.down_proj.weight"
    }
    partial = types.SimpleNamespace(config=ref.config, state_dict=lambda: state)
    G.write_llama_gguf(partial, tok, tmp_path / "partial.gguf", "Q8_0")
    good = H.save_lm(ref, tok, tmp_path / "good")
    trunc = tmp_path / "truncated"
    shutil.copytree(good, trunc)
    data = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    pickled = tmp_path / "pickled"
    shutil.copytree(good, pickled)
    (pickled / "model.safetensors").unlink()
    state = dict(ref.state_dict())
    state["note"] = pathlib.PurePosixPath("objects beyond tensors need unpickling")
    torch.save(state, pickled / "pytorch_model.bin")
    cut = tmp_path / "truncated-bin"  # a tensors-only .bin cut short (torch raises RuntimeError)
    shutil.copytree(good, cut)
    (cut / "model.safetensors").unlink()
    torch.save(dict(ref.state_dict()), cut / "pytorch_model.bin")
    data = (cut / "pytorch_model.bin").read_bytes()
    (cut / "pytorch_model.bin").write_bytes(data[: len(data) - 3000])
    H.write_lines(tmp_path / "a.txt", TEXTS[:4])
    H.write_lines(tmp_path / "b.txt", TEXTS[4:8])
    return tmp_path, good


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            "odd.gguf",
            "transformers cannot load the GGUF file odd.gguf (architecture 'memlens-toy')",
        ),
        ("junk.gguf", "is not a readable GGUF file"),
        ("empty.gguf", "is not a readable GGUF file"),
        (
            "partial.gguf",
            "the GGUF file partial.gguf lacks 1 of the tensors its 'llama' architecture needs "
            "(e.g. model.layers.1.mlp.down_proj.weight), which would be left random",
        ),
        ("truncated", "damaged or incomplete"),
        ("pickled", "holds a pickled PyTorch checkpoint with objects other than tensors"),
        ("truncated-bin", "the PyTorch weights (.bin) in"),
    ],
)
@pytest.mark.parametrize("command", ["audit", "mia"])
def test_bad_checkpoints_one_sentence_exit_2(
    bad_checkpoints, capsys, monkeypatch, model, message, command
):
    where, good = bad_checkpoints
    a, b = where / "a.txt", where / "b.txt"
    monkeypatch.setenv("MEMLENS_CACHE", str(where / "cache"))
    if command == "audit":
        args = ["audit", "--model", where / model, "--reference", good]
        args += ["--train", a, "--heldout", b, "--out", where / "run"]
    else:
        args = ["mia", "--model", where / model, "--members", a, "--nonmembers", b]
        args += ["--out", where / "run"]
    code, _, err = cli([*args, "--device", "cpu"], capsys, monkeypatch)
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (where / "run").exists()  # nothing half-written
    assert not (where / "cache" / "gguf").exists() or not any((where / "cache" / "gguf").iterdir())


def test_mia_manifest_describes_the_gguf_model_and_a_bad_reference_leaves_nothing(
    tiny, bad_checkpoints, capsys, monkeypatch
):
    where, good = bad_checkpoints
    a, b = where / "a.txt", where / "b.txt"
    monkeypatch.setenv("MEMLENS_CACHE", str(where / "cache"))
    base = ["mia", "--members", a, "--nonmembers", b, "--attacks", "loss,ref", "--n-boot", "20"]
    base += ["--device", "cpu", "--model", good]
    # The reference fails to load after the target did: no empty run directory is left.
    args = [*base, "--reference", where / "junk.gguf", "--out", where / "run"]
    code, _, err = cli(args, capsys, monkeypatch)
    assert code == 2 and "is not a readable GGUF file" in err and err.count("\n") == 1
    assert not (where / "run").exists()
    # manifest.json describes the models as the audit's does: dtype, source, GGUF quantization.
    args = [*base, "--reference", tiny[0] / "tiny.gguf", "--out", where / "ok"]
    code, _, err = cli(args, capsys, monkeypatch)
    assert code in (0, None), err
    manifest = json.loads((where / "ok" / "manifest.json").read_text())
    assert manifest["model"]["dtype"] == "float32" and manifest["model"]["source"] == "huggingface"
    (ref,) = manifest["references"]
    assert ref["source"] == "gguf" and ref["checkpoint"]["quantization"] == "Q8_0"


def test_unwritable_cache_one_sentence(tiny, tmp_path, monkeypatch):
    root, _, _, _ = tiny
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache should be")
    monkeypatch.setenv("MEMLENS_CACHE", str(blocker / "cache"))
    with pytest.raises(
        UserError, match=r"cannot write to the memlens cache at .*; set MEMLENS_CACHE"
    ):
        load_causal_lm(root / "tiny.gguf", device="cpu")


def test_gguf_without_tokenizer_asks_for_one(tiny, tmp_path, monkeypatch):
    import gguf

    root, tok, ref, _ = tiny
    monkeypatch.setenv("MEMLENS_CACHE", str(tmp_path / "cache"))
    for name in ("tokenizer_model", "tokenizer_pre", "token_list", "token_types", "token_merges"):
        monkeypatch.setattr(gguf.GGUFWriter, f"add_{name}", lambda self, *a, **k: None)
    G.write_llama_gguf(ref, tok, tmp_path / "bare.gguf", "Q8_0")
    monkeypatch.undo()
    monkeypatch.setenv("MEMLENS_CACHE", str(tmp_path / "cache"))
    # Said about the user's file, not about memlens's cache directory.
    with pytest.raises(
        UserError, match=r"the GGUF file bare.gguf holds no tokenizer; pass `tokenizer`"
    ):
        load_causal_lm(tmp_path / "bare.gguf", device="cpu")
    lm = load_causal_lm(tmp_path / "bare.gguf", device="cpu", tokenizer=tok)
    assert lm.describe()["checkpoint"]["tokenizer_from_gguf"] is False


@pytest.mark.parametrize(
    "damage",
    [
        "config.json missing",
        "config.json garbled",
        "tokenizer.json missing",
        "tokenizer.json cut short",
        "a file in its place",
    ],
)
def test_damaged_cache_entry_is_converted_again(tiny, tmp_path, monkeypatch, damage):
    """Any damaged file of a cached conversion, not only its weights, makes memlens convert the
    GGUF file again; before, a missing config.json or tokenizer.json was reported as a problem of
    the cache directory (with advice to pass a tokenizer) and a file in the entry's place was a
    NotADirectoryError traceback."""
    root, tok, _, _ = tiny
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMLENS_CACHE", str(cache))
    first = load_causal_lm(root / "tiny.gguf", device="cpu")
    (entry,) = (cache / "gguf").iterdir()
    info = json.loads((entry / "memlens_gguf.json").read_text())
    assert info["files"]["model.safetensors"] == (entry / "model.safetensors").stat().st_size
    name = damage.split()[0] if damage.split()[0].endswith(".json") else "model.safetensors"
    if damage.endswith("missing"):
        (entry / name).unlink()
    elif damage.endswith("garbled"):
        (entry / name).write_text("{not json")
    elif damage.endswith("cut short"):
        data = (entry / name).read_bytes()
        (entry / name).write_bytes(data[: len(data) // 2])
    else:
        import shutil

        shutil.rmtree(entry)
        entry.write_text("not a directory")
    again = load_causal_lm(root / "tiny.gguf", device="cpu")
    assert entry.is_dir() and (entry / name).is_file()
    assert torch.equal(again.model.lm_head.weight, first.model.lm_head.weight)
    text = TEXTS[0]
    assert again.tokenizer(text)["input_ids"] == first.tokenizer(text)["input_ids"]


def test_a_copy_another_process_published_meanwhile_is_kept(tiny, tmp_path, monkeypatch):
    """Two commands that convert the same GGUF file at once: the one finishing second keeps the
    first one's cached copy instead of deleting it (while the other may be reading it) and
    putting its own in its place."""
    import shutil

    root, _, _, _ = tiny
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMLENS_CACHE", str(cache))
    real = gguf.dequantize_gguf
    published = {}

    def racing(path, out, *, sha256=None):
        info = real(path, out, sha256=sha256)
        final = cache / "gguf" / sha256[:16]  # the other process finishes first
        shutil.copytree(out, final)
        published["inode"] = (final / "model.safetensors").stat().st_ino
        return info

    monkeypatch.setattr(gguf, "dequantize_gguf", racing)
    lm = load_causal_lm(root / "tiny.gguf", device="cpu")
    (entry,) = (cache / "gguf").iterdir()  # no temporary directory left either
    assert (entry / "model.safetensors").stat().st_ino == published["inode"]
    assert lm.checkpoint["cached_as"] == str(entry)


def test_gguf_with_a_tokenizer_transformers_cannot_read_says_which(tiny, tmp_path, monkeypatch):
    """A GGUF file whose tokenizer is of a kind transformers cannot build (here 'rwkv') is not
    said to hold no tokenizer: the sentence names the kind and transformers' reason."""
    import gguf

    root, tok, ref, _ = tiny
    monkeypatch.setenv("MEMLENS_CACHE", str(tmp_path / "cache"))
    real = gguf.GGUFWriter.add_tokenizer_model
    monkeypatch.setattr(gguf.GGUFWriter, "add_tokenizer_model", lambda w, _: real(w, "rwkv"))
    G.write_llama_gguf(ref, tok, tmp_path / "rwkv.gguf", "Q8_0")
    monkeypatch.setattr(gguf.GGUFWriter, "add_tokenizer_model", real)
    with pytest.raises(
        UserError,
        match=r"the GGUF file rwkv.gguf holds a 'rwkv' tokenizer that transformers cannot read "
        r"\(.*'rwkv'.*\); pass `tokenizer`",
    ):
        load_causal_lm(tmp_path / "rwkv.gguf", device="cpu")
    lm = load_causal_lm(tmp_path / "rwkv.gguf", device="cpu", tokenizer=tok)
    assert lm.describe()["checkpoint"]["tokenizer_model"] == "rwkv"


def test_conversions_a_killed_process_left_are_removed(tiny, tmp_path, monkeypatch):
    """A conversion killed without cleanup (a closed terminal) leaves its temporary directory,
    up to the whole float model, in the cache; the next conversion of that file removes the ones
    older than a day and keeps a recent one (another process may be converting)."""
    import os
    import time

    root, _, _, _ = tiny
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMLENS_CACHE", str(cache))
    from memlens.data.cache import sha256_file

    name = sha256_file(root / "tiny.gguf")[:16]
    stale, recent = cache / "gguf" / f".{name}.old", cache / "gguf" / f".{name}.new"
    for d in (stale, recent):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"x" * 100)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(stale, (two_days_ago, two_days_ago))
    load_causal_lm(root / "tiny.gguf", device="cpu")
    assert not stale.exists() and recent.is_dir()
    assert sorted(p.name for p in (cache / "gguf").iterdir()) == sorted([name, recent.name])
