"""LoRA fine-tuning of a loaded causal LM on texts: ``peft`` + ``transformers.Trainer``, no new trainer.

This exists so that an audit can be shown end to end on a real model (fine-tune on private
texts, then ask what was memorized); it is the plain recipe, with memlens's text convention:
each text is encoded as memlens scores it (:func:`memlens.data.text.encode_texts`: one BOS id
first, no end-of-text token), and the loss covers every text token, so the code lengths memlens
reports afterwards measure exactly what training minimized.

The adapter is saved with :func:`memlens.models.adapters.save_adapter`, which records the base's
fingerprint so that loading it over another base is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memlens.errors import UserError


@dataclass(frozen=True)
class LoraSettings:
    """LoRA and optimizer settings (saved next to the adapter as part of its record).

    ``r`` and ``alpha`` as in Hu et al. 2021 ("LoRA"), the update being ``(alpha / r) B A``;
    ``target_modules`` default to ``all-linear`` (peft: every linear layer but the output head),
    or name module suffixes such as ``("q_proj", "v_proj")``. ``last_layers`` adapts only the
    last blocks: backpropagation then stops there, which makes a step on a CPU several times
    cheaper (the lower blocks only run forward).
    ``epochs`` passes over the texts, AdamW at learning rate ``lr`` with linear decay after
    ``warmup_steps``; ``batch_size`` texts per step (padded to the longest).
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | tuple[str, ...] = "all-linear"
    last_layers: int | None = None
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 8
    warmup_steps: int = 5
    weight_decay: float = 0.0
    seed: int = 0


def finetune_lora(
    lm: Any,
    texts: Sequence[str],
    out: str | os.PathLike[str],
    settings: LoraSettings | None = None,
    *,
    log: Any = None,
) -> Path:
    """Fine-tune ``lm`` (a :class:`~memlens.models.hf.CausalLM`) with LoRA on ``texts`` (in the
    order given, shuffled each epoch by the trainer's seed) and save the adapter to ``out``.

    Duplicates in ``texts`` are trained on as often as they occur (that is how repeats are
    planted). ``lm.model`` is left unchanged (the adapter is removed from it after saving).
    ``log`` is called with the trainer's log dicts (loss per logging step). Returns ``out``.
    """
    import torch
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments

    from memlens.data.text import encode_texts
    from memlens.models.adapters import save_adapter
    from memlens.models.loading import quiet_transformers

    s = settings or LoraSettings()
    if not texts:
        raise UserError("there are no texts to fine-tune on.")
    if lm.tokenizer is None:
        raise UserError(f"model {lm.name} has no tokenizer to read the texts with.")
    enc = encode_texts(list(texts), lm.tokenizer)
    rows = [{"input_ids": t.tolist()} for t in enc.tokens]
    pad_id = lm.tokenizer.pad_token_id
    pad_id = 0 if pad_id is None else int(pad_id)

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        T = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), T), dtype=torch.long)
        for i, b in enumerate(batch):
            ids[i, : len(b["input_ids"])] = torch.tensor(b["input_ids"])
            mask[i, : len(b["input_ids"])] = 1
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": ids.masked_fill(mask == 0, -100),
        }

    model = attach_lora(lm.model, s, name=lm.name)

    class _Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
            if log is not None and logs:
                log({"step": state.global_step, **logs})

    with tempfile.TemporaryDirectory(prefix="memlens-lora-") as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=s.batch_size,
            num_train_epochs=s.epochs,
            learning_rate=s.lr,
            warmup_steps=s.warmup_steps,
            weight_decay=s.weight_decay,
            lr_scheduler_type="linear",
            logging_steps=max(1, len(rows) // s.batch_size // 4),
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=s.seed,
            data_seed=s.seed,
            use_cpu=lm.device.type == "cpu",
            dataloader_num_workers=0,
            remove_unused_columns=False,
        )
        with quiet_transformers():
            trainer = Trainer(
                model=model,
                args=args,
                train_dataset=rows,
                data_collator=collate,
                callbacks=[_Log()],
            )
            trainer.remove_callback(PrinterCallback)  # memlens prints its own log lines
            trainer.train()
    model.eval()
    out = Path(out)
    with quiet_transformers():
        save_adapter(model, out, lm)
    (out / "memlens_finetune.json").write_text(
        json.dumps({"settings": asdict(s), "n_texts": len(rows)}, indent=2),
        encoding="utf-8",
    )
    with quiet_transformers():
        lm.model = model.unload()  # the base, without the LoRA layers
    lm.model.eval()
    return out


