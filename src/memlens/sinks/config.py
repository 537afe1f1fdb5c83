"""The MemSinks experiment's settings (:class:`SinksConfig`) and presets."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, model_validator

from memlens.config import Config
from memlens.errors import UserError


class SinksConfig(Config):
    """Everything that defines a MemSinks experiment (saved in the run's manifest).

    Data: a :class:`~memlens.data.synthetic.MarkovSource` (``vocab_size``, ``branching``,
    ``concentration``, ``source_seed``) emitting sequences of ``seq_len`` tokens, or the user's
    texts (``train_path``; byte-level tokens unless ``tokenizer`` is given) cut into documents of
    at most ``seq_len`` tokens. ``n_repeated`` sequences appear ``repetitions`` times each; the
    rest of the ``steps * batch_size`` training rows are unrepeated sequences (synthetic), or
    every remaining document once (text). ``n_heldout`` fresh sequences measure validation loss.
    Model: memlens GPT with ``n_layer`` blocks of width ``d_model`` (MLP width ``4 * d_model``).
    Training: AdamW (weight decay on matrices), warm-up then cosine decay to ``min_lr_frac * lr``
    (:class:`memlens.sinks.train.SinkTrainConfig`). Sinks: ``p_gen``, ``p_mem`` (defaults 0.7 and
    0.3), ``drop_scale`` (``None`` for ``(p_gen + p_mem)/p_gen``).
    """

    what: ClassVar[str] = "sinks config"

    preset: str = "custom"
    vocab_size: int = Field(default=128, ge=2)
    branching: int = Field(default=4, ge=1)
    concentration: float = Field(default=1.0, gt=0)
    source_seed: int = Field(default=0, ge=0)
    seq_len: int = Field(default=64, ge=4)
    n_repeated: int = Field(default=16, ge=1)
    repetitions: int = Field(default=256, ge=2)
    n_heldout: int = Field(default=256, ge=2)
    n_layer: int = Field(default=2, ge=1)
    d_model: int = Field(default=64, ge=1)
    steps: int = Field(default=800, ge=1)
    batch_size: int = Field(default=32, ge=1)
    lr: float = Field(default=1e-2, gt=0)
    weight_decay: float = Field(default=0.1, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    min_lr_frac: float = Field(default=0.1, ge=0, le=1)
    p_gen: float = 0.7
    p_mem: float = 0.3
    drop_scale: float | None = None
    eval_every: int = Field(default=100, ge=1)
    extraction_prefix: int | None = None
    localize_ks: list[int] = [4, 16, 64]
    localize_n: int = Field(default=16, ge=1)
    localize_random: int = Field(default=3, ge=1)
    seed: int = Field(default=0, ge=0)
    train_path: str | None = None
    tokenizer: str | None = None
    text_column: str = "text"

    @model_validator(mode="after")
    def _consistent(self) -> SinksConfig:
        if any(k < 1 for k in self.localize_ks):
            raise ValueError("localization k values must be at least 1")
        if (
            self.train_path is None
            and self.steps * self.batch_size <= self.n_repeated * self.repetitions
        ):
            raise ValueError(
                f"{self.n_repeated} sequences x {self.repetitions} repetitions fill all "
                f"{self.steps} x {self.batch_size} training rows; use more `steps` or fewer "
                "`repetitions`"
            )
        if self.tokenizer is not None and self.train_path is None:
            raise ValueError("`tokenizer` only applies together with `train_path`")
        if not 1 <= self.prefix <= self.seq_len - 2:
            raise ValueError(
                f"the extraction `prefix` must be between 1 and seq_len - 2 = {self.seq_len - 2}, "
                f"got {self.prefix}"
            )
        from memlens.sinks.masks import SinkConfig

        try:
            SinkConfig(self.p_gen, self.p_mem, drop_scale=self.drop_scale).split(4 * self.d_model)
        except UserError as exc:
            raise ValueError(str(exc).rstrip(".")) from None
        return self

    @property
    def prefix(self) -> int:
        """Extraction prompt length in tokens (default: half the sequence)."""
        return self.extraction_prefix if self.extraction_prefix is not None else self.seq_len // 2

    def train_config(self, steps: int) -> Any:
        """The :class:`memlens.sinks.train.SinkTrainConfig` of every arm (``steps`` optimizer
        steps; the warm-up is at most a tenth of them)."""
        from memlens.sinks.train import SinkTrainConfig

        return SinkTrainConfig(
            max_steps=steps, batch_size=self.batch_size, lr=self.lr,
            weight_decay=self.weight_decay, warmup_steps=min(self.warmup_steps, max(1, steps // 10)),
            final_lr_frac=self.min_lr_frac,
        )  # fmt: skip


PRESETS: dict[str, dict[str, Any]] = {
    # For tests and a first look: about 20 seconds on one contended CPU core.
    "smoke": {
        "preset": "smoke",
        "vocab_size": 32,
        "branching": 3,
        "seq_len": 24,
        "n_repeated": 8,
        "repetitions": 24,
        "n_heldout": 64,
        "n_layer": 1,
        "d_model": 32,
        "steps": 120,
        "batch_size": 16,
        "lr": 1e-2,
        "eval_every": 40,
        "localize_ks": [2, 8],
        "localize_n": 8,
        "localize_random": 2,
    },
    # The README experiment: a few minutes on one CPU core.
    "quick": {"preset": "quick"},
}


def get_preset(name: str) -> SinksConfig:
    """The preset called ``name`` (``smoke`` or ``quick``)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}'; use one of {', '.join(PRESETS)}.")
    return SinksConfig(**PRESETS[name])


def with_overrides(cfg: SinksConfig, **overrides: Any) -> SinksConfig:
    """``cfg`` with the non-``None`` overrides applied (validated again)."""
    return SinksConfig(
        **{**cfg.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
    )
