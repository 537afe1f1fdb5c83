"""Capacity sweep configuration: model shapes, dataset sizes, training settings and presets.

Configs are :class:`memlens.config.Config` models validated at the door; :func:`load_config` merges
a preset, a TOML/YAML file and keyword overrides and raises :class:`~memlens.errors.UserError` on
bad input.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from memlens.config import Config, merge, nest, read_config_file
from memlens.errors import UserError
from memlens.training import SaturationConfig
from memlens.units import PUBLISHED_ALPHA, memorizable_bits, uniform_entropy_bits

# The grid of Morris et al. 2025's 16 models (their fp32 table is summarized in docs).
PAPER_LAYERS = (1, 2, 4, 8)
PAPER_WIDTHS = (32, 64, 128, 256)


class Shape(Config):
    """One model shape: ``n_layer`` blocks of width ``d_model`` with ``n_head`` heads.

    ``n_head = 0`` derives the head count from the sweep's ``head_dim``; ``steps`` (optional)
    overrides the sweep's step budget for this shape.
    """

    what: ClassVar[str] = "model shape"
    n_layer: int = Field(ge=1)
    d_model: int = Field(ge=1)
    n_head: int = Field(default=0, ge=0)
    steps: int | None = Field(default=None, ge=1)


class TrainSettings(SaturationConfig):
    """The capacity lab's optimizer, schedule and stopping settings (:class:`SaturationConfig`
    with this lab's defaults)."""

    lr: float = Field(default=1e-2, gt=0)
    batch_size: int = Field(default=64, ge=1)
    max_steps: int = Field(default=6000, ge=1)
    decay_frac: float = Field(default=0.3, ge=0, lt=0.8)


