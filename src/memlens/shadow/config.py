"""The settings of the three shadow recipes, validated at the door (:class:`memlens.config.Config`).

* :class:`ShadowTrainConfig`: ``memlens shadow train`` (the world, the K models, the scale-out);
* :class:`ShadowAttackConfig`: ``memlens shadow attack`` (the shadows, an optional target, the
  attack choices of :class:`~memlens.shadow.attacks.AttackSettings`, the metrics);
* :class:`MemorizationConfig`: ``memlens shadow memorization``.

:func:`memlens.shadow.run` dispatches on the config's type. A bad value raises
:class:`~memlens.errors.UserError` with one sentence naming the field.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from memlens.config import Config
from memlens.mia.metrics import LOW_FPRS
from memlens.shadow.attacks import AttackSettings

#: The reference-free attacks of ``memlens mia`` run on the same targets as the shadow attacks.
BASELINES = ("loss", "zlib", "min_k", "min_k_pp")


class ShadowTrainConfig(Config):
    """Settings of ``memlens shadow train`` (saved in the manifest).

    World: ``pool`` (a file of texts; tokenizer from ``tokenizer`` or trained on the pool with
    ``vocab_size`` tokens) or ``synthetic`` (``uniform``/``markov`` with ``n_examples``,
    ``vocab_size``, ``branching``); examples of at most ``seq_len`` tokens; a share
    ``population_frac`` held out of every model (the RMIA population).
    Design (:mod:`memlens.shadow.design`): ``split_by`` ``copy`` (default) draws every candidate
    example on its own, so the copies of a text that occurs several times land in different
    halves (Zhang et al.'s counterfactual memorization, where duplicates are partly seen by the
    OUT models); ``text`` draws each distinct text once and a model that keeps it trains on all
    of its copies (the membership game "did the model train on this text?", where a repeated
    text is a member with its multiplicity or not at all). A text is an example's token sequence:
    the pieces of a text longer than ``seq_len`` are drawn one by one.
    Models: ``n_models`` (K, even) GPTs of ``n_layer`` x ``d_model`` (``n_head`` 0 = automatic),
    ``stack_size`` per batched stack (default all K in one), trained ``steps`` steps of
    ``batch_size`` examples per model (Adam at ``lr``, ``warmup_steps``, linear decay over
    ``decay_frac`` of the steps then a hold at a tenth of ``lr``); ``n_evals`` evaluations during
    training; ``score_batch`` examples per scoring batch.
    Scale: ``backend`` local (``workers`` processes, one stack each) or ray (``ray_address``;
    each stack a Ray task asking for ``ray_num_cpus`` CPUs and ``ray_num_gpus`` GPUs, fractions
    allowed). Where the stacks run does not change the numbers (every stack seeds itself), so
    these settings are not part of the run's identity (:meth:`run_identity`): a run started with
    one backend or worker count resumes with another.
    """

    what: ClassVar[str] = "shadow train config"

    pool: str | None = None
    text_column: str = "text"
    tokenizer: str | None = None
    synthetic: Literal["uniform", "markov"] | None = None
    n_examples: int = Field(default=512, ge=1)
    vocab_size: int = Field(default=1024, ge=2)
    branching: int = Field(default=4, ge=1)
    seq_len: int = Field(default=64, ge=4)
    population_frac: float = Field(default=0.2, ge=0, lt=0.9)
    split_by: Literal["copy", "text"] = "copy"
    n_models: int = 16
    stack_size: int | None = Field(default=None, ge=1)
    n_layer: int = Field(default=2, ge=1)
    d_model: int = Field(default=64, ge=4)
    n_head: int = Field(default=0, ge=0)
    steps: int = Field(default=1500, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    batch_size: int = Field(default=32, ge=1)
    warmup_steps: int = Field(default=100, ge=0)
    decay_frac: float = Field(default=0.3, ge=0, lt=0.8)
    n_evals: int = Field(default=4, ge=1)
    score_batch: int = Field(default=16, ge=1)
    seed: int = 0
    device: str = "auto"
    backend: Literal["local", "ray"] = "local"
    workers: int = Field(default=1, ge=1)
    ray_address: str | None = None
    ray_num_cpus: float = Field(default=1, gt=0)
    ray_num_gpus: float = Field(default=0, ge=0)

    #: Where the stacks run: not part of the run's identity.
    SCALE_FIELDS: ClassVar[tuple[str, ...]] = (
        "backend", "workers", "ray_address", "ray_num_cpus", "ray_num_gpus",
    )  # fmt: skip

    def run_identity(self) -> dict[str, Any]:
        """The config the run directory's manifest records and a resume must match: all of it
        but :attr:`SCALE_FIELDS`."""
        return {k: v for k, v in self.to_dict().items() if k not in self.SCALE_FIELDS}

    @model_validator(mode="after")
    def _world(self) -> ShadowTrainConfig:
        if (self.pool is None) == (self.synthetic is None):
            raise ValueError("give exactly one of `pool` (a file of texts) and `synthetic`")
        if self.tokenizer is not None and self.pool is None:
            raise ValueError("`tokenizer` applies to a `pool` of texts only")
        if self.n_models < 2 or self.n_models % 2:
            raise ValueError(
                f"the number of shadow models must be even and at least 2 (each example is IN "
                f"for exactly half of them), got {self.n_models}"
            )
        return self

    @property
    def models_per_stack(self) -> int:
        return min(self.stack_size or self.n_models, self.n_models)

    def gpt_config(self, vocab_size: int) -> Any:
        from memlens.models.gpt import GPTConfig

        return GPTConfig(vocab_size, self.seq_len, self.n_layer, self.d_model, self.n_head)

    def train_config(self) -> Any:
        from memlens.training import SaturationConfig

        return SaturationConfig(
            lr=self.lr,
            batch_size=self.batch_size,
            max_steps=self.steps,
            min_steps=self.steps,
            warmup_steps=min(self.warmup_steps, self.steps),
            decay_frac=self.decay_frac,
            eval_every=max(1, self.steps // self.n_evals),
        )


class ShadowAttackConfig(Config):
    """Settings of ``memlens shadow attack`` (saved in the manifest).

    Without ``target``: leave-one-model-out over the shadows in ``shadows``. With ``target`` (a
    model directory) and ``members``/``nonmembers`` (texts of the shadows' pool, read with
    ``text_column``): the shadows are the target's references, the target scored in batches of
    ``batch_size`` on ``device``. ``pool``, when given, must be the file the shadows were trained
    on. ``membership`` is how leave-one-model-out labels the copies of a text that occurs several
    times in the pool: ``text`` (default), a member of every target that trained on any copy of
    its text (as with a ``target``, whose labels are per text); ``copy``, each copy by its own
    ``keep.npy`` entry. ``candidates`` chooses which candidates leave-one-model-out evaluates:
    ``all``, or ``once``, those whose text occurs once in the pool (a deduplicated evaluation:
    there a copy's references and its label answer the same question; every candidate is still
    scored and calibrated). ``settings`` holds the attack choices (:class:`AttackSettings`, a dict is accepted);
    ``baselines`` the reference-free attacks run on the same targets (Min-K% fraction ``k``);
    ``fprs`` the FPR levels of TPR at FPR; ``n_boot``, ``level`` and ``seed`` the bootstrap of
    the AUC interval.
    """

    what: ClassVar[str] = "shadow attack config"

    shadows: str
    target: str | None = None
    members: str | None = None
    nonmembers: str | None = None
    text_column: str = "text"
    pool: str | None = None
    settings: AttackSettings = AttackSettings()
    membership: Literal["text", "copy"] = "text"
    candidates: Literal["all", "once"] = "all"
    baselines: list[str] = Field(default_factory=lambda: list(BASELINES))
    k: float = Field(default=0.2, gt=0, le=1)
    fprs: list[float] = Field(default_factory=lambda: list(LOW_FPRS))
    n_boot: int = Field(default=200, ge=1)
    level: float = Field(default=0.95, gt=0, lt=1)
    batch_size: int = Field(default=32, ge=1)
    device: str = "auto"
    seed: int = 0

    @model_validator(mode="after")
    def _inputs(self) -> ShadowAttackConfig:
        if self.target is not None and (self.members is None or self.nonmembers is None):
            raise ValueError("a `target` needs its `members` and `nonmembers`")
        if self.target is None and (self.members is not None or self.nonmembers is not None):
            raise ValueError("`members` and `nonmembers` need a `target` model")
        if self.target is not None and self.membership != "text":
            raise ValueError(
                "`membership` applies to leave-one-model-out evaluation; a target's labels are "
                "its members and non-members, one per text"
            )
        if self.target is not None and self.candidates != "all":
            raise ValueError(
                "`candidates` applies to leave-one-model-out evaluation; a target is evaluated "
                "on its members and non-members"
            )
        for a in self.fprs:
            if not 0 <= a < 1:
                raise ValueError(f"FPR level must be at least 0 and below 1, got {a}")
        for b in self.baselines:
            if b not in BASELINES:
                raise ValueError(f"unknown baseline {b!r}; choose from {', '.join(BASELINES)}")
        return self


class MemorizationConfig(Config):
    """Settings of ``memlens shadow memorization``: the ``shadows`` directory, an optional check
    against the ``pool`` file (read with ``text_column``), an optional ``audit`` directory (the
    unintended bits of its training samples are joined by text; its held-out samples, the
    audit's control, are not), and the ``top`` examples listed in the summary."""

    what: ClassVar[str] = "shadow memorization config"

    shadows: str
    pool: str | None = None
    text_column: str = "text"
    audit: str | None = None
    top: int = Field(default=20, ge=1)
