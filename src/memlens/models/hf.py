"""Load a causal language model (Hugging Face or a memlens GPT checkpoint) for scoring.

This module is the door through which real models enter memlens.
:func:`load_causal_lm` loads ``AutoModelForCausalLM`` + ``AutoTokenizer`` with ``from_pretrained``
from a local directory or a hub name (memlens never downloads at run time by itself; a hub name
works only where the hub or its cache is reachable), with a chosen ``dtype`` and ``device``. A
memlens GPT checkpoint (see :func:`save_gpt_checkpoint`) loads too and is converted to the
equivalent ``GPT2LMHeadModel`` so every model downstream is a Hugging Face causal LM (KV-cached
greedy decoding included). Scoring a loaded model goes through :mod:`memlens.scoring`
(:func:`~memlens.scoring.score_texts`, with the BOS convention that makes bits per text
comparable across tokenizers).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from memlens.errors import UserError
from memlens.hub import quiet_hub
from memlens.scoring.core import Forward, hf_forward
from memlens.training.devices import pick_device

DTYPES: dict[str, torch.dtype | None] = {
    "auto": None,
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}

GPT_CHECKPOINT_FILE = "memlens_gpt.json"
GPT_WEIGHTS_FILE = "model.safetensors"


def resolve_dtype(name: str | torch.dtype | None) -> torch.dtype | None:
    """A torch dtype from ``auto``/``float32``/``bfloat16``/``float16`` (``None`` for ``auto``)."""
    if name is None or isinstance(name, torch.dtype):
        return name
    key = str(name).lower()
    if key not in DTYPES:
        raise UserError(f"unknown dtype '{name}'; use one of auto, float32, bfloat16, float16.")
    return DTYPES[key]


@dataclass
class CausalLM:
    """A loaded causal LM, its tokenizer and what memlens needs to know about it.

    Attributes
    ----------
    model: the Hugging Face causal LM, in eval mode, on ``device``.
    tokenizer: its tokenizer (``None`` for a memlens GPT checkpoint without one).
    name: the path or hub name it was loaded from.
    source: ``"huggingface"`` or ``"memlens-gpt"``.
    device, dtype: where and in which precision the weights live.
    context_length: the longest sequence the model accepts (``None`` when the config has no limit).
    vocab_size: rows of the input embedding (the model's vocabulary).
    n_params: distinct parameters (tied embeddings counted once), as in Morris et al. 2025.
    files_stamp: names, sizes and modification times of the checkpoint's files, hashed
        (:func:`memlens.models.loading.checkpoint_stamp`): a resumed run reuses stored scores
        only for a model whose files did not change (not part of :meth:`describe`).
    """

    model: torch.nn.Module
    tokenizer: Any
    name: str
    source: str
    device: torch.device
    dtype: torch.dtype
    context_length: int | None
    vocab_size: int
    n_params: int
    device_map: dict[str, str] | None = None  # module -> device when split by accelerate
    checkpoint: dict[str, Any] | None = None  # e.g. a GGUF file's format and quantization
    adapter: dict[str, Any] | None = None  # a PEFT adapter merged into the weights
    files_stamp: str | None = None  # see :func:`memlens.models.loading.checkpoint_stamp`

    @property
    def bos_token_id(self) -> int | None:
        """The id prepended to every text (see :func:`memlens.data.text.bos_token_id`)."""
        from memlens.data.text import bos_token_id

        return bos_token_id(self.tokenizer) if self.tokenizer is not None else None

    def forward(self, window_stride: int | None = None) -> Forward:
        """The forward for :func:`memlens.scoring.score_tokens`; windowed when ``window_stride`` is set."""
        fwd = hf_forward(self.model)
        if window_stride is not None:
            from memlens.scoring.ragged import windowed_forward

            if self.context_length is None:
                raise UserError(
                    f"model {self.name} has no context limit, so a sliding window is not needed."
                )
            fwd = windowed_forward(fwd, self.context_length, window_stride)
        return fwd

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description for manifests and reports."""
        return {
            "name": self.name,
            "source": self.source,
            "architecture": type(self.model).__name__,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "context_length": self.context_length,
            "vocab_size": self.vocab_size,
            "n_params": self.n_params,
            "tokenizer": type(self.tokenizer).__name__ if self.tokenizer is not None else None,
            "bos_token_id": self.bos_token_id,
            **({"device_map": self.device_map} if self.device_map is not None else {}),
            **({"checkpoint": self.checkpoint} if self.checkpoint is not None else {}),
            **({"adapter": self.adapter} if self.adapter is not None else {}),
        }


def context_length_of(config: Any) -> int | None:
    """The context limit recorded in a Hugging Face config (``n_positions``, ``max_position_embeddings`` ...)."""
    for key in (
        "n_positions",
        "max_position_embeddings",
        "n_ctx",
        "max_sequence_length",
        "seq_length",
    ):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


# Checkpoint file suffixes: a name ending in one is a local file, never a hub repository.
FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def _looks_like_hub_name(name: str) -> bool:
    """``org/name`` or ``name``, and not a path into an existing local directory or a file name."""
    if name.startswith((".", "/", "~")) or "\\" in name:
        return False
    if name.lower().endswith(FILE_SUFFIXES):
        return False
    parts = name.split("/")
    if len(parts) == 2 and Path(parts[0]).is_dir():
        return False
    return 1 <= len(parts) <= 2 and all(parts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__


def load_causal_lm(
    name_or_path: str | os.PathLike[str],
    *,
    tokenizer: str | os.PathLike[str] | Any | None = None,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = "auto",
    device_map: str | dict[str, Any] | None = None,
    max_memory: dict[Any, Any] | None = None,
    offload_folder: str | os.PathLike[str] | None = None,
    adapter: str | os.PathLike[str] | None = None,
) -> CausalLM:
    """Load a causal LM and its tokenizer for scoring.

    Parameters
    ----------
    name_or_path:
        A local directory written by ``save_pretrained`` (``config.json``), a memlens GPT
        checkpoint directory (``memlens_gpt.json``, see :func:`save_gpt_checkpoint`), a GGUF file
        or a directory holding one (dequantized to float and cached, see
        :mod:`memlens.models.gguf`), a fetched model of :mod:`memlens.models.zoo` by name
        (``smollm2-135m``), or a Hugging Face hub name (needs the hub or its local cache).
    tokenizer:
        A tokenizer object, or a path/name to load one from; by default the model's own directory.
    dtype:
        ``auto`` (the checkpoint's own), ``float32``, ``bfloat16`` or ``float16``.
    device:
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:N``; ``map`` is short for
        ``device_map="auto"`` (so every command's ``--device map`` splits a large model).
    device_map:
        For a model that does not fit one device: ``auto``, ``balanced``, ``balanced_low_0``,
        ``sequential`` or a module-to-device dict, handed to ``from_pretrained`` (Hugging Face
        ``accelerate`` places the layers on the GPUs, then CPU memory, then disk, and moves
        activations between them). ``device`` is then ignored: inputs go where the input
        embedding runs. Scores are the same as with the whole model on one device.
    max_memory:
        With ``device_map``: the memory each device may use, e.g. ``{0: "20GiB", "cpu": "60GiB"}``.
    offload_folder:
        With ``device_map``: where layers that fit nowhere are offloaded (default: a temporary
        directory removed with the model).
    adapter:
        A PEFT adapter directory (LoRA ...) trained over this model; it is checked against the
        base and merged into the weights (:func:`memlens.models.adapters.apply_adapter`).

    Returns
    -------
    CausalLM, with the model in eval mode.

    Raises
    ------
    UserError: missing directory, unreadable checkpoint, missing tokenizer, or a tokenizer whose
        vocabulary is larger than the model's embedding.
    """
    from transformers.utils import logging as hf_logging

    from memlens.models.loading import checkpoint_stamp, resolve_source

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bars in memlens output
    try:
        source, checkpoint = resolve_source(name_or_path)  # registry names, GGUF files
        if (
            checkpoint is not None
            and tokenizer is None
            and not checkpoint.get("tokenizer_from_gguf", True)
        ):
            held = (
                f"a '{checkpoint.get('tokenizer_model')}' tokenizer that transformers cannot read "
                f"({checkpoint['tokenizer_error']})"
                if checkpoint.get("tokenizer_error")
                else "no tokenizer"
            )
            raise UserError(
                f"the GGUF file {checkpoint['file']} holds {held}; pass `tokenizer` (the "
                "directory or hub name of the tokenizer the model was trained with)."
            )
        if isinstance(device, str) and device.lower() == "map" and device_map is None:
            device_map = "auto"
        if device_map is not None:
            lm = _load_device_mapped(
                source, tokenizer, dtype, device_map, max_memory, offload_folder
            )
        else:
            lm = _load_causal_lm(source, tokenizer, dtype, device)
        if checkpoint is not None:
            lm.name, lm.source, lm.checkpoint = str(name_or_path), "gguf", checkpoint
        lm.files_stamp = checkpoint_stamp(name_or_path)
        if adapter is not None:
            from memlens.models.adapters import apply_adapter

            lm = apply_adapter(lm, adapter)
        return lm
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _load_causal_lm(name_or_path: Any, tokenizer: Any, dtype: Any, device: Any) -> CausalLM:
    from transformers import AutoModelForCausalLM

    name = str(name_or_path)
    path = Path(name).expanduser()
    torch_dtype = resolve_dtype(dtype)
    dev = pick_device(device)
    if path.is_dir():
        if (path / GPT_CHECKPOINT_FILE).exists():
            model = load_gpt_checkpoint(path).to_hf(0)
            if torch_dtype is not None:
                model = model.to(torch_dtype)
            source = "memlens-gpt"
        elif (path / "config.json").exists():
            from memlens.models.loading import load_error, missing_weights_error, quiet_transformers

            try:
                with quiet_transformers():
                    model, info = AutoModelForCausalLM.from_pretrained(
                        path, dtype=torch_dtype or "auto", output_loading_info=True
                    )
            except Exception as exc:  # noqa: BLE001 - sorted into one sentence or re-raised
                err = load_error(path, exc)
                if err is None and isinstance(exc, (OSError, ValueError, KeyError)):
                    err = UserError(f"could not load a causal LM from {path}: {_first_line(exc)}.")
                if err is None:
                    raise
                raise err from None
            if (err := missing_weights_error(path, info)) is not None:
                raise err
            source = "huggingface"
        else:
            raise UserError(
                f"{path} holds neither config.json (a Hugging Face model) nor {GPT_CHECKPOINT_FILE} (a memlens GPT checkpoint)."
            )
    elif path.exists():
        raise UserError(f"model path {path} is a file; pass the directory that holds config.json.")
    elif _looks_like_hub_name(name):
        try:
            with quiet_hub():
                model = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype or "auto")
        except (OSError, ValueError) as exc:
            raise UserError(
                f"model '{name}' is not a local directory and could not be loaded from the Hugging Face hub ({_first_line(exc)})."
            ) from None
        source = "huggingface"
    elif name.lower().endswith(FILE_SUFFIXES):
        raise UserError(f"model file {path} does not exist.")
    else:
        raise UserError(f"model directory {path} does not exist.")

    tok = _load_tokenizer(tokenizer, name, required=source == "huggingface")
    return _causal_lm(model.to(dev).eval(), tok, name, source, dev)


DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def _load_device_mapped(
    name_or_path: Any,
    tokenizer: Any,
    dtype: Any,
    device_map: str | dict[str, Any],
    max_memory: dict[Any, Any] | None,
    offload_folder: Any,
) -> CausalLM:
    """A Hugging Face causal LM split over devices by ``accelerate`` (see :func:`load_causal_lm`)."""
    import shutil
    import tempfile
    import weakref

    from transformers import AutoModelForCausalLM

    name = str(name_or_path)
    path = Path(name).expanduser()
    if isinstance(device_map, str) and device_map not in DEVICE_MAP_STRATEGIES:
        raise UserError(
            f"unknown device map '{device_map}'; use {', '.join(DEVICE_MAP_STRATEGIES)} or a dict."
        )
    if path.is_dir() and (path / GPT_CHECKPOINT_FILE).exists():
        raise UserError(
            f"{path} is a memlens GPT checkpoint, which fits one device; use `device` instead of a device map."
        )
    if path.is_dir() and not (path / "config.json").exists():
        raise UserError(f"{path} holds no config.json (a Hugging Face model).")
    if not path.is_dir() and (path.exists() or not _looks_like_hub_name(name)):
        raise UserError(f"model directory {path} does not exist.")
    torch_dtype = resolve_dtype(dtype)
    own_folder = offload_folder is None
    folder = tempfile.mkdtemp(prefix="memlens-offload-") if own_folder else str(offload_folder)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path if path.is_dir() else name,
            dtype=torch_dtype or "auto",
            device_map=device_map,
            max_memory=max_memory,
            offload_folder=folder,
        )
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        if own_folder:
            shutil.rmtree(folder, ignore_errors=True)
        raise UserError(
            f"could not load {name} with device_map={device_map!r}: {_first_line(exc)}."
        ) from None
    if own_folder:
        weakref.finalize(model, shutil.rmtree, folder, True)
    model.eval()
    placed = {str(k): str(v) for k, v in (getattr(model, "hf_device_map", None) or {}).items()}
    if not placed:  # everything fit on one device: accelerate's "" key means the whole model
        placed = {"": str(next(model.parameters()).device)}
    tok = _load_tokenizer(tokenizer, name, required=True)
    return _causal_lm(
        model, tok, name, "huggingface", _input_device(model, placed), device_map=placed
    )


