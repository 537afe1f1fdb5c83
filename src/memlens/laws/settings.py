"""Configs and presets of the two laws experiments (membership-inference scaling, double descent)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from memlens.capacity import Shape
from memlens.capacity import TrainSettings as _CapacityTrainSettings
from memlens.config import Config, build_config, nest
from memlens.errors import UserError
from memlens.units import PUBLISHED_ALPHA, capacity_bits, uniform_entropy_bits


class TrainSettings(_CapacityTrainSettings):
    """The capacity lab's optimizer and stopping settings, with this module's defaults."""

    max_steps: int = Field(default=2000, ge=1)
    warmup_steps: int = Field(default=50, ge=0)
    decay_frac: float = Field(default=0.0, ge=0, lt=0.8)
    eval_every: int = Field(default=500, ge=1)


class _Common(Config):
    """Settings shared by the two experiments: the data's V and S, alpha, training, cells."""

    preset: str = "custom"
    vocab_size: int = Field(default=256, ge=2)
    seq_len: int = Field(default=32, ge=2)
    alpha: float = Field(default=PUBLISHED_ALPHA, gt=0)
    train: TrainSettings = TrainSettings()
    models_per_cell: int = Field(default=4, ge=1)
    seed: int = 0
    device: str = "cpu"


class MiaExperimentConfig(_Common):
    """Shapes × dataset sizes on uniform tokens for the MIA scaling law.

    ``capacity_multiples`` sets each dataset's size relative to the shape's nominal capacity:
    ``N = ceil(m * alpha * params / (S * log2 V))`` sequences, so ``m`` is the capacity ratio
    (dataset bits / capacity bits). All sizes of one shape train as stacks of up to
    ``models_per_cell`` models (a cell each).
    """

    what: ClassVar[str] = "MIA experiment config"
    shapes: list[Shape]
    capacity_multiples: list[float]

    @model_validator(mode="after")
    def _check(self) -> MiaExperimentConfig:
        if not self.shapes:
            raise ValueError("at least one model shape is needed")
        if not self.capacity_multiples or min(self.capacity_multiples) <= 0:
            raise ValueError("capacity multiples must be positive")
        return self

    def bits_per_sequence(self) -> float:
        return uniform_entropy_bits(self.seq_len, self.vocab_size)

    def sizes_for(self, params: int) -> list[int]:
        h = self.bits_per_sequence()
        cap = capacity_bits(params, self.alpha)
        return [max(1, math.ceil(m * cap / h)) for m in self.capacity_multiples]


class SourceSettings(Config):
    """A seeded first-order Markov source (:class:`memlens.data.synthetic.MarkovSource`)."""

    what: ClassVar[str] = "source settings"
    branching: int = Field(default=4, ge=1)
    concentration: float = Field(default=1.0, gt=0)
    seed: int = 0


class DoubleDescentConfig(_Common):
    """One shape, dataset sizes at the given capacity ratios, on a Markov source."""

    what: ClassVar[str] = "double-descent config"
    shape: Shape
    capacity_ratios: list[float]
    source: SourceSettings = SourceSettings()
    n_test: int = Field(default=2000, ge=10)

    @model_validator(mode="after")
    def _check(self) -> DoubleDescentConfig:
        if not self.capacity_ratios or min(self.capacity_ratios) <= 0:
            raise ValueError("capacity ratios must be positive")
        if self.source.branching > self.vocab_size:
            raise ValueError("source branching must not exceed the vocab size")
        return self


