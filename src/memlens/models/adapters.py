"""PEFT adapters (LoRA and kin) over a base model: checked against the base, merged at load.

A fine-tune is often shipped as an adapter directory (``adapter_config.json`` and
``adapter_model.safetensors``, written by ``peft``'s ``save_pretrained``) over a public base. memlens
audits the fine-tuned model, i.e. the base with the adapter *merged* into its weights
(``W + (alpha / r) B A`` for LoRA, computed by ``peft``'s ``merge_and_unload``): scores are those of
the adapted model, with no adapter overhead per forward. The bare base is the natural reference
(what the model knew before fine-tuning), and the audit and MIA commands default to it.

An adapter is refused, with one sentence, when it does not belong to the base:

* structurally: a module it adapts is missing from the base, or its low-rank factors do not fit
  the base layer's shape (a different architecture or size);
* by fingerprint: adapters saved by :func:`save_adapter` (memlens's fine-tune helper) record a
  fingerprint of the base's input embedding (SHA-256 of its bfloat16 bytes, so a float32 and a
  bfloat16 load of one base agree), and a base with another fingerprint (same shapes, other
  weights: e.g. another fine-tune of the same architecture) is refused.

The base name that ``peft`` records (``base_model_name_or_path``) is kept in the description but
not compared: the same base is often loaded under another path or name.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

from memlens.errors import UserError

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILES = ("adapter_model.safetensors", "adapter_model.bin")
MEMLENS_FILE = "memlens_adapter.json"


def model_label(description: dict[str, Any]) -> str | None:
    """A model's name as headlines show it: ``base + adapter DIR`` when a model description
    (:meth:`~memlens.models.hf.CausalLM.describe`) records a merged adapter, else its name (so a
    fine-tune audited against its bare base does not read as a model against itself)."""
    name = description.get("name")
    adapter = description.get("adapter") or {}
    return f"{name} + adapter {adapter['path']}" if adapter.get("path") else name


def base_fingerprint(model: Any) -> str:
    """SHA-256 (16 hex digits) of the input embedding in bfloat16, with its shape."""
    import torch

    w = model.get_input_embeddings().weight.detach().to("cpu", torch.bfloat16).contiguous()
    h = hashlib.sha256(repr(tuple(w.shape)).encode())
    h.update(w.view(torch.int16).numpy().tobytes())
    return h.hexdigest()[:16]


def save_adapter(model: Any, out: str | os.PathLike[str], base: Any) -> Path:
    """``model.save_pretrained(out)`` for a ``PeftModel``, plus ``memlens_adapter.json`` with the
    fingerprint and description of ``base`` (a :class:`~memlens.models.hf.CausalLM`, before the
    adapter was attached), so that loading it over another base is refused."""
    out = Path(out)
    model.save_pretrained(out)
    info = {
        "base_fingerprint": base_fingerprint(base.model),
        "base": {k: v for k, v in base.describe().items() if k not in ("device", "device_map")},
    }
    (out / MEMLENS_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return out


def _adapter_state(path: Path) -> dict[str, Any]:
    import torch

    st = path / WEIGHTS_FILES[0]
    if st.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(st))
        except (SafetensorError, OSError) as exc:
            raise UserError(
                f"the adapter weights {st} are damaged or incomplete ({str(exc).splitlines()[0]})."
            ) from None
    binf = path / WEIGHTS_FILES[1]
    if binf.is_file():
        try:
            return torch.load(binf, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any unpickling failure means: not plain tensors
            raise UserError(
                f"{binf} holds objects other than tensors, which memlens does not unpickle; "
                "save the adapter with safetensors."
            ) from None
    raise UserError(f"adapter directory {path} has no {WEIGHTS_FILES[0]} or {WEIGHTS_FILES[1]}.")


def _check_shapes(model: Any, state: dict[str, Any], where: Path, base_name: str) -> None:
    """Refuse LoRA factors that do not fit the base's linear layers (or adapt missing modules)."""
    modules = dict(model.named_modules())
    for key, tensor in state.items():
        for part, dim in ((".lora_A.", 1), (".lora_B.", 0)):
            if part not in key:
                continue
            name = key.split(part)[0].removeprefix("base_model.model.")
            mod = modules.get(name)
            if mod is None:
                raise UserError(
                    f"adapter {where} adapts a module '{name}' that base model {base_name} does "
                    "not have: it was trained for a different base."
                )
            weight = getattr(mod, "weight", None)
            if weight is None or weight.ndim != 2:
                continue
            # lora_A is [r, in_features] and lora_B [out_features, r]; a linear layer's weight is
            # [out, in], GPT-2's Conv1D stores [in, out].
            shape = (
                tuple(weight.shape)[::-1] if type(mod).__name__ == "Conv1D" else tuple(weight.shape)
            )
            want = int(shape[dim])
            got = int(tensor.shape[dim]) if tensor.ndim == 2 else -1
            if got != want:
                side = "inputs" if dim == 1 else "outputs"
                raise UserError(
                    f"adapter {where} was trained for a different base: its factors for '{name}' "
                    f"have {got} {side}, the layer of base model {base_name} has {want}."
                )