def lora_config(model: Any, settings: LoraSettings, *, name: str = "the model") -> Any:
    """The ``peft.LoraConfig`` of ``settings`` for ``model``: rank, alpha, dropout, the target
    modules (``all-linear``, or the given suffixes that ``model`` has) and, with ``last_layers``,
    the indices of its last blocks. Raises :class:`UserError` when ``r < 1``, ``last_layers`` is
    out of range or no target module exists in ``model``."""
    from peft import LoraConfig

    s = settings
    if s.r < 1:
        raise UserError(f"a LoRA rank must be at least 1, got {s.r}.")
    targets: str | list[str] = s.target_modules
    layers: dict[str, Any] = {}
    if s.last_layers is not None:
        pattern, n_blocks = _blocks(model)
        if not 1 <= s.last_layers <= n_blocks:
            raise UserError(f"last_layers must be between 1 and {n_blocks}, got {s.last_layers}.")
        layers = {
            "layers_to_transform": list(range(n_blocks - s.last_layers, n_blocks)),
            "layers_pattern": pattern,
        }
        if targets == "all-linear":  # peft takes a layer range only with module names
            targets = _linear_suffixes(model)
    if not isinstance(targets, str):
        present = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        targets = [m for m in targets if m in present]
        if not targets:
            raise UserError(
                f"model {name} has none of the LoRA target modules {', '.join(s.target_modules)}."
            )
    return LoraConfig(
        r=s.r,
        lora_alpha=s.alpha,
        lora_dropout=s.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
        **layers,
    )


def attach_lora(model: Any, settings: LoraSettings, *, name: str = "the model") -> Any:
    """Wrap ``model`` (a Hugging Face causal LM, modified in place) with fresh LoRA layers of
    ``settings`` (:func:`lora_config`) and return the ``peft`` model: every base weight frozen
    (``requires_grad`` False), only the adapter's ``lora_A``/``lora_B`` trainable.

    The initialization is seeded by ``settings.seed`` (``lora_A`` Kaiming-uniform from torch's
    global generator, ``lora_B`` zero, so base + adapter starts equal to the base); the global
    generator is set to ``settings.seed`` as ``finetune_lora`` has always done.
    """
    import torch
    from peft import get_peft_model

    from memlens.models.loading import quiet_transformers

    config = lora_config(model, settings, name=name)
    torch.manual_seed(settings.seed)
    try:
        with quiet_transformers():
            return get_peft_model(model, config)
    except ValueError as exc:  # peft: "Target modules {...} not found in the base model."
        first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else "no match"
        raise UserError(f"LoRA cannot be applied to model {name}: {first}.") from None


def _blocks(model: Any) -> tuple[str, int]:
    """The attribute name and length of the model's stack of transformer blocks (its longest
    ``ModuleList``: ``layers`` in Llama, ``h`` in GPT-2)."""
    import torch

    best = max(
        ((n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.ModuleList)),
        key=lambda nm: len(nm[1]),
        default=None,
    )
    if best is None:
        raise UserError("the model has no stack of blocks to choose the last layers from.")
    return best[0].rsplit(".", 1)[-1], len(best[1])


def _linear_suffixes(model: Any) -> list[str]:
    """Names (last component) of the linear layers inside the blocks, without the output head."""
    import torch

    head = model.get_output_embeddings()
    out = set()
    for name, mod in model.named_modules():
        is_linear = isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D"
        if is_linear and mod is not head:
            out.add(name.rsplit(".", 1)[-1])
    return sorted(out)
