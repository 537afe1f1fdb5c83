"""PEFT/LoRA adapters: trained by the test on a tiny Llama in about a second, merged at load
(scores equal the unmerged PEFT model's), recorded in manifests, the bare base as the default
reference of audit and mia, and an adapter over another base refused with one sentence."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import helpers_hf as H
from helpers_cli import cli
from memlens.errors import UserError
from memlens.models.finetune import LoraSettings, finetune_lora
from memlens.models.hf import load_causal_lm
from memlens.scoring import score_texts

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = H.make_sentences(24, seed=11)
TRAIN, HELDOUT = TRAIN[:12], TRAIN[12:]


@pytest.fixture(scope="module", name="adapted")
def adapted_fixture(tmp_path_factory):
    """A tiny Llama base (trained 60 steps on other sentences of the language) and a LoRA adapter
    fine-tuned on ``TRAIN`` (30 full-batch steps)."""
    root = tmp_path_factory.mktemp("adapter")
    tok = H.wordlevel_tokenizer()
    with H.single_thread():
        pretrained = H.train_lm(
            H.tiny_llama(len(tok)), tok, H.make_sentences(60, seed=99), 60, 1e-2
        )
        base = H.save_lm(pretrained, tok, root / "base")
        lm = load_causal_lm(base, device="cpu")
        settings = LoraSettings(r=8, alpha=16, epochs=30, lr=3e-2, batch_size=12, warmup_steps=0)
        finetune_lora(lm, TRAIN, root / "lora", settings)
    H.write_lines(root / "train.txt", TRAIN)
    H.write_lines(root / "heldout.txt", HELDOUT)
    return root


def test_merged_adapter_scores_equal_the_peft_model(adapted):
    from peft import PeftModel

    from memlens.models.loading import quiet_transformers

    root = adapted
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lm = load_causal_lm(root / "base", device="cpu", adapter=root / "lora")
    # transformers' deprecation notices (e.g. `is_gradient_checkpointing`, raised inside peft's
    # from_pretrained) do not reach a user who loads an adapter through memlens.
    assert [str(w.message) for w in caught] == []
    merged = score_texts(lm, TRAIN + HELDOUT).bits
    # The same adapter applied by peft without merging: the same code lengths (float rounding).
    plain = load_causal_lm(root / "base", device="cpu")
    with quiet_transformers():  # peft called directly, as memlens does it
        plain.model = PeftModel.from_pretrained(plain.model, str(root / "lora")).eval()
    unmerged = score_texts(plain, TRAIN + HELDOUT).bits
    n = np.array([len(t.split()) for t in TRAIN + HELDOUT])
    assert np.max(np.abs(merged - unmerged) / n) < 1e-4
    # Fine-tuning lowered the code length of its training texts more than that of held-out ones.
    base = score_texts(load_causal_lm(root / "base", device="cpu"), TRAIN + HELDOUT).bits
    gain = base - merged
    assert gain[:12].mean() > gain[12:].mean() + 20.0
    a = lm.describe()["adapter"]
    assert a["merged"] and a["base_fingerprint_checked"] and a["peft_type"] == "LORA"
    assert a["r"] == 8 and a["lora_alpha"] == 16 and "q_proj" in a["target_modules"]
    assert "lm_head" not in a["target_modules"]


def test_adapter_over_another_base_is_refused(adapted, tmp_path):
    root = adapted
    tok = H.wordlevel_tokenizer()
    # Same shapes, other weights: caught by the base fingerprint memlens recorded.
    other = H.save_lm(H.tiny_llama(len(tok), seed=1), tok, tmp_path / "other")
    with pytest.raises(UserError, match="trained on a different base"):
        load_causal_lm(other, device="cpu", adapter=root / "lora")
    # Another width: caught by the shapes of the LoRA factors (no fingerprint needed).
    (root / "lora" / "memlens_adapter.json").rename(tmp_path / "record.json")
    try:
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(
            vocab_size=len(tok),
            hidden_size=48,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=64,
        )
        wide = H.save_lm(LlamaForCausalLM(cfg), tok, tmp_path / "wide")
        with pytest.raises(UserError, match="trained for a different base: its factors for"):
            load_causal_lm(wide, device="cpu", adapter=root / "lora")
    finally:
        (tmp_path / "record.json").rename(root / "lora" / "memlens_adapter.json")
    with pytest.raises(UserError, match="holds no adapter_config.json"):
        load_causal_lm(root / "base", device="cpu", adapter=root / "base")


def test_adapter_path_mistakes_one_sentence(adapted, tmp_path):
    import shutil

    root = adapted
    # A file (e.g. a llama.cpp LoRA .gguf) is not called a missing directory.
    (tmp_path / "lora.gguf").write_bytes(b"GGUF")
    with pytest.raises(UserError, match=r"is a file \(a llama.cpp GGUF adapter, which memlens"):
        load_causal_lm(root / "base", device="cpu", adapter=tmp_path / "lora.gguf")
    with pytest.raises(UserError, match="is a file; pass a PEFT adapter directory"):
        load_causal_lm(root / "base", device="cpu", adapter=root / "train.txt")
    # A config that names no adapter type is said so, not as peft's KeyError('peft_type').
    bare = tmp_path / "bare"
    shutil.copytree(root / "lora", bare)
    (bare / "adapter_config.json").write_text("{}")
    with pytest.raises(
        UserError, match="is not a readable PEFT adapter config .it names no peft_type"
    ):
        load_causal_lm(root / "base", device="cpu", adapter=bare)


def test_audit_and_mia_with_adapter_default_to_the_bare_base(
    adapted, tmp_path, capsys, monkeypatch
):
    root = adapted
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "audit"
    args = ["audit", "--model", root / "base", "--adapter", root / "lora"]
    args += ["--train", root / "train.txt", "--heldout", root / "heldout.txt", "--out", out]
    code, stdout, err = cli(
        [*args, "--prefix", "4", "--suffix", "4", "--device", "cpu"], capsys, monkeypatch
    )
    assert code in (0, None), err
    assert "(merged)" in stdout and err == ""
    summary = json.loads((out / "audit.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        summary["reference"]["name"] == str(root / "base") and "adapter" not in summary["reference"]
    )
    assert summary["target"]["adapter"]["path"] == str(root / "lora")
    assert (
        manifest["config"]["adapter"] == str(root / "lora")
        and manifest["config"]["reference"] is None
    )
    # Reference code lengths are the bare base's own.
    base = score_texts(load_causal_lm(root / "base", device="cpu"), TRAIN)
    import pandas as pd

    df = pd.read_parquet(out / "samples.parquet")
    got = df[df.split == "train"].sort_values("sample")["reference_bits"].to_numpy()
    assert np.allclose(got, base.bits, atol=1e-6)
    assert summary["train"]["mean_unintended_bits"] > summary["heldout"]["mean_unintended_bits"]

    mia = tmp_path / "mia"
    args = ["mia", "--model", root / "base", "--adapter", root / "lora", "--attacks", "loss,ref"]
    args += ["--members", root / "train.txt", "--nonmembers", root / "heldout.txt", "--out", mia]
    code, stdout, err = cli([*args, "--n-boot", "50", "--device", "cpu"], capsys, monkeypatch)
    assert code in (0, None), err
    result = json.loads((mia / "mia.json").read_text())
    assert [r["name"] for r in result["references"]] == [str(root / "base")]
    assert result["model"]["adapter"]["merged"] is True
    assert result["attacks"]["ref"]["auc"] > 0.9
    # Report headlines name the adapter: the fine-tune against its bare base does not read as
    # "target base, reference base" (a model against itself).
    from memlens.audit.summary import AuditSummary
    from memlens.mia.summary import MIASummary

    tuned = f"{root / 'base'} + adapter {root / 'lora'}"
    audit_headline = dict(AuditSummary.model_validate(summary).headline())
    assert audit_headline["target"] == tuned and audit_headline["reference"] == str(root / "base")
    assert dict(MIASummary.model_validate(result).headline())["target model"] == tuned


def test_adapter_over_another_base_cli_one_sentence(adapted, tmp_path, capsys, monkeypatch):
    root = adapted
    tok = H.wordlevel_tokenizer()
    other = H.save_lm(H.tiny_llama(len(tok), seed=2), tok, tmp_path / "other")
    args = ["audit", "--model", other, "--adapter", root / "lora", "--train", root / "train.txt"]
    args += ["--heldout", root / "heldout.txt", "--out", tmp_path / "run", "--device", "cpu"]
    code, _, err = cli(args, capsys, monkeypatch)
    assert code == 2 and "trained on a different base" in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()
    # Without an adapter the reference is required.
    args = ["audit", "--model", other, "--train", root / "train.txt"]
    args += ["--heldout", root / "heldout.txt", "--out", tmp_path / "run"]
    code, _, err = cli(args, capsys, monkeypatch)
    assert code == 2 and "needs a --reference model" in err


def test_finetune_lora_leaves_the_base_unchanged(adapted):
    root = adapted
    lm = load_causal_lm(root / "base", device="cpu")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    finetune_lora(lm, TRAIN[:2], root / "lora2", LoraSettings(r=2, alpha=4, epochs=1, batch_size=2))
    after = lm.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def _damaged_adapters(root, where):
    """Adapter directories a user can hand over by mistake, each with the sentence it gets."""
    import pathlib
    import shutil

    def copy(name, keep_record=False):
        d = where / name
        shutil.copytree(root / "lora", d)
        if not keep_record:
            (d / "memlens_adapter.json").unlink()
        return d

    truncated = copy("truncated")
    data = (truncated / "adapter_model.safetensors").read_bytes()
    (truncated / "adapter_model.safetensors").write_bytes(data[: len(data) - 64])
    pickled = copy("pickled")
    (pickled / "adapter_model.safetensors").unlink()
    torch.save({"note": pathlib.PurePosixPath("not a tensor")}, pickled / "adapter_model.bin")
    weightless = copy("weightless")
    (weightless / "adapter_model.safetensors").unlink()
    garbled = copy("garbled-record", keep_record=True)  # the base fingerprint record, damaged
    (garbled / "memlens_adapter.json").write_text("{not json")
    listed = copy("listed-record", keep_record=True)
    (listed / "memlens_adapter.json").write_text("[1, 2]")
    # A prompt-tuning adapter learns virtual tokens, no weights to merge (peft has no
    # merge_and_unload for it: an AttributeError traceback before).
    from peft import PromptTuningConfig, get_peft_model

    base = load_causal_lm(root / "base", device="cpu").model
    prompt = where / "prompt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft_model = get_peft_model(
            base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)
        )
        peft_model.save_pretrained(prompt)
    return {
        "truncated": (truncated, "adapter weights .* are damaged or incomplete"),
        "pickled": (pickled, "holds objects other than tensors, which memlens does not unpickle"),
        "weightless": (weightless, "has no adapter_model.safetensors or adapter_model.bin"),
        "missing": (where / "nowhere", "adapter directory .* does not exist"),
        "garbled record": (garbled, "memlens_adapter.json .the base fingerprint memlens recorded"),
        "listed record": (listed, "is not readable .it holds no JSON object."),
        "prompt tuning": (
            prompt,
            "is a PROMPT_TUNING adapter .learned prompt tokens., which cannot be merged",
        ),
    }


def test_damaged_adapters_one_sentence(adapted, tmp_path):
    root = adapted
    for path, message in _damaged_adapters(root, tmp_path).values():
        with pytest.raises(UserError, match=message):
            load_causal_lm(root / "base", device="cpu", adapter=path)


def test_adapter_over_a_memlens_gpt_cli_one_sentence(adapted, tmp_path, capsys, monkeypatch):
    """A LoRA adapter of a Llama over a memlens GPT checkpoint: refused by its fingerprint, and
    without the fingerprint record by the modules it adapts, in one sentence with exit code 2."""
    import shutil

    from memlens.models.gpt import GPT, GPTConfig
    from memlens.models.hf import save_gpt_checkpoint

    root = adapted
    tok = H.wordlevel_tokenizer()
    gpt = GPT(GPTConfig(vocab_size=len(tok), seq_len=32, n_layer=1, d_model=16, n_head=2))
    save_gpt_checkpoint(gpt, tmp_path / "gpt", tokenizer=tok)
    foreign = tmp_path / "foreign"
    shutil.copytree(root / "lora", foreign)
    (foreign / "memlens_adapter.json").unlink()
    for adapter, message in (
        (root / "lora", "was trained on a different base than model"),
        (foreign, "adapts a module 'model.layers.0."),
    ):
        args = ["mia", "--model", tmp_path / "gpt", "--adapter", adapter, "--device", "cpu"]
        args += ["--members", root / "train.txt", "--nonmembers", root / "heldout.txt"]
        code, _, err = cli([*args, "--out", tmp_path / "run"], capsys, monkeypatch)
        assert code == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "run").exists()


def test_merged_adapter_differentiates_like_the_same_weights_loaded_plainly(adapted):
    """peft leaves the merged model's parameters frozen; the gradient-norm attacks then stopped
    with a traceback ("no trainable parameters to differentiate"). The merged model gives the
    gradient norms of a plain model holding the same weights."""
    from memlens.mia.recipe import score_samples

    root = adapted
    lm = load_causal_lm(root / "base", device="cpu", adapter=root / "lora")
    assert all(p.requires_grad for p in lm.model.parameters())
    plain = load_causal_lm(root / "base", device="cpu")
    plain.model.load_state_dict(lm.model.state_dict())
    texts = TRAIN[:3]
    got = score_samples(lm, texts, ["gradnorm", "gradnorm_mimir"])
    want = score_samples(plain, texts, ["gradnorm", "gradnorm_mimir"])
    for attack in ("gradnorm", "gradnorm_mimir"):
        assert np.all(np.isfinite(got.scores[attack]))
        np.testing.assert_allclose(got.scores[attack], want.scores[attack], rtol=1e-6)


def test_adapter_lacking_weights_its_config_declares_is_refused(adapted, tmp_path, recwarn):
    """An adapter file without (some of) the weights its config declares: peft only warned (a
    long list of keys on the console) and left those layers unadapted, so an empty file was
    audited as the bare base, with 0 unintended bits."""
    import shutil

    from safetensors.torch import load_file, save_file

    root = adapted
    state = load_file(root / "lora" / "adapter_model.safetensors")
    for name, keep in (("empty", ()), ("partial", [k for k in state if "q_proj" not in k])):
        d = tmp_path / name
        shutil.copytree(root / "lora", d)
        kept = {k: state[k] for k in keep}
        save_file(kept, d / "adapter_model.safetensors", metadata={"format": "pt"})
        n_missing = len(state) - len(kept)
        with pytest.raises(
            UserError,
            match=rf"adapter .*{name} lacks {n_missing} of the {len(state)} weights its config "
            r"declares \(e.g. .*\), so those layers would be left unadapted",
        ):
            load_causal_lm(root / "base", device="cpu", adapter=d)
    assert not [w for w in recwarn if "missing adapter keys" in str(w.message)]
