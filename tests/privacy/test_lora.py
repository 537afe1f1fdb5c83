"""DP-SGD through a LoRA adapter (Yu et al. 2022, arXiv:2110.06500) on a tiny Llama: per-sample
gradients of the adapter only, base weights untouched, one seeded initialization for every arm,
adapters saved and reused on resume, bad input in one sentence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers_cli import run_main as _main
from helpers_hf import make_sentences, save_lm, wordlevel_tokenizer, write_lines
from memlens.models.finetune import LoraSettings, attach_lora
from memlens.privacy import DPAuditConfig, run
from memlens.privacy.dp import DPSettings, RowModel, per_sample_grads, row_loss, train_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def _llama(V: int, layers: int = 2, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=32, bos_token_id=0, eos_token_id=0,
                      pad_token_id=1)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


LORA = LoraSettings(r=4, alpha=8, last_layers=1, seed=3)


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    tok = wordlevel_tokenizer()
    root = tmp_path_factory.mktemp("lora")
    model = save_lm(_llama(len(tok)), tok, root / "llama")
    return model, write_lines(root / "train.txt", make_sentences(80, seed=3))


def _cfg(model, train, **kw):
    base = dict(model=str(model), train=str(train), canaries=16, canary_length=4, seq_len=12,
                epochs=2, batch_size=16, candidates=20, dp_epsilons=(None, 8.0),
                accountant="rdp", lr=1e-2, lora_r=4, lora_last_layers=1, seed=5)  # fmt: skip
    return DPAuditConfig(**{**base, **kw})


def test_per_sample_gradients_under_lora_are_the_adapters_one_backward_per_row():
    model = attach_lora(_llama(40), LORA)
    module = RowModel(model).train()
    trainable = {k: p for k, p in module.named_parameters() if p.requires_grad}
    # only the adapter of the last block is trainable: 7 linear layers x (lora_A, lora_B)
    assert len(trainable) == 14 and all("lora_" in k and "layers.1." in k for k in trainable)
    with torch.no_grad():  # lora_B starts at 0; make it nonzero so lora_A gets a gradient too
        for k, p in trainable.items():
            if "lora_B" in k:
                p.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(k)))
    ids = torch.randint(0, 40, (4, 12), generator=torch.Generator().manual_seed(1))
    lengths = torch.tensor([12, 7, 12, 3])
    grads, losses = per_sample_grads(module, {k: p.detach() for k, p in trainable.items()}, ids,
                                     lengths)  # fmt: skip
    assert set(grads) == set(trainable)  # no per-sample gradient of any frozen base weight
    for i in range(4):
        module.zero_grad()
        row_loss(module(ids[i : i + 1]), ids[i : i + 1], lengths[i : i + 1]).sum().backward()
        for k, p in trainable.items():
            assert p.grad is not None and p.grad.abs().sum() > 0
            torch.testing.assert_close(grads[k][i], p.grad, atol=2e-6, rtol=1e-4)
        assert all(p.grad is None for p in module.parameters() if not p.requires_grad)
    torch.testing.assert_close(losses, row_loss(module(ids), ids, lengths).detach())


def test_a_dp_arm_changes_only_the_adapter_and_clips_only_its_gradients():
    model = attach_lora(_llama(40), LORA)
    base = {k: p.detach().clone() for k, p in model.named_parameters() if not p.requires_grad}
    lora = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
    rows = torch.randint(0, 40, (48, 12), generator=torch.Generator().manual_seed(2))
    seen = {}
    import opacus.optimizers.optimizer as oo

    clip = oo.DPOptimizer.clip_and_accumulate

    def spy(self):  # the parameters whose per-sample gradients make the clipping norm
        seen["params"] = {id(p) for p in self.params}
        return clip(self)

    oo.DPOptimizer.clip_and_accumulate = spy
    try:
        stats = train_rows(model, rows, torch.full((48,), 12), epochs=2, batch_size=16, lr=1e-2,
                           dp=DPSettings(4.0, 1e-5, 1.0, "rdp"), seed=1)  # fmt: skip
    finally:
        oo.DPOptimizer.clip_and_accumulate = clip
    assert stats.private and stats.epsilon_spent <= 4.0
    named = dict(model.named_parameters())
    assert seen["params"] == {id(named[k]) for k in lora}
    for k, v in base.items():  # bit-identical
        assert torch.equal(named[k], v), k
        assert getattr(named[k], "grad_sample", None) is None and named[k].grad is None
    assert all(not torch.equal(named[k], v) for k, v in lora.items() if "lora_B" in k)


def test_lora_arms_are_seeded_saved_as_adapters_and_reused(llama_dir, tmp_path):
    model, train = llama_dir
    cfg = _cfg(model, train, score="loss_diff")  # scored against the bare base
    a = run(cfg, tmp_path / "a")
    b = run(cfg, tmp_path / "b")
    for x, y in zip(a.arms, b.arms, strict=True):  # deterministic under the seed
        np.testing.assert_array_equal(x.scores, y.scores)
    for arm in a.arms:
        d = tmp_path / "a" / "models" / arm.name
        assert (d / "adapter_model.safetensors").is_file() and (d / "adapter_config.json").is_file()
        assert not (d / "model.safetensors").exists()  # no full copy of the model
        assert arm.train["lora"]["r"] == 4
    n = a.arms[0].train["trainable_parameters"]
    assert n == 4 * 4 * (32 + 32) + 2 * 4 * (32 + 64) + 4 * (64 + 32)
    assert a.arms[0].train["total_parameters"] > 10 * n
    import json

    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["lora"]["r"] == 4 and manifest["lora"]["trainable_parameters"] == n
    # a rerun reuses the saved adapters and scores the same
    c = run(cfg, tmp_path / "a")
    assert sorted(c.reused) == ["dp-eps8", "no-dp"]
    for x, y in zip(a.arms, c.arms, strict=True):
        np.testing.assert_allclose(x.scores, y.scores, rtol=0, atol=1e-6)
    # the no-DP and DP arms trained from the same initial adapter to different adapters
    from safetensors.torch import load_file

    sa = load_file(tmp_path / "a" / "models" / "no-dp" / "adapter_model.safetensors")
    sb = load_file(tmp_path / "a" / "models" / "dp-eps8" / "adapter_model.safetensors")
    assert set(sa) == set(sb) and any(not torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--lora-r", "4"], "LoRA adapts a Hugging Face model"),
        (["HF", "--lora-r", "-1"], "a LoRA rank must be 0 (full fine-tuning) or positive"),
        (["HF", "--lora-alpha", "8"], "need a LoRA rank"),
        (["HF", "--lora-r", "4", "--lora-target-modules", "c_attn,nope"], "has none of the LoRA"),
        (["HF", "--lora-r", "4", "--lora-last-layers", "5"], "last_layers must be between 1 and 2"),
    ],
)
def test_bad_lora_input_exits_2_with_one_sentence(args, fragment, llama_dir, tmp_path,
                                                  monkeypatch, capsys):  # fmt: skip
    model, train = llama_dir
    if args[0] == "HF":
        args = ["--model", str(model), "--train", str(train), "--canaries", "10",
                "--canary-length", "4", "--seq-len", "12", *args[1:]]  # fmt: skip
    out = tmp_path / "out"
    code, cap = _main(["dp-audit", *args, "--out", str(out)], monkeypatch, capsys)
    err = cap.err.strip()
    assert code == 2 and err.startswith("error: ") and fragment in err, err
    assert "\n" not in err and "Traceback" not in err and not out.exists()


def test_console_names_lora_and_the_trainable_parameters(llama_dir, tmp_path, monkeypatch,
                                                         capsys):  # fmt: skip
    model, train = llama_dir
    argv = ["dp-audit", "--model", str(model), "--train", str(train), "--canaries", "16",
            "--canary-length", "4", "--seq-len", "12", "--epochs", "1", "--batch-size", "16",
            "--candidates", "20", "--dp-epsilon", "8", "--accountant", "rdp", "--lora-r", "2",
            "--lora-target-modules", "q_proj,v_proj", "--out", str(tmp_path / "o")]  # fmt: skip
    code, cap = _main(argv, monkeypatch, capsys)
    assert code in (0, None), cap.err
    out = " ".join(cap.out.split())
    n = 2 * 2 * 2 * (32 + 32)  # 2 blocks x (q_proj, v_proj) x r (in + out)
    assert f"LoRA r2: {n:,}" in out
    assert f"LoRA r = 2, alpha = 4 on q_proj,v_proj in every block: only the adapter's {n:,}" in out
