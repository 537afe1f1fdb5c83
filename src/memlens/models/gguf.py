"""GGUF checkpoints (llama.cpp, Ollama) as memlens models: dequantized once, cached as safetensors.

A GGUF file packs a model's weights, mostly quantized (``Q4_1``, ``Q8_0``, ``Q4_K`` ...), with its
config and tokenizer. memlens reads it through transformers' GGUF support (``from_pretrained(...,
gguf_file=...)``, backed by the ``gguf`` package), which *dequantizes* every tensor to float: the
model memlens scores is the float model the quantized weights stand for, exactly (each weight is
``scale * q + min`` of its block, computed in float32), so code lengths are those of the
quantized checkpoint up to float32 arithmetic.

Dequantizing takes tens of seconds for a 135M-parameter model, so the float weights are written
once into the cache as an ordinary Hugging Face directory (``config.json``, ``model.safetensors``,
the tokenizer) under ``<cache>/gguf/<first 16 hex digits of the file's SHA-256>/``, with
``memlens_gguf.json`` describing the source: file name and hash, architecture, the file type
(e.g. ``Q4_1``), the count of tensors per storage type and the dtype of the dequantized weights.
A second load reads that directory (seconds); an edited file has another hash and is converted
anew, and so is a damaged cached copy (a file it wrote missing, cut short or no longer
readable). :func:`memlens.models.hf.load_causal_lm` calls :func:`resolve_gguf` first, so a ``.gguf``
file, or a directory holding one, is accepted wherever a model is.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from memlens.data.cache import cache_dir, fresh_dir, publish_dir, sha256_file
from memlens.errors import UserError

INFO_FILE = "memlens_gguf.json"
SUFFIX = ".gguf"


def _has_hf_weights(directory: Path) -> bool:
    """Whether a directory holds Hugging Face weights (safetensors or pickled ``.bin`` files)."""
    return any(directory.glob("*.safetensors")) or any(directory.glob("pytorch_model*.bin"))


def find_gguf(path: str | os.PathLike[str]) -> Path | None:
    """The GGUF file ``path`` names: the file itself, or the only ``.gguf`` in a directory that
    is not a Hugging Face checkpoint (no ``config.json`` with weights next to it: a GGUF
    download often comes with its ``config.json``); ``None`` when ``path`` is not a GGUF
    checkpoint."""
    p = Path(path).expanduser()
    if p.is_file():
        return p if p.suffix.lower() == SUFFIX else None
    if p.is_dir() and not ((p / "config.json").exists() and _has_hf_weights(p)):
        found = sorted(q for q in p.iterdir() if q.suffix.lower() == SUFFIX and q.is_file())
        if len(found) > 1:
            raise UserError(
                f"{p} holds {len(found)} GGUF files ({', '.join(q.name for q in found[:3])}); "
                "pass the one to load."
            )
        return found[0] if found else None
    return None


def read_gguf_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What a GGUF file declares: architecture, name, file type (quantization) and the number of
    tensors stored in each type. Raises :class:`UserError` when the file is not readable GGUF."""
    import gguf

    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError, TypeError) as exc:
        raise UserError(f"{path} is not a readable GGUF file ({_first_line(exc)}).") from None

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except (ValueError, IndexError, TypeError):
            return None

    file_type = field("general.file_type")
    try:
        quant = gguf.LlamaFileType(int(file_type)).name.removeprefix("MOSTLY_")
    except (TypeError, ValueError):
        quant = None
    types = Counter(t.tensor_type.name for t in reader.tensors)
    return {
        "architecture": field("general.architecture"),
        "model_name": field("general.name"),
        "quantization": quant,
        "tensor_types": dict(types.most_common()),
        "n_tensors": len(reader.tensors),
        "tokenizer_model": field("tokenizer.ggml.model"),
    }


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet_gguf_loading():
    """No progress bar and no advice to install ``kernels`` from transformers' GGUF reader:
    memlens dequantizes on purpose and reports what it did in the model's description."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    from memlens.models.loading import quiet_transformers

    before_tqdm = getattr(gguf_utils, "tqdm", None)
    if before_tqdm is not None:
        gguf_utils.tqdm = lambda it, *a, **k: it
    try:
        with quiet_transformers():
            yield
    finally:
        if before_tqdm is not None:
            gguf_utils.tqdm = before_tqdm


def dequantize_gguf(
    path: str | os.PathLike[str], out: str | os.PathLike[str], *, sha256: str | None = None
) -> dict[str, Any]:
    """Dequantize the GGUF file ``path`` into a Hugging Face directory ``out`` (float32
    safetensors, config without the GGUF quantization entry, the tokenizer when the file has
    one) and write ``memlens_gguf.json`` there; return its content."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    out = Path(out)
    info = read_gguf_info(path)
    arch = info["architecture"] or "unknown"
    if path.stat().st_size >= NOTE_BYTES:  # a real checkpoint: this takes a while
        import logging

        logging.getLogger(__name__).info(
            "converting %s to float weights (once per file; later loads read the cache)", path.name
        )
    try:
        with _quiet_gguf_loading():
            model, loading = AutoModelForCausalLM.from_pretrained(
                path.parent, gguf_file=path.name, dtype=torch.float32, output_loading_info=True
            )
    except (ValueError, KeyError, OSError, RuntimeError, NotImplementedError, TypeError) as exc:
        raise UserError(
            f"transformers cannot load the GGUF file {path.name} (architecture '{arch}'): "
            f"{_first_line(exc)}."
        ) from None
    # transformers fills tensors the file lacks with random values and only logs it: refuse.
    missing = list(loading.get("missing_keys") or [])
    mismatched = list(loading.get("mismatched_keys") or [])
    if missing or mismatched:
        bad = missing or [m[0] if isinstance(m, (tuple, list)) else m for m in mismatched]
        what = "lacks" if missing else "has wrongly shaped"
        raise UserError(
            f"the GGUF file {path.name} {what} {len(bad)} of the tensors its '{arch}' "
            f"architecture needs (e.g. {bad[0]}), which would be left random."
        )
    packed = [n for n, m in model.named_modules() if type(m).__name__.startswith("Gguf")]
    if packed:  # a future transformers that keeps blocks packed: memlens needs float weights
        raise UserError(
            f"transformers kept {len(packed)} layers of {path.name} quantized instead of dequantizing them."
        )
    tokenizer_error = None
    try:
        with _quiet_gguf_loading():
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    except (ValueError, KeyError, OSError, TypeError, NotImplementedError) as exc:
        tok = None
        if info.get("tokenizer_model"):  # the file has one, which transformers cannot read
            tokenizer_error = _first_line(exc)
    # The weights are plain floats now: save them as an ordinary checkpoint, without the GGUF
    # quantizer that transformers attached (and that refuses to serialize).
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    try:
        with _quiet_gguf_loading():
            model.save_pretrained(out, safe_serialization=True)
            if tok is not None:
                tok.save_pretrained(out)
    except OSError as exc:  # e.g. a full disk: the float weights take 4 bytes per parameter
        raise UserError(
            f"could not write the dequantized weights of {path.name} to {out} "
            f"({exc.strerror or _first_line(exc)})."
        ) from None
    info |= {
        "format": "gguf",
        "file": path.name,
        "sha256": sha256 or sha256_file(path),
        "dequantized_dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "tokenizer_from_gguf": tok is not None,
        **({"tokenizer_error": tokenizer_error} if tokenizer_error else {}),
        "conversion_version": CONVERSION_VERSION,
        # what the conversion wrote, with sizes: a cached copy missing or cutting one is redone
        "files": {f.name: f.stat().st_size for f in sorted(out.iterdir()) if f.is_file()},
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return info


#: A GGUF file at least this large (bytes) gets a note when it is converted (SmolLM2-135M's 93 MB
#: file takes about a minute on a 2-core CPU); tiny test files convert in a moment.
NOTE_BYTES = 10_000_000

#: The version of memlens's GGUF conversion; a cached copy made by another version is converted
#: again (version 1 could cache a file that lacked tensors, with those weights left random).
CONVERSION_VERSION = 2


def _current(directory: Path) -> bool:
    """Whether a cached conversion was made by this version of the conversion."""
    try:
        info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return info.get("conversion_version") == CONVERSION_VERSION


def _intact(directory: Path) -> bool:
    """Whether a cached conversion is whole: every file the conversion wrote is there with its
    size (``files`` in ``memlens_gguf.json``), ``config.json`` parses, the tokenizer the file
    held was kept, and every safetensors file opens and is fully covered by its header."""
    from safetensors import safe_open

    try:
        info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
        sizes = info.get("files") or {}
        for name, size in sizes.items():
            if (directory / name).stat().st_size != size:
                return False
        if not isinstance(json.loads((directory / "config.json").read_text("utf-8")), dict):
            return False
        if info.get("tokenizer_from_gguf") and not (directory / "tokenizer.json").is_file():
            return False
        files = sorted(directory.glob("*.safetensors"))
        for f in files:
            with safe_open(str(f), framework="pt"):
                pass
    except Exception:  # noqa: BLE001 - any failure to read means: not a usable copy
        return False
    return bool(files)


#: A temporary conversion directory older than this (seconds) was left by a conversion that was
#: killed (a closed terminal, SIGTERM: no cleanup runs) and is removed before converting again.
STALE_SECONDS = 24 * 3600


def _remove_stale_conversions(final: Path) -> None:
    """Remove ``final``'s temporary conversion directories that a killed conversion left behind
    (each holds up to the whole float model); a recent one may be another process's, kept."""
    import shutil
    import time

    now = time.time()
    for tmp in final.parent.glob(f".{final.name}.*"):
        try:
            if tmp.is_dir() and now - tmp.stat().st_mtime > STALE_SECONDS:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            pass


def resolve_gguf(
    name_or_path: str | os.PathLike[str], cache: str | os.PathLike[str] | None = None
) -> tuple[Path, dict[str, Any]] | None:
    """The cached float directory for a GGUF checkpoint, converting it on first use.

    Returns ``(directory, info)`` when ``name_or_path`` is a ``.gguf`` file or a directory with
    one (``info`` as in ``memlens_gguf.json`` plus ``path``), else ``None``.
    """
    import shutil

    path = find_gguf(name_or_path)
    if path is None:
        return None
    digest = sha256_file(path)
    final = cache_dir(cache) / "gguf" / digest[:16]
    if final.is_file() or final.is_symlink():  # not a conversion memlens made: replace it
        final.unlink()
    if (final / INFO_FILE).is_file() and not (_current(final) and _intact(final)):
        # a damaged cached copy, or one an older conversion made: convert the file again
        shutil.rmtree(final, ignore_errors=True)
    if not (final / INFO_FILE).is_file():
        _remove_stale_conversions(final)
        tmp = fresh_dir(final)
        try:
            dequantize_gguf(path, tmp, sha256=digest)
            # another process that converted the same file meanwhile (two commands started
            # together) keeps its copy: replacing it would pull files from under its load
            if not ((final / INFO_FILE).is_file() and _current(final) and _intact(final)):
                publish_dir(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    info = json.loads((final / INFO_FILE).read_text(encoding="utf-8"))
    return final, info | {"path": str(path), "cached_as": str(final)}
