"""What :func:`memlens.models.hf.load_causal_lm` does around ``from_pretrained``: turn a model
name into something transformers can load (a registry name, a GGUF file), say in one sentence why
a checkpoint cannot be loaded, and keep transformers' own console output out of memlens's."""

from __future__ import annotations

import contextlib
import os
import pickle
from pathlib import Path
from typing import Any

from memlens.errors import UserError


def resolve_source(
    name_or_path: str | os.PathLike[str],
) -> tuple[str | os.PathLike[str], dict[str, Any] | None]:
    """``(what to load, checkpoint description)``.

    A fetched registry name (``smollm2-135m``, see :mod:`memlens.models.zoo`) becomes its cached
    file; a GGUF file or a directory holding one becomes its cached float directory
    (:func:`memlens.models.gguf.resolve_gguf`), described by the returned dict. Anything else is
    returned unchanged with ``None``.
    """
    from memlens.models.gguf import resolve_gguf
    from memlens.models.zoo import resolve_model_name

    registry = resolve_model_name(str(name_or_path))
    found = resolve_gguf(registry if registry is not None else name_or_path)
    if found is None:
        return name_or_path, None
    return found


def checkpoint_stamp(name_or_path: str | os.PathLike[str]) -> str | None:
    """16 hex digits of SHA-256 over the names, sizes and modification times of a local
    checkpoint's files (the file itself, or every file directly in its directory; a fetched
    registry name stands for its cached file); ``None`` for anything not on disk (a hub name).

    Reading the files' metadata costs nothing, unlike hashing gigabytes of weights; the stamp
    changes whenever the checkpoint is saved again, so a run directory's stored scores are not
    reused for a model that was retrained in place under the same name.
    """
    import hashlib

    from memlens.models.zoo import MODELS, is_cached, model_file

    name = str(name_or_path)
    path = Path(name).expanduser()
    if not path.exists() and name in MODELS and is_cached(name):
        path = model_file(name)
    try:
        files = [path] if path.is_file() else sorted(q for q in path.iterdir() if q.is_file())
        h = hashlib.sha256()
        for f in files:
            st = f.stat()
            h.update(f"{f.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return h.hexdigest()[:16]


def load_error(path: Path | str, exc: BaseException) -> UserError | None:
    """One sentence for a checkpoint ``from_pretrained`` could not read, or ``None`` when ``exc``
    is not about the checkpoint's files."""
    from safetensors import SafetensorError

    text = str(exc)
    if isinstance(exc, SafetensorError) or "safetensors" in type(exc).__module__:
        return UserError(
            f"the safetensors weights in {path} are damaged or incomplete ({_first_line(exc)}); "
            "save or download the checkpoint again."
        )
    if isinstance(exc, pickle.UnpicklingError) or "Weights only load failed" in text:
        return UserError(
            f"{path} holds a pickled PyTorch checkpoint with objects other than tensors, which "
            "memlens does not unpickle (it could run code); convert it to safetensors where it "
            "came from (save_pretrained(..., safe_serialization=True))."
        )
    if _raised_in(exc, os.path.join("torch", "serialization.py")):
        return UserError(
            f"the PyTorch weights (.bin) in {path} are damaged or incomplete; save or download "
            "the checkpoint again."
        )
    return None


def _raised_in(exc: BaseException, filename: str) -> bool:
    """Whether ``exc`` was raised inside a module whose file path ends with ``filename``."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(filename):
            return True
        tb = tb.tb_next
    return False


def missing_weights_error(path: Path | str, info: dict[str, Any]) -> UserError | None:
    """A sentence when ``from_pretrained``'s loading info shows weights the checkpoint lacks
    (they would be random) or whose shapes differ; ``None`` when everything was loaded."""
    missing = list(info.get("missing_keys") or [])
    mismatched = list(info.get("mismatched_keys") or [])
    if mismatched:
        key = mismatched[0][0] if isinstance(mismatched[0], (tuple, list)) else mismatched[0]
        return UserError(
            f"the weights in {path} do not have the shapes its config.json describes ({len(mismatched)} "
            f"tensors, e.g. {key})."
        )
    if missing:
        return UserError(
            f"the weights in {path} lack {len(missing)} tensors its config.json describes "
            f"(e.g. {missing[0]}), which would be left random."
        )
    return None


@contextlib.contextmanager
def quiet_transformers():
    """Errors only from transformers' logger, and no deprecation notices from transformers or
    peft, inside the block (no load reports, no advice): memlens turns what matters into its own
    sentence."""
    import warnings

    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            for category in (FutureWarning, DeprecationWarning):
                warnings.filterwarnings(
                    "ignore", category=category, module=r"(transformers|peft)\b"
                )
            yield
    finally:
        hf_logging.set_verbosity(before)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].rstrip(".") if lines else type(exc).__name__