def _causal_lm(
    model: Any,
    tok: Any,
    name: str,
    source: str,
    device: torch.device,
    device_map: dict[str, str] | None = None,
) -> CausalLM:
    """A loaded model as a :class:`CausalLM`, refusing a tokenizer larger than its embedding."""
    emb = model.get_input_embeddings()
    vocab_size = int(emb.weight.shape[0]) if emb is not None else int(model.config.vocab_size)
    if tok is not None and len(tok) > vocab_size:
        raise UserError(
            f"the tokenizer has {len(tok)} tokens but model {name} has only {vocab_size} embedding rows; "
            "pass the tokenizer the model was trained with."
        )
    return CausalLM(
        model=model,
        tokenizer=tok,
        name=name,
        source=source,
        device=device,
        dtype=next(model.parameters()).dtype,
        context_length=context_length_of(model.config),
        vocab_size=vocab_size,
        n_params=sum(p.numel() for p in model.parameters()),
        device_map=device_map,
    )


def _input_device(model: Any, placed: dict[str, str]) -> torch.device:
    """Where token ids go for a device-mapped model: the input embedding's device, or (when it
    is offloaded, i.e. on ``meta``) the first GPU of the map, else the CPU."""
    emb = model.get_input_embeddings()
    if emb is not None and emb.weight.device.type != "meta":
        return emb.weight.device
    for where in placed.values():
        if where not in ("cpu", "disk"):
            return torch.device(f"cuda:{where}" if where.isdigit() else where)
    return torch.device("cpu")


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> Any:
    """``AutoTokenizer.from_pretrained`` from a local directory or hub name; :class:`UserError` if none."""
    return _load_tokenizer(str(name_or_path), str(name_or_path), required=True)


