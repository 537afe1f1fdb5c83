"""memlens.models.hf: loading, bits per text, ragged batching, sliding window, GPT checkpoints."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from helpers_hf import (
    bpe_tokenizer,
    make_sentences,
    save_lm,
    tiny_gpt2,
    tiny_llama,
    uniform_gpt2,
)
from memlens.errors import UserError
from memlens.models.hf import load_causal_lm, load_tokenizer, save_gpt_checkpoint
from memlens.scoring import score_sequences, score_texts, windowed_forward

TEXTS = make_sentences(7, seed=3) + ["the cat", "a dog sees the red boat"]

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gpt2_parameter_count_is_the_papers_formula(tiny_gpt2_dir):
    # Morris et al. 2025: params = V*d + S*d + L*(12 d^2 + 13 d) + 2d (tied embeddings, n_positions = S)
    lm = load_causal_lm(tiny_gpt2_dir, device="cpu")
    V, S, L, d = lm.vocab_size, 64, 1, 32
    assert lm.n_params == V * d + S * d + L * (12 * d * d + 13 * d) + 2 * d
    assert lm.context_length == 64 and lm.bos_token_id == 0 and lm.source == "huggingface"


def test_uniform_model_costs_log2V_per_token_under_two_tokenizers(tmp_path, word_tokenizer):
    # Known answer: zero weights -> uniform predictions -> every predicted token costs log2 V bits;
    # the BOS is free, so a text of n tokens costs exactly n * log2 V.
    bpe = bpe_tokenizer(TEXTS, vocab_size=60)
    for name, tok in [("word", word_tokenizer), ("bpe", bpe)]:
        lm = load_causal_lm(save_lm(uniform_gpt2(len(tok)), tok, tmp_path / name), device="cpu")
        res = score_texts(lm, TEXTS, batch_size=4)
        n = np.array([len(tok(t, add_special_tokens=False)["input_ids"]) for t in TEXTS])
        np.testing.assert_allclose(res.bits, n * math.log2(len(tok)), rtol=1e-6)
        assert res.n_text_tokens.tolist() == n.tolist()
    # the two tokenizers cut the texts differently (so the closed forms differ)
    assert len(bpe(TEXTS[0])["input_ids"]) != len(word_tokenizer(TEXTS[0])["input_ids"])


def test_no_bos_tokenizer_codes_first_token_at_log2V(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "x": 1, "y": 2, "z": 3}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    lm = load_causal_lm(save_lm(uniform_gpt2(4), tok, tmp_path / "m"), device="cpu")
    res = score_texts(lm, ["x y z x", "y"])
    assert res.bos_token_id is None and res.first_token_bits == 2.0
    np.testing.assert_allclose(res.bits, [4 * 2.0, 1 * 2.0])


@pytest.mark.parametrize("which", ["tiny_gpt2_dir", "tiny_llama_dir"])
def test_ragged_sorted_batches_match_one_text_at_a_time(which, request):
    lm = load_causal_lm(request.getfixturevalue(which), device="cpu")
    res = score_texts(lm, TEXTS, batch_size=3)
    for i, text in enumerate(TEXTS):  # independent baseline: plain HF forward, one text, no padding
        ids = torch.tensor([[0] + lm.tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logp = torch.log_softmax(lm.model(input_ids=ids).logits.float(), -1)[0, :-1]
        want = logp.gather(-1, ids[0, 1:, None]).squeeze(-1).double() / math.log(2)
        n = len(want)
        np.testing.assert_allclose(res.scores.log2p[i, :n], want.numpy(), atol=1e-5)
        assert res.scores.mask[i, :n].all() and not res.scores.mask[i, n:].any()
        assert res.bits[i] == pytest.approx(-want.sum().item(), abs=1e-4)


def test_sliding_window_uses_the_hand_computed_windows(tmp_path, word_tokenizer):
    # Context 6, stride 2, T = 10: windows [0,6), [2,8), [4,10); positions 0-5 come from the
    # first, 6-7 from the second, 8-9 from the third.
    model = tiny_llama(len(word_tokenizer), max_positions=6, seed=5)
    lm = load_causal_lm(save_lm(model, word_tokenizer, tmp_path / "llama6"), device="cpu")
    assert lm.context_length == 6
    ids = torch.tensor([[0, 5, 9, 3, 17, 8, 22, 4, 30, 11]])
    with torch.no_grad():
        got = windowed_forward(lm.forward(), 6, 2)(ids)
        full = lambda a, b: lm.model(input_ids=ids[:, a:b]).logits  # noqa: E731
        want = torch.cat([full(0, 6), full(2, 8)[:, 4:], full(4, 10)[:, 4:]], dim=1)
    torch.testing.assert_close(got, want)
    with pytest.raises(UserError, match="`window_stride`"):
        score_sequences(lm, [ids[0].numpy()])
    sc = score_sequences(lm, [ids[0].numpy()], window_stride=2)
    logp = torch.log_softmax(want[0, :-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1) / math.log(
        2
    )
    np.testing.assert_allclose(sc.log2p[0], logp.numpy(), atol=1e-5)


def test_sliding_window_is_exact_for_a_bigram_model(tmp_path, word_tokenizer):
    # A GPT-2 with its attention output and position embeddings zeroed predicts from the current
    # token only (a bigram model): any window must give the sum of pairwise bigram costs.
    model = tiny_gpt2(len(word_tokenizer), n_positions=8, seed=2)
    with torch.no_grad():
        model.transformer.wpe.weight.zero_()
        for block in model.transformer.h:
            block.attn.c_proj.weight.zero_()
            block.attn.c_proj.bias.zero_()
    lm = load_causal_lm(save_lm(model, word_tokenizer, tmp_path / "bigram"), device="cpu")
    text = " ".join(TEXTS[:3])  # about 45 tokens, far beyond the context of 8
    res = score_texts(lm, [text], window_stride=3)
    ids = res.tokens[0]
    pairs = torch.tensor(np.stack([ids[:-1], ids[1:]], axis=1))
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(input_ids=pairs).logits[:, 0], -1)
    bigram = -(logp.gather(-1, pairs[:, 1:]).sum() / math.log(2)).item()
    assert len(ids) > 40
    assert res.bits[0] == pytest.approx(bigram, abs=1e-3)


def test_memlens_gpt_checkpoint_loads_as_the_same_model(tmp_path, word_tokenizer):
    from memlens.models.gpt import GPT, GPTConfig

    g = torch.Generator().manual_seed(0)
    gpt = GPT(GPTConfig(len(word_tokenizer), 16, 1, 32), n_models=2, generator=g).eval()
    path = save_gpt_checkpoint(gpt, tmp_path / "ckpt", index=1, tokenizer=word_tokenizer)
    lm = load_causal_lm(path, device="cpu")
    assert lm.source == "memlens-gpt" and lm.context_length == 16
    assert lm.n_params == gpt.config.n_params
    ids = torch.randint(0, len(word_tokenizer), (3, 16), generator=g)
    with torch.no_grad():
        want = gpt(ids.expand(2, 3, 16))[1]
        got = lm.model(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_bfloat16_loading(tiny_gpt2_dir):
    lm = load_causal_lm(tiny_gpt2_dir, dtype="bfloat16", device="cpu")
    assert lm.dtype == torch.bfloat16 and lm.describe()["dtype"] == "bfloat16"
    # the same bits as float32 to within bfloat16's precision (8 bits of mantissa, 0.4%; measured 1e-4)
    fp32 = load_causal_lm(tiny_gpt2_dir, dtype="float32", device="cpu")
    np.testing.assert_allclose(
        score_texts(lm, TEXTS[:2]).bits, score_texts(fp32, TEXTS[:2]).bits, rtol=4e-3
    )


def test_missing_checkpoint_file_is_not_a_hub_name(tmp_path, monkeypatch):
    """A relative file name that does not exist (``model.gguf``) is a missing file, not a hub
    repository that could not be reached."""
    monkeypatch.chdir(tmp_path)
    for name in ("model-finetuned.gguf", "weights.safetensors"):
        with pytest.raises(UserError, match=rf"^model file {name} does not exist\.$"):
            load_causal_lm(name)


def test_bad_model_inputs(tmp_path, tiny_gpt2_dir, word_tokenizer):
    with pytest.raises(UserError, match="does not exist"):
        load_causal_lm(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither config.json"):
        load_causal_lm(tmp_path / "empty")
    small = save_lm(
        tiny_gpt2(10), word_tokenizer, tmp_path / "small"
    )  # 53-token tokenizer, 10 rows
    with pytest.raises(UserError, match="53 tokens but model .* 10 embedding rows"):
        load_causal_lm(small, device="cpu")
    with pytest.raises(UserError, match="unknown dtype"):
        load_causal_lm(tiny_gpt2_dir, dtype="int3")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device"):
            load_causal_lm(tiny_gpt2_dir, device="cuda")
    with pytest.raises(UserError, match="no usable tokenizer"):
        load_tokenizer(tmp_path / "empty")
    assert len(load_tokenizer(tiny_gpt2_dir)) == len(word_tokenizer)
    with pytest.raises(UserError, match="stride must be between 1 and"):
        windowed_forward(lambda ids, attention_mask=None: ids, 8, 8)


def test_a_model_directory_without_its_tokenizer_files_is_refused(tmp_path, tiny_gpt2_dir):
    # transformers would build the config's GPT2Tokenizer with special tokens only, which turns
    # every text into no tokens ("text 0 tokenizes to no tokens" was the only hint)
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(tiny_gpt2_dir, bare, ignore=shutil.ignore_patterns("tokenizer*"))
    with pytest.raises(UserError, match="no tokenizer at .*vocabulary files are missing"):
        load_causal_lm(bare, device="cpu")
    with pytest.raises(UserError, match="vocabulary files are missing"):
        load_tokenizer(bare)
    assert load_causal_lm(bare, tokenizer=tiny_gpt2_dir, device="cpu").tokenizer is not None


def test_unreachable_hub_fails_fast_and_restores_online_mode(monkeypatch):
    # With the hub unreachable, a hub name fails in one sentence at once (cache only), instead
    # of retrying for 25-50 s; the offline switch is put back afterwards.
    import time

    from huggingface_hub import constants

    from memlens import hub
    from memlens.models import hf as hfmod

    for var in hub._PROXY_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    hub.hub_reachable.cache_clear()
    assert not hub.hub_reachable("http://127.0.0.1:9")
    t0 = time.perf_counter()
    with pytest.raises(UserError, match="could not be loaded from the Hugging Face hub"):
        hfmod.load_causal_lm("memlens-test/no-such-model")
    assert time.perf_counter() - t0 < 10
    assert constants.HF_HUB_OFFLINE is False
    # the load itself ran in offline (cache-only) mode
    import transformers

    seen = []

    def spy(*args, **kwargs):
        seen.append(constants.HF_HUB_OFFLINE)
        raise OSError("not cached")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", spy)
    with pytest.raises(UserError):
        hfmod.load_causal_lm("memlens-test/no-such-model")
    assert seen == [True] and constants.HF_HUB_OFFLINE is False
    hub.hub_reachable.cache_clear()
