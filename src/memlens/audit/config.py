"""Settings of one audit (:class:`AuditConfig`), validated at the door and saved in the manifest."""

from __future__ import annotations

from typing import ClassVar

from pydantic import ConfigDict, Field, model_validator

from memlens.config import Config
from memlens.units import PUBLISHED_ALPHA


class AuditConfig(Config):
    """Settings of one audit (saved in the run's manifest).

    ``model`` and ``reference`` are anything :func:`memlens.models.hf.load_causal_lm` accepts
    (directories, GGUF files, fetched registry names, hub names); ``adapter`` a PEFT adapter over
    ``model`` (merged at load), in which case ``reference`` defaults to the bare ``model``;
    ``train`` and ``heldout`` any source of :func:`memlens.data.text.read_texts`. Lengths are in
    tokens of the target's tokenizer; ``alpha`` in bits per parameter; ``top_k`` samples are
    listed in ``audit.json``.
    """

    model_config = ConfigDict(frozen=True)
    what: ClassVar[str] = "audit config"

    model: str
    reference: str | None = None
    adapter: str | None = None
    train: str
    heldout: str
    tokenizer: str | None = None
    reference_tokenizer: str | None = None
    text_column: str = "text"
    split: str | None = None
    heldout_split: str | None = None
    seq_len: int | None = Field(default=None, ge=1)
    dedup: bool = True
    prefix: int = Field(32, ge=1)
    suffix: int = Field(32, ge=1)
    batch_size: int = Field(32, ge=1)
    window_stride: int | None = Field(None, ge=1)
    dtype: str = "auto"
    device: str = "auto"
    alpha: float = Field(PUBLISHED_ALPHA, gt=0, allow_inf_nan=False)
    top_k: int = Field(20, ge=0)

    @model_validator(mode="after")
    def _reference_or_adapter(self) -> AuditConfig:
        if self.reference is None and self.adapter is None:
            raise ValueError(
                "the audit needs a `reference` model (it defaults to the base `model` only when "
                "an `adapter` is given)"
            )
        return self