def _check_complete(peft_model: Any, state: dict[str, Any], where: Path) -> None:
    """Refuse an adapter whose weights file lacks weights its config declares: peft leaves those
    layers at their initial values (a LoRA ``B`` of zeros: no effect) with only a warning, so an
    empty or mismatched file would be audited as the bare base, i.e. nothing memorized."""
    from peft.utils import get_peft_model_state_dict

    expected = set(get_peft_model_state_dict(peft_model))
    missing = sorted(expected - set(state))
    if missing:
        raise UserError(
            f"adapter {where} lacks {len(missing)} of the {len(expected)} weights its config "
            f"declares (e.g. {missing[0]}), so those layers would be left unadapted; the adapter "
            "is incomplete or was saved for another model."
        )


def apply_adapter(lm: Any, adapter: str | os.PathLike[str], *, merge: bool = True) -> Any:
    """Attach the PEFT adapter in directory ``adapter`` to ``lm`` (a loaded
    :class:`~memlens.models.hf.CausalLM`) and merge it into the weights; return ``lm`` updated.

    ``lm.adapter`` then describes the adapter (path, PEFT type, rank, alpha, target modules,
    the base name it declares, whether it was merged and whether the base fingerprint was
    checked) and goes into every manifest through ``lm.describe()``.
    """
    from peft import PeftConfig, PeftModel

    from memlens.data.cache import sha256_file
    from memlens.models.loading import quiet_transformers

    path = Path(adapter).expanduser()
    if path.is_file():
        kind = (
            " (a llama.cpp GGUF adapter, which memlens does not read)"
            if path.suffix.lower() == ".gguf"
            else ""
        )
        raise UserError(
            f"adapter {path} is a file{kind}; pass a PEFT adapter directory "
            f"({CONFIG_FILE} and {WEIGHTS_FILES[0]})."
        )
    if not path.is_dir():
        raise UserError(f"adapter directory {path} does not exist.")
    if not (path / CONFIG_FILE).is_file():
        raise UserError(f"{path} holds no {CONFIG_FILE}; pass a PEFT adapter directory.")
    try:
        declared = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
        if not isinstance(declared, dict) or "peft_type" not in declared:
            raise ValueError("it names no peft_type")
        config = PeftConfig.from_pretrained(str(path))
    except (ValueError, OSError, TypeError, KeyError) as exc:
        raise UserError(
            f"{path / CONFIG_FILE} is not a readable PEFT adapter config ({_first_line(exc)})."
        ) from None
    if getattr(config, "is_prompt_learning", False):
        raise UserError(
            f"adapter {path} is a {_peft_type(config)} adapter (learned prompt tokens), which "
            "cannot be merged into the weights; memlens audits adapters that change weights "
            "(LoRA, IA3 ...)."
        )
    if lm.device_map is not None:
        raise UserError(
            "an adapter is merged into weights on one device; load without a device map."
        )
    checked = False
    record = path / MEMLENS_FILE
    if record.is_file():
        try:
            stored = json.loads(record.read_text(encoding="utf-8"))
            if not isinstance(stored, dict):
                raise ValueError("it holds no JSON object")
        except (OSError, ValueError) as exc:
            raise UserError(
                f"{record} (the base fingerprint memlens recorded with the adapter) is not "
                f"readable ({_first_line(exc)}); restore it or delete it to skip that check."
            ) from None
        want = stored.get("base_fingerprint")
        if want is not None:
            got = base_fingerprint(lm.model)
            if got != want:
                raise UserError(
                    f"adapter {path} was trained on a different base than model {lm.name} "
                    f"(base fingerprint {want}, this model's {got})."
                )
            checked = True
    state = _adapter_state(path)
    _check_shapes(lm.model, state, path, lm.name)
    # peft freezes every base parameter (requires_grad False) and merging keeps them frozen; the
    # merged model must differentiate like any loaded model (the gradnorm attacks need it)
    trainable = {id(p): p.requires_grad for p in lm.model.parameters()}
    try:
        with quiet_transformers(), warnings.catch_warnings():
            # said below in one sentence, not as peft's list of every missing key
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            peft_model = PeftModel.from_pretrained(lm.model, str(path), is_trainable=False)
            _check_complete(peft_model, state, path)
            model = peft_model.merge_and_unload() if merge else peft_model
    except (RuntimeError, ValueError, KeyError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(
            f"adapter {path} does not fit base model {lm.name} ({str(exc).strip().splitlines()[0]})."
        ) from None
    for p in model.parameters():
        if id(p) in trainable:
            p.requires_grad_(trainable[id(p)])
    lm.model = model.eval()
    weights = next((path / f for f in WEIGHTS_FILES if (path / f).is_file()), None)
    lm.adapter = {
        "path": str(path),
        "sha256": sha256_file(weights) if weights is not None else None,
        "peft_type": _peft_type(config),
        "r": getattr(config, "r", None),
        "lora_alpha": getattr(config, "lora_alpha", None),
        "target_modules": sorted({str(m).rsplit(".", 1)[-1] for m in config.target_modules})
        if isinstance(config.target_modules, (set, list, tuple))
        else config.target_modules,
        "declared_base": getattr(config, "base_model_name_or_path", None),
        "merged": merge,
        "base_fingerprint_checked": checked,
    }
    return lm


def _peft_type(config: Any) -> str:
    return str(getattr(config.peft_type, "value", config.peft_type))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(exc).__name__