class CapacityConfig(Config):
    """A capacity sweep: model shapes × dataset sizes on uniform tokens.

    Dataset sizes are given either explicitly (``n_sequences``, the same list for every shape) or
    as multiples of each shape's *expected* capacity (``capacity_multiples``): N is chosen so that
    the dataset holds ``m * alpha_prior * params`` bits. ``train.precision`` is the training and
    scoring precision; ``time_budget_s`` (optional) caps each shape's wall time.
    """

    what: ClassVar[str] = "capacity config"

    preset: str = "custom"
    vocab_size: int = Field(default=2048)
    seq_len: int = Field(default=64)
    shapes: list[Shape]
    capacity_multiples: list[float] | None = None
    n_sequences: list[int] | None = None
    alpha_prior: float = Field(default=PUBLISHED_ALPHA, gt=0)
    steps_reference_params: int | None = Field(default=None, ge=1)
    steps_exponent: float = Field(default=1.0, ge=0, le=2)
    head_dim: int = Field(default=0, ge=0)
    train: TrainSettings = TrainSettings()
    seed: int = 0
    device: str = "auto"
    time_budget_s: float | None = Field(default=None, gt=0)

    @field_validator("vocab_size")
    @classmethod
    def _v(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"vocab size must be at least 2, got {v}")
        return v

    @field_validator("seq_len")
    @classmethod
    def _s(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"sequence length must be at least 2, got {v}")
        return v

    @model_validator(mode="after")
    def _sizes(self) -> CapacityConfig:
        if not self.shapes:
            raise ValueError("at least one model shape is needed")
        if (self.capacity_multiples is None) == (self.n_sequences is None):
            raise ValueError("give exactly one of capacity_multiples or n_sequences")
        if self.n_sequences is not None and (not self.n_sequences or min(self.n_sequences) < 1):
            raise ValueError("every dataset size N must be at least 1")
        if self.capacity_multiples is not None and (
            not self.capacity_multiples or min(self.capacity_multiples) <= 0
        ):
            raise ValueError("capacity multiples must be positive")
        for s in self.shapes:
            if s.n_head == 0 and self.head_dim and s.d_model % self.head_dim:
                raise ValueError(
                    f"d_model {s.d_model} is not divisible by head_dim {self.head_dim}"
                )
            head = self.n_head_for(s)
            if s.d_model % head:
                raise ValueError(f"d_model {s.d_model} is not divisible by n_head {s.n_head}")
        return self

    @property
    def precision(self) -> str:
        return self.train.precision

    def n_head_for(self, shape: Shape) -> int:
        """Heads of a shape: its own ``n_head``, else ``d_model / head_dim``, else GPTConfig's
        automatic choice (head size 16 when ``d_model`` allows it, otherwise one head)."""
        if shape.n_head:
            return shape.n_head
        if self.head_dim:
            return max(1, shape.d_model // self.head_dim)
        return max(1, shape.d_model // 16) if shape.d_model % 16 == 0 else 1

    def gpt_config(self, shape: Shape) -> Any:
        """The :class:`memlens.models.gpt.GPTConfig` of one shape of this sweep."""
        from memlens.models.gpt import GPTConfig

        return GPTConfig(
            self.vocab_size, self.seq_len, shape.n_layer, shape.d_model, self.n_head_for(shape)
        )

    def steps_for_shape(self, shape: Shape) -> int:
        """Step budget of one shape: its own ``steps``, else :meth:`steps_for` its parameters."""
        if shape.steps is not None:
            return shape.steps
        return self.steps_for(self.gpt_config(shape).n_params)

    def steps_for(self, params: int) -> int:
        """Step budget for a shape: ``train.max_steps``, or, with ``steps_reference_params`` set,
        ``max_steps * (reference / params) ** steps_exponent`` (never fewer than ``max_steps``):
        smaller shapes are cheaper per step, so they get more steps (exponent 1 equalizes the
        ``6 * params`` FLOPs per token; on a CPU the softmax over V does not shrink with the model,
        so 0.5 is closer to equal time). A shape's own ``steps`` overrides this (the quick preset
        sets each shape's budget from its measured step time)."""
        if self.steps_reference_params is None:
            return self.train.max_steps
        ratio = self.steps_reference_params / params
        scaled = self.train.max_steps * ratio**self.steps_exponent
        return max(self.train.max_steps, int(round(scaled / 100.0)) * 100)

    def train_config(self, shape: Shape) -> TrainSettings:
        """The training settings of one shape (its own step budget)."""
        return self.train.model_copy(update={"max_steps": self.steps_for_shape(shape)})

    def bits_per_sequence(self) -> float:
        """``S * log2 V``: the entropy of one uniform sequence, in bits."""
        return uniform_entropy_bits(self.seq_len, self.vocab_size)

    def memorizable_bits_per_sequence(self) -> float:
        """``(S - 1) * log2 V``: the most a model can memorize of one sequence (the first token is
        coded uniformly and never memorized), in bits."""
        return memorizable_bits(self.seq_len, self.vocab_size)

    def sizes_for(self, params: int) -> list[int]:
        """Dataset sizes (sequences) for a model with ``params`` parameters."""
        if self.n_sequences is not None:
            return list(self.n_sequences)
        h = self.bits_per_sequence()
        return [
            max(1, math.ceil(m * self.alpha_prior * params / h))
            for m in self.capacity_multiples or []
        ]


def _preset(name: str) -> dict[str, Any]:
    if name == "smoke":
        return {
            "preset": "smoke",
            "vocab_size": 64,
            "seq_len": 16,
            "head_dim": 4,
            "shapes": [{"n_layer": 1, "d_model": 16}, {"n_layer": 1, "d_model": 32}],
            "capacity_multiples": [0.6, 1.2],
            "train": {"max_steps": 900, "min_steps": 300, "eval_every": 100, "warmup_steps": 50,
                      "lr": 1e-2, "batch_size": 32},
        }  # fmt: skip
    if name == "quick":
        # Four shapes at the published S = 64 (V = 512 keeps the softmax cheap on a CPU), head size
        # 4 (more heads store more bits at the same parameter count; README "the recipe"), and a
        # step budget per shape of about 3.5 CPU-minutes: about 8 minutes on two CPU cores (one
        # worker process per core).
        return {
            "preset": "quick",
            "vocab_size": 512,
            "seq_len": 64,
            "head_dim": 4,
            "shapes": [
                # listed so that two workers finish together: (16, 32) and (24, L2 24)
                {"n_layer": 1, "d_model": 16, "steps": 5400},
                {"n_layer": 1, "d_model": 24, "steps": 4400},
                {"n_layer": 1, "d_model": 32, "steps": 4000},
                {"n_layer": 2, "d_model": 24, "steps": 2500},
            ],
            "capacity_multiples": [1.0, 1.3],
            "train": {
                "max_steps": 3000,
                "eval_every": 100,
                "lr": 8e-2,
                "batch_size": 64,
                "warmup_steps": 300,
                "decay_frac": 0.6,
            },
        }
    if name == "paper":
        return {
            "preset": "paper",
            "vocab_size": 2048,
            "seq_len": 64,
            "shapes": [{"n_layer": L, "d_model": d} for L in PAPER_LAYERS for d in PAPER_WIDTHS],
            "capacity_multiples": [0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0],
            "train": {"max_steps": 1_000_000, "min_steps": 20_000, "batch_size": 2048, "lr": 1e-3,
                      "eval_every": 2000, "warmup_steps": 1000, "decay_frac": 0.1},
        }  # fmt: skip
    raise UserError(f"unknown preset {name!r}; choose smoke, quick or paper.")


PRESETS = ("smoke", "quick", "paper")


def load_config(
    preset: str | None = "quick", config_file: str | Path | None = None, **overrides: Any
) -> CapacityConfig:
    """Build a :class:`CapacityConfig`: a preset < a TOML/YAML file < keyword overrides.

    Overrides named like a training setting (``lr``, ``max_steps``, ``precision`` ...) go to
    ``train``; ``None`` means "not given". A file or override giving ``n_sequences`` replaces the
    preset's ``capacity_multiples``; a ``max_steps`` override replaces per-shape step budgets.
    Raises :class:`UserError` on bad input.
    """
    data: dict[str, Any] = _preset(preset) if preset else {}
    if config_file is not None:
        loaded = read_config_file(config_file)
        if "n_sequences" in loaded:
            data.pop("capacity_multiples", None)
        if "capacity_multiples" in loaded:
            data.pop("n_sequences", None)
        data = merge(data, loaded)
        data.setdefault("preset", "custom")
    overrides = nest(overrides, "train", TrainSettings.model_fields)
    if "max_steps" in overrides.get("train", {}) and isinstance(data.get("shapes"), list):
        # one budget for every shape, as asked
        data["shapes"] = [
            {**s, "steps": None} if isinstance(s, dict) else s for s in data["shapes"]
        ]
    if overrides.get("n_sequences") is not None:
        data.pop("capacity_multiples", None)
    return CapacityConfig(**merge(data, overrides))