def _mia_preset(name: str) -> dict[str, Any]:
    # quick: head size 4 and a linear decay over the last 60% of the steps, as in the capacity
    # lab (at ratio 1 the models store 2.65-2.93 bits/param instead of 2.24-2.28 in the same
    # time); lr 3e-2 rather than the capacity lab's 8e-2, which memorized less at ratios >= 64.
    if name == "smoke":
        return {
            "preset": "smoke",
            "vocab_size": 64,
            "seq_len": 16,
            "shapes": [{"n_layer": 1, "d_model": 8}],
            "capacity_multiples": [1.0, 16.0, 64.0, 200.0],
            "models_per_cell": 2,
            "train": {"max_steps": 300, "min_steps": 100, "eval_every": 150, "warmup_steps": 20,
                      "lr": 1e-2, "batch_size": 32},
        }  # fmt: skip
    if name == "quick":
        return {
            "preset": "quick",
            "vocab_size": 256,
            "seq_len": 32,
            "shapes": [{"n_layer": 1, "d_model": 8, "n_head": 2},
                       {"n_layer": 1, "d_model": 16, "n_head": 4}],
            "capacity_multiples": [1.0, 4.0, 16.0, 64.0, 256.0],
            "models_per_cell": 2,
            "train": {"max_steps": 2000, "min_steps": 2000, "eval_every": 500, "warmup_steps": 300,
                      "lr": 3e-2, "decay_frac": 0.6, "batch_size": 64},
        }  # fmt: skip
    if name == "full":
        return {
            "preset": "full",
            "vocab_size": 512,
            "seq_len": 64,
            "shapes": [{"n_layer": L, "d_model": d} for L in (1, 2) for d in (16, 32, 64)],
            "capacity_multiples": [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            "train": {"max_steps": 20000, "min_steps": 2000, "eval_every": 1000, "lr": 3e-3,
                      "batch_size": 128, "decay_frac": 0.1},
        }  # fmt: skip
    raise UserError(f"unknown preset {name!r}; choose smoke, quick or full.")


def _dd_preset(name: str) -> dict[str, Any]:
    # quick uses the capacity lab's recipe (head size 4, Adam at 8e-2, linear decay over the last
    # 60% of the steps): these models then store 2.2 bits/param instead of 1.6 in the same time.
    # A noisy chain (16 of 32 successors, 3.4 bits/token of 5): much to memorize, a little to
    # generalize; low-noise chains (branching 4) gave a monotone held-out loss in our trials.
    ratios = [0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 3.0, 10.0]
    if name == "smoke":
        return {
            "preset": "smoke",
            "vocab_size": 16,
            "seq_len": 16,
            "shape": {"n_layer": 1, "d_model": 8},
            "source": {"branching": 8},
            "capacity_ratios": [0.1, 1.0, 10.0],
            "n_test": 200,
            "train": {"max_steps": 300, "min_steps": 300, "eval_every": 150, "warmup_steps": 20,
                      "lr": 1e-2, "batch_size": 32},
        }  # fmt: skip
    if name == "quick":
        return {
            "preset": "quick",
            "vocab_size": 32,
            "seq_len": 32,
            "shape": {"n_layer": 1, "d_model": 16, "n_head": 4},
            "source": {"branching": 16},
            "capacity_ratios": ratios,
            "models_per_cell": 5,
            "train": {"max_steps": 2000, "min_steps": 2000, "eval_every": 500, "warmup_steps": 300,
                      "lr": 8e-2, "decay_frac": 0.6, "batch_size": 64},
        }  # fmt: skip
    if name == "full":
        return {
            "preset": "full",
            "vocab_size": 64,
            "seq_len": 64,
            "shape": {"n_layer": 2, "d_model": 32},
            "source": {"branching": 32},
            "capacity_ratios": [0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0],
            "n_test": 5000,
            "train": {"max_steps": 20000, "min_steps": 20000, "eval_every": 1000, "lr": 3e-3,
                      "batch_size": 128},
        }  # fmt: skip
    raise UserError(f"unknown preset {name!r}; choose smoke, quick or full.")


PRESETS = ("smoke", "quick", "full")


def _build(
    cls: type[_Common], preset: dict[str, Any], config_file: str | Path | None, overrides: Any
) -> Any:
    return build_config(
        cls, preset, config_file, **nest(overrides, "train", TrainSettings.model_fields)
    )


def mia_config(
    preset: str = "quick", config_file: str | Path | None = None, **overrides: Any
) -> MiaExperimentConfig:
    """A :class:`MiaExperimentConfig`: a preset (smoke, quick, full) < a TOML/YAML file <
    overrides (training settings such as ``max_steps`` go to ``train``; ``None``: not given)."""
    return _build(MiaExperimentConfig, _mia_preset(preset), config_file, overrides)


def double_descent_config(
    preset: str = "quick", config_file: str | Path | None = None, **overrides: Any
) -> DoubleDescentConfig:
    """A :class:`DoubleDescentConfig`: a preset (smoke, quick, full) < a TOML/YAML file <
    overrides (training settings such as ``max_steps`` go to ``train``; ``None``: not given)."""
    return _build(DoubleDescentConfig, _dd_preset(preset), config_file, overrides)
