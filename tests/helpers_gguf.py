"""Write tiny GGUF checkpoints for tests (no hub, no llama.cpp): a Llama-architecture Hugging Face
model and a byte-level BPE tokenizer, laid out as llama.cpp's converter does (tensor names,
rotary row permutation of the query and key projections, ``gpt2`` tokenizer metadata), with
the weight matrices quantized by the ``gguf`` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def byte_bpe_tokenizer(texts: list[str], vocab_size: int = 320):
    """A byte-level BPE tokenizer (GPT-2 style, ``<|endoftext|>`` = id 0 as BOS/EOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary permutation of query/key rows (transformers reverses it at load)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    return (
        w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_llama_gguf(
    model,
    tokenizer,
    path: str | Path,
    qtype: str = "Q8_0",
    architecture: str = "llama",
) -> dict[str, torch.Tensor]:
    """Write ``model`` (a ``LlamaForCausalLM``) and ``tokenizer`` to the GGUF file ``path``, with
    every weight matrix stored as ``qtype`` (``F32``, ``Q8_0``, ``Q4_1`` ...) and norms in F32.

    Returns the Hugging Face state dict *after* quantization and dequantization: the float model
    the file stands for.
    """
    import gguf

    cfg = model.config
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    qt = gguf.GGMLQuantizationType[qtype]
    w = gguf.GGUFWriter(str(path), architecture)
    w.add_name("memlens tiny llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_layer_norm_rms_eps(float(cfg.rms_norm_eps))
    w.add_rope_dimension_count(cfg.hidden_size // n_head)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(
        {"F32": gguf.LlamaFileType.ALL_F32, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}.get(
            qtype, gguf.LlamaFileType.MOSTLY_Q4_1
        )
    )
    vocab = tokenizer.backend_tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    assert len(tokens) == cfg.vocab_size
    specials = set(tokenizer.all_special_tokens)
    import json

    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in specials else 1 for t in tokens])
    w.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    w.add_bos_token_id(tokenizer.bos_token_id)
    w.add_eos_token_id(tokenizer.eos_token_id)

    out: dict[str, torch.Tensor] = {}
    for name, param in model.state_dict().items():
        data = param.detach().float().numpy()
        if name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if name == "model.embed_tokens.weight":
            gname = "token_embd.weight"
        elif name == "model.norm.weight":
            gname = "output_norm.weight"
        elif name == "lm_head.weight":
            gname = "output.weight"
        else:
            layer = name.split(".")[2]
            rest = ".".join(name.split(".")[3:-1])
            gname = f"blk.{layer}.{HF_TO_GGUF[rest]}.weight"
        heads = n_head if ".q_proj." in name else n_kv if ".k_proj." in name else None
        if heads is not None:
            data = _permute(data, heads)
        if data.ndim == 2 and qt != gguf.GGMLQuantizationType.F32:
            q = gguf.quants.quantize(data, qt)
            w.add_tensor(gname, q, raw_dtype=qt)
            back = gguf.quants.dequantize(q, qt).reshape(data.shape)
        else:
            w.add_tensor(gname, data.astype(np.float32))
            back = data
        if heads is not None:
            back = _unpermute(back, heads)
        out[name] = torch.from_numpy(np.ascontiguousarray(back, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if cfg.tie_word_embeddings:
        out["lm_head.weight"] = out["model.embed_tokens.weight"]
    return out