def _load_tokenizer(tokenizer: Any, model_name: str, required: bool) -> Any:
    from transformers import AutoTokenizer

    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        return tokenizer
    where = str(tokenizer) if tokenizer is not None else model_name
    if (
        tokenizer is not None
        and not Path(where).expanduser().exists()
        and not _looks_like_hub_name(where)
    ):
        raise UserError(f"tokenizer directory {where} does not exist.")
    local = Path(where).expanduser()
    try:
        with quiet_hub():
            tok = AutoTokenizer.from_pretrained(local if local.exists() else where)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if not required and tokenizer is None:
            return None
        raise UserError(
            f"no usable tokenizer at {where} ({_first_line(exc)}); pass `tokenizer`."
        ) from None
    # Without its vocabulary files, transformers builds the class named in config.json with
    # special tokens only, which turns every text into no tokens.
    if set(tok.get_vocab()) <= set(tok.all_special_tokens):
        if not required and tokenizer is None:
            return None
        raise UserError(
            f"no tokenizer at {where} (its vocabulary files are missing); pass `tokenizer`."
        )
    return tok


# -- memlens GPT checkpoints ----------------------------------------------------------------------


def save_gpt_checkpoint(
    model: Any, path: str | os.PathLike[str], index: int = 0, tokenizer: Any = None
) -> Path:
    """Save model ``index`` of a :class:`~memlens.models.gpt.GPT` stack as a loadable checkpoint.

    Writes ``memlens_gpt.json`` (the :class:`~memlens.models.gpt.GPTConfig`) and
    ``model.safetensors`` (one model's weights; nothing is pickled), plus the tokenizer when given.
    """
    from safetensors.torch import save_file

    from memlens.store import atomic_path, write_json_atomic

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    single = model.select([index]) if model.n_models > 1 else model
    state = {k: v.detach().cpu().contiguous() for k, v in single.state_dict().items()}
    with atomic_path(out / GPT_WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    write_json_atomic(out / GPT_CHECKPOINT_FILE, {"format": 1, "config": model.config.to_dict()})
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def load_gpt_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Load a checkpoint written by :func:`save_gpt_checkpoint` as a single-model GPT."""
    from safetensors.torch import load_file

    from memlens.models.gpt import GPT, GPTConfig

    path = Path(path)
    try:
        meta = json.loads((path / GPT_CHECKPOINT_FILE).read_text(encoding="utf-8"))
        config = GPTConfig(**meta["config"])
        state = load_file(str(path / GPT_WEIGHTS_FILE))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"could not read the memlens GPT checkpoint in {path}: {_first_line(exc)}."
        ) from None
    model = GPT(config, n_models=1)
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise UserError(
            f"the weights in {path / GPT_WEIGHTS_FILE} do not match its {GPT_CHECKPOINT_FILE}."
        ) from None
    return model.eval()
