"""Models: memlens's own small GPT and Hugging Face causal LMs.

* :mod:`memlens.models.gpt`: :class:`GPT` (GPT-2 compatible, no dropout, a stack of ``K``
  same-shaped models trained at once) and :class:`GPTConfig` (exact parameter count).
* :mod:`memlens.models.hf`: :func:`load_causal_lm` (a directory, a GGUF file, a fetched registry
  name or a hub name; optional PEFT adapter merged at load; optional device map) into a
  :class:`CausalLM`, :func:`load_tokenizer`, memlens GPT checkpoints.
* :mod:`memlens.models.adapters`, :mod:`memlens.models.finetune`: PEFT adapters checked against
  their base and merged; LoRA fine-tuning (``peft`` with a ``transformers.Trainer``).
* :mod:`memlens.models.gguf`, :mod:`memlens.models.zoo`: GGUF checkpoints (dequantized by the
  ``gguf`` package) and the registry of fetchable models (``memlens fetch``).
* :mod:`memlens.models.loading`: the shared load-error sentences and warning quieting.

Names are loaded on first use (PEP 562), so importing the package does not import torch.
"""

from __future__ import annotations

from memlens._lazy import lazy

_NAMES: dict[str, str] = {
    "GPT": "memlens.models.gpt",
    "GPTConfig": "memlens.models.gpt",
    "CausalLM": "memlens.models.hf",
    "load_causal_lm": "memlens.models.hf",
    "load_tokenizer": "memlens.models.hf",
    "load_gpt_checkpoint": "memlens.models.hf",
    "save_gpt_checkpoint": "memlens.models.hf",
    "apply_adapter": "memlens.models.adapters",
    "save_adapter": "memlens.models.adapters",
    "LoraSettings": "memlens.models.finetune",
    "finetune_lora": "memlens.models.finetune",
    "read_gguf_info": "memlens.models.gguf",
    "MODELS": "memlens.models.zoo",
    "fetch_model": "memlens.models.zoo",
}

__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy(__name__, _NAMES)
