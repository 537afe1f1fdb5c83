"""The settings of a privacy audit (``memlens dp-audit``), validated at the door.

:class:`DPAuditConfig` is a :class:`memlens.config.Config`: a bad value raises
:class:`~memlens.errors.UserError` with one sentence naming the field; the whole config is saved
in the run's manifest. Units: ε in nats, δ a probability.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from memlens.config import Config

if TYPE_CHECKING:
    from memlens.models.finetune import LoraSettings


class DPAuditConfig(Config):
    """Everything that defines a privacy audit (saved in the run's manifest).

    Model: a memlens GPT trained from scratch (``n_layer`` blocks of width ``d_model``,
    context ``seq_len``) unless ``model`` names a local Hugging Face causal LM to fine-tune.
    Data: ``train`` (the user's texts) or the built-in ``source`` (``markov`` or ``uniform``
    tokens over ``vocab_size`` ids, ``n_train`` rows). Canaries: ``canaries`` random strings of
    ``canary_length`` tokens, or the texts of ``canary_file``; ``candidates`` random strings (or
    the texts of ``candidate_file``) for exposure. Arms: ``dp_epsilons``, one training per entry
    (``None`` = without DP), all at ``dp_delta`` with clipping norm ``max_grad_norm``. Audit:
    ``confidence``, ``selection`` and the guess counts ``k_in``, ``k_out``; the membership
    ``score``. Run: ``seed``, ``device``, torch CPU ``threads`` (``0`` or ``None``: torch's
    default) and ``batch_size_scoring``. Training: ``epochs`` of ``batch_size`` (expected) rows,
    Adam at ``lr`` after ``warmup_steps``, per-sample gradients in chunks of
    ``physical_batch_size`` rows; ``accountant`` of Opacus (``prv`` or ``rdp``). LoRA (Yu et al.
    2022, "Differentially Private Fine-tuning of Language Models", arXiv:2110.06500): with
    ``lora_r`` > 0 a Hugging Face model is fine-tuned through a LoRA adapter of rank ``lora_r``
    (``lora_alpha``, ``lora_target_modules``, ``lora_last_layers``; see :attr:`lora`), the only
    weights trained, clipped and noised; ``0`` fine-tunes every weight.
    """

    model_config = ConfigDict(frozen=True)
    what: ClassVar[str] = "dp-audit config"

    # model
    model: str | None = None
    n_layer: int = Field(default=2, ge=1)
    d_model: int = Field(default=64, ge=4)
    n_head: int = Field(default=0, ge=0)
    # data
    train: str | None = None
    text_column: str = "text"
    tokenizer: str | None = None
    source: Literal["markov", "uniform"] = "markov"
    vocab_size: int = Field(default=64, ge=2)
    branching: int = Field(default=4, ge=1)
    n_train: int | None = Field(default=2000, ge=1)
    seq_len: int = Field(default=32, ge=3)
    # canaries
    canaries: int = 1000
    canary_length: int = Field(default=16, ge=2)
    canary_file: str | None = None
    candidates: int = Field(default=1000, ge=0)
    candidate_file: str | None = None
    # training
    epochs: int = Field(default=20, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    physical_batch_size: int | None = Field(default=None, ge=1)
    # LoRA (a Hugging Face model only): train, clip and noise only the adapter
    lora_r: int = 0
    lora_alpha: int | None = Field(default=None, ge=1)
    lora_target_modules: tuple[str, ...] | None = None
    lora_last_layers: int | None = Field(default=None, ge=1)
    # DP-SGD arms
    dp_epsilons: tuple[float | None, ...] = (None,)
    dp_delta: float = 1e-5
    max_grad_norm: float = Field(default=1.0, gt=0)
    accountant: Literal["prv", "rdp"] = "prv"
    # audit
    confidence: float = 0.95
    selection: Literal["fixed", "split", "bonferroni"] = "fixed"
    k_in: int | None = Field(default=None, ge=0)
    k_out: int | None = Field(default=None, ge=0)
    score: Literal["loss", "loss_diff"] = "loss"
    # run
    seed: int = 0
    device: str = "auto"
    threads: int | None = Field(default=1, ge=0)
    batch_size_scoring: int = Field(default=256, ge=1)

    @field_validator("canaries")
    @classmethod
    def _m(cls, v: int) -> int:
        if v < 2:
            raise ValueError(f"an audit needs at least 2 canaries, got {v}")
        return v

    @field_validator("lora_r")
    @classmethod
    def _r(cls, v: int) -> int:
        if v < 0:
            raise ValueError(f"a LoRA rank must be 0 (full fine-tuning) or positive, got {v}")
        return v

    @field_validator("lora_target_modules")
    @classmethod
    def _targets(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if v is not None:
            v = tuple(m.strip() for m in v if m.strip())
            if not v:
                raise ValueError("LoRA target modules are empty; name at least one module")
        return v

    @field_validator("dp_delta", "confidence")
    @classmethod
    def _probability(cls, v: float, info: ValidationInfo) -> float:
        if not 0.0 < v < 1.0:
            name = "delta" if info.field_name == "dp_delta" else info.field_name
            raise ValueError(f"{name} must be strictly between 0 and 1, got {v}")
        return v

    @field_validator("dp_epsilons")
    @classmethod
    def _eps(cls, v: tuple[float | None, ...]) -> tuple[float | None, ...]:
        if not v:
            raise ValueError(
                "give at least one arm (a DP epsilon, or none for training without DP)"
            )
        for e in v:
            if e is not None and not (e > 0 and math.isfinite(e)):
                raise ValueError(f"a DP epsilon must be a positive number, got {e}")
        if len(set(v)) < len(v):
            raise ValueError("the same DP epsilon is listed twice")
        names: dict[str, float | None] = {}
        for e in v:  # arms are named by ε to 6 digits; two arms must not share a name
            other = names.setdefault(arm_name(e), e)
            if other != e:
                raise ValueError(
                    f"DP epsilons {other:g} and {e!r} agree to 6 digits (both arm "
                    f"{arm_name(e)}); list epsilons that differ in their first 6 digits"
                )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DPAuditConfig:
        if self.model is None and self.train is None and self.canary_file is not None:
            raise ValueError(
                "canary texts need text training data and a tokenizer; give training texts "
                "(`train`) too"
            )
        if self.candidate_file is not None and self.canary_file is None:
            raise ValueError("a `candidate_file` goes with a `canary_file`")
        if self.model is not None and self.tokenizer is not None:
            raise ValueError("a Hugging Face model uses its own tokenizer; do not give `tokenizer`")
        if self.lora_r > 0 and self.model is None:
            raise ValueError(
                "LoRA adapts a Hugging Face model (`model`); a memlens GPT trains all its weights"
            )
        lora_extras = (self.lora_alpha, self.lora_target_modules, self.lora_last_layers)
        if self.lora_r == 0 and any(x is not None for x in lora_extras):
            raise ValueError(
                "LoRA settings (`lora_alpha`, `lora_target_modules`, `lora_last_layers`) need a "
                "LoRA rank (`lora_r` of 1 or more)"
            )
        if self.canary_file is None and self.canary_length > self.seq_len - 1:
            raise ValueError(
                f"canaries of {self.canary_length} tokens are longer than the context allows "
                f"(`seq_len` {self.seq_len}, one position for the first token or BOS); use a "
                f"shorter `canary_length` or a longer `seq_len`"
            )
        if self.selection != "fixed" and (self.k_in is not None or self.k_out is not None):
            raise ValueError(
                f"guess counts (`k_in`, `k_out`) are chosen by the {self.selection} selection; "
                "give them only with fixed"
            )
        if self.k_in == 0 and self.k_out == 0:
            raise ValueError(
                "with no guesses IN and none OUT the audit can only report 0; guess at least one"
            )
        if self.canary_file is None:  # a canary file's count is known once it is read
            self.check_canary_count(self.canaries)
        if self.canary_file is None and 0 < self.candidates < 10:
            raise ValueError(
                f"exposure needs at least 10 random candidates (or 0 for none), got "
                f"{self.candidates}"
            )
        return self

    def check_canary_count(self, m: int) -> None:
        """Raise :class:`~memlens.errors.UserError` unless ``m`` canaries suit the guess counts
        and the selection (checked before training, once ``m`` is known)."""
        from memlens.privacy.bound import check_guess_counts, split_sizes

        if self.selection == "fixed":
            check_guess_counts(m, *self.guess_counts(m))  # type: ignore[arg-type]
        elif self.selection == "split":
            split_sizes(m)

    @property
    def lora(self) -> LoraSettings | None:
        """The LoRA settings of every arm (``None``: full fine-tuning): rank ``lora_r``, alpha
        ``lora_alpha`` (default ``2 r``), ``lora_target_modules`` (default every linear layer but
        the output head) in the ``lora_last_layers`` last blocks (default all), initialized
        under ``seed``. Only ``r``, ``alpha``, the targets, the layers and the seed apply: the
        optimizer, epochs and batches are the audit's own."""
        if self.lora_r == 0:
            return None
        from memlens.models.finetune import LoraSettings

        return LoraSettings(
            r=self.lora_r,
            alpha=2 * self.lora_r if self.lora_alpha is None else self.lora_alpha,
            target_modules=self.lora_target_modules or "all-linear",
            last_layers=self.lora_last_layers,
            seed=self.seed,
        )

    @property
    def arms(self) -> list[tuple[str, float | None]]:
        """``(name, target ε)`` per arm, the arm without DP first."""
        out = [(arm_name(e), e) for e in self.dp_epsilons]
        return sorted(out, key=lambda a: (a[1] is not None, a[1] or 0.0))

    def guess_counts(self, m: int) -> tuple[int | None, int | None]:
        """k₊, k₋ for the fixed selection with ``m`` canaries (default: a quarter of them each,
        at least 1; :func:`~memlens.privacy.bound.default_guess_counts`)."""
        from memlens.privacy.bound import default_guess_counts

        if self.selection != "fixed":
            return None, None
        k_in, k_out = default_guess_counts(m)
        return (
            k_in if self.k_in is None else self.k_in,
            k_out if self.k_out is None else self.k_out,
        )


def arm_name(epsilon: float | None) -> str:
    """The name of the arm trained at target ε ``epsilon``: ``no-dp`` or ``dp-eps<ε>``."""
    return "no-dp" if epsilon is None else f"dp-eps{epsilon:g}"
