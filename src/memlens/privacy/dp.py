"""DP-SGD training through Opacus, for memlens GPTs and Hugging Face causal LMs.

DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", arXiv:1607.00133): every
step samples each training row independently with probability ``q = batch_size / N`` (Poisson
sampling), clips each row's gradient to L2 norm ``C`` (``max_grad_norm``), sums, adds Gaussian
noise ``N(0, σ²C²)`` and divides by the expected batch size. Opacus (Yousefpour et al. 2021,
arXiv:2109.12298) provides all of it: :func:`opacus.PrivacyEngine.make_private_with_epsilon`
chooses σ for a target (ε, δ) over the planned epochs, its :class:`~opacus.data_loader.DPDataLoader`
does the Poisson sampling, its ``DPOptimizer`` clips, noises and steps, and its accountant (PRV,
Gopi et al. 2021, or RDP, Mironov 2017) reports the ε actually spent.

**Per-sample gradients.** Opacus's default ``hooks`` mode computes per-sample gradients layer by
layer from each module's input and output gradient. That cannot work for
:class:`memlens.models.gpt.GPT`, whose layers are raw parameters used in ``torch.bmm`` over a
leading model axis (no ``nn.Linear`` to hook, and the batch is not the first axis), and it
double-counts tied weights (the GPT-2 input embedding is also the output layer). memlens
therefore uses Opacus's ``no_op`` grad-sample mode and computes the per-sample gradients of the
*whole model* with ``torch.func`` (``vmap`` over ``grad`` of one row's loss under
``functional_call``), which is exact for any architecture whose forward is vmappable, tied
weights included. The model is wrapped as a one-model (``K = 1``) module taking ids ``[B, T]``
(:class:`RowModel`); Opacus then clips, noises and accounts as usual. Attention runs in PyTorch's
math kernel under ``vmap`` (the fused CPU kernel has no batching rule). Per-sample gradients are
computed ``physical_batch_size`` rows at a time and accumulated by Opacus's virtual steps, so a
large logical batch does not need B copies of the gradient at once (by default as many rows as
keep the per-sample gradients within 2^28 numbers, 1 GiB in float32: every row of a batch for a
small memlens GPT, two rows at a time for GPT-2 small).

Each row's loss is its mean next-token cross-entropy over its own predicted tokens (padding
after a row's length is ignored; rows are right-padded, and causal attention never lets a real
token see padding), in nats, as Opacus and the clipping norm expect.

**The loop.** :func:`train_rows` trains through memlens's one training loop,
:func:`memlens.training.train`: :class:`PoissonBatches` is its ``batch_at`` (Opacus's Poisson
loader read in step order), the ``constant`` schedule its learning rate, Adam (wrapped in the
``DPOptimizer``) its optimizer, and :func:`private_backward` its ``backward`` hook, which fills
``p.grad_sample`` where a plain step would call ``loss.backward()``; the loop's
``optimizer.step()`` is then Opacus's (clip, noise, scale, account, Adam).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memlens.errors import UserError

ACCOUNTANTS = ("prv", "rdp")
PER_SAMPLE_BUDGET = 2**28  # numbers of per-sample gradient held at once (default chunking)
LOOP = "memlens.training.train, Poisson-sampled rows"  # how train_rows trains (its stats)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Opacus's and torch's warnings and log messages (memlens reports for itself)."""
    loggers = [logging.getLogger(n) for n in ("opacus", "prv_accountant", "torch")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, lv in zip(loggers, levels, strict=True):
                lg.setLevel(lv)


@dataclass(frozen=True)
class DPSettings:
    """The privacy target of one DP-SGD run.

    Parameters
    ----------
    epsilon : target ε (nats) at ``delta`` after all planned epochs.
    delta : target δ (``0 < δ < 1``; usually below 1/N).
    max_grad_norm : per-row clipping norm C (of the gradient of the loss in nats).
    accountant : ``prv`` (privacy random variables, tight) or ``rdp`` (Rényi DP).
    """

    epsilon: float
    delta: float = 1e-5
    max_grad_norm: float = 1.0
    accountant: str = "prv"

    def __post_init__(self) -> None:
        if not (self.epsilon > 0 and math.isfinite(self.epsilon)):
            raise UserError(f"the DP target epsilon must be a positive number, got {self.epsilon}.")
        if not 0.0 < self.delta < 1.0:
            raise UserError(f"the DP delta must be strictly between 0 and 1, got {self.delta}.")
        if not self.max_grad_norm > 0:
            raise UserError(f"the clipping norm must be positive, got {self.max_grad_norm}.")
        if self.accountant not in ACCOUNTANTS:
            raise UserError(f"unknown accountant '{self.accountant}'; use prv or rdp.")


class RowModel(nn.Module):
    """One causal LM as a module mapping ids ``[B, T]`` to logits ``[B, T, V]``.

    Wraps a one-model :class:`~memlens.models.gpt.GPT` (which takes ``[K, B, T]``) or a Hugging
    Face causal LM, so Opacus and ``torch.func`` see an ordinary batch-first module.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.is_gpt = hasattr(model, "n_models")
        if self.is_gpt and model.n_models != 1:
            raise UserError(
                f"DP-SGD trains one model at a time; this GPT stack holds {model.n_models}."
            )

    def forward(self, ids: Tensor) -> Tensor:
        if self.is_gpt:
            return self.model(ids.unsqueeze(0))[0]
        return self.model(input_ids=ids, use_cache=False).logits


def row_loss(logits: Tensor, ids: Tensor, length: Tensor) -> Tensor:
    """Mean next-token cross-entropy (nats) of each row over its first ``length`` tokens.

    ``logits [B, T, V]``, ``ids [B, T]``, ``length [B]``; returns ``[B]``.
    """
    T = ids.shape[-1]
    ce = F.cross_entropy(
        logits[..., :-1, :].reshape(-1, logits.shape[-1]).float(),
        ids[..., 1:].reshape(-1),
        reduction="none",
    ).view(ids.shape[:-1] + (T - 1,))
    mask = torch.arange(T - 1, device=ids.device) < (length.unsqueeze(-1) - 1)
    return (ce * mask).sum(-1) / (length - 1).clamp_min(1)


def per_sample_grads(
    module: RowModel, params: dict[str, Tensor], ids: Tensor, lengths: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    """Gradient of each row's loss w.r.t. every parameter, ``{name: [B, *shape]}``, and the
    rows' losses ``[B]`` (nats), from ``torch.func.vmap`` over ``torch.func.grad``."""
    from torch.func import functional_call, grad, vmap
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def one(p: dict[str, Tensor], x: Tensor, n: Tensor) -> tuple[Tensor, Tensor]:
        logits = functional_call(module, p, (x.unsqueeze(0),))
        loss = row_loss(logits, x.unsqueeze(0), n.unsqueeze(0))[0]
        return loss, loss.detach()

    with sdpa_kernel(SDPBackend.MATH):
        return vmap(grad(one, has_aux=True), in_dims=(None, 0, 0), randomness="different")(
            params, ids, lengths
        )


def check_private_trainable(model: nn.Module, example: Tensor, device: torch.device) -> None:
    """Raise :class:`UserError` (one sentence) unless DP-SGD can train ``model``: Opacus's module
    validator must accept it and a per-sample gradient of two example rows must succeed."""
    from opacus.validators import ModuleValidator

    name = type(model).__name__
    if getattr(model, "hf_device_map", None) and len(set(model.hf_device_map.values())) > 1:
        raise UserError(
            f"DP-SGD needs the whole model on one device, but {name} is split across several."
        )
    was_training = model.training
    model.train()  # the validator checks the mode training will run in
    try:
        with quiet():
            errors = ModuleValidator.validate(model, strict=False)
    finally:
        model.train(was_training)
    if errors:
        first = str(errors[0]).strip().splitlines()[0].split(". ")[0].rstrip(".")
        raise UserError(f"Opacus cannot train {name} with DP-SGD: {first}.")
    module = RowModel(model)
    params = {k: v.detach() for k, v in module.named_parameters() if v.requires_grad}
    ids = example[:2].to(device)
    lengths = torch.full((len(ids),), ids.shape[-1], device=device)
    try:
        with quiet():
            per_sample_grads(module, params, ids, lengths)
    except Exception as exc:  # any failure means Opacus's no_op mode cannot be fed
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"Opacus cannot train {name} with DP-SGD: per-sample gradients failed ({msg.rstrip('.')})."
        ) from None


def _unreachable(dp: DPSettings, sample_rate: float, steps: int) -> UserError:
    return UserError(
        f"a target epsilon of {dp.epsilon:g} at delta {dp.delta:g} is out of reach for Opacus's "
        f"{dp.accountant.upper()} accountant over {steps} steps at sampling rate {sample_rate:.3g} "
        f"(even the largest noise it searches, sigma {_SIGMA_SEARCH_LIMIT:g}, spends more); use a "
        "larger epsilon, fewer epochs or a larger delta."
    )


# The largest noise multiplier Opacus's search (``opacus.accountants.utils.get_noise_multiplier``)
# evaluates before giving up: it doubles sigma from 20 and stops once it exceeds MAX_SIGMA (1e6).
_SIGMA_SEARCH_LIMIT = 655360.0


def check_reachable(dp: DPSettings, sample_rate: float, steps: int) -> None:
    """Raise :class:`UserError` (one sentence) if Opacus cannot find a noise multiplier for
    ``dp.epsilon`` at ``dp.delta`` over ``steps`` steps at Poisson rate ``sample_rate``.

    :func:`opacus.accountants.utils.get_noise_multiplier` gives up (``ValueError``) when even
    sigma = 655,360 spends more than the target: one accountant evaluation at that sigma says so
    in advance (the RDP accountant cannot certify ε below about 0.1 at δ = 1e-5, whatever the
    noise). Used before anything is trained or written.
    """
    from opacus.accountants import create_accountant

    accountant = create_accountant(mechanism=dp.accountant)
    accountant.history = [(_SIGMA_SEARCH_LIMIT, float(sample_rate), int(steps))]
    with quiet():
        floor = float(accountant.get_epsilon(delta=dp.delta))
    if floor > dp.epsilon:
        raise _unreachable(dp, sample_rate, steps)


class PoissonBatches:
    """``batch_at`` of a DP-SGD run: the rows of step ``step``, Poisson-sampled by Opacus.

    Every step, each of the N rows is taken independently with probability ``q`` by Opacus's
    :class:`~opacus.data_loader.DPDataLoader` (its ``UniformWithReplacementSampler``, seeded by
    the loader's generator), so a batch has a variable size, possibly zero: ``(ids [B, T],
    lengths [B])`` on ``device``. The loader is read epoch after epoch, in step order; asking for
    a later step draws (and discards) the steps in between, so a run resumed at ``start_step``
    gets the batches of the uninterrupted run. An earlier step cannot be drawn again.
    """

    def __init__(self, loader: Any, device: torch.device | str = "cpu") -> None:
        self.loader, self.device = loader, torch.device(device)
        self._batches = itertools.chain.from_iterable(itertools.repeat(loader))
        self._next = 0  # the step the next draw belongs to
        self._last: tuple[Tensor, Tensor] | None = None

    @classmethod
    def of_rows(
        cls,
        tokens: Tensor,
        lengths: Tensor,
        batch_size: int,
        *,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
    ) -> PoissonBatches:
        """Rows ``tokens [N, T]`` of ``lengths [N]`` at rate ``q = 1 / ceil(N / batch_size)``,
        ``ceil(N / batch_size)`` steps per epoch (Opacus's ``DPDataLoader.from_data_loader``)."""
        from opacus.data_loader import DPDataLoader
        from torch.utils.data import DataLoader, TensorDataset

        rows = TensorDataset(tokens.long(), lengths.long())
        plain = DataLoader(rows, batch_size=min(batch_size, len(rows)))
        return cls(DPDataLoader.from_data_loader(plain, generator=generator), device)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.loader)

    def __call__(self, step: int) -> tuple[Tensor, Tensor]:
        if step < self._next - 1:
            raise ValueError(f"Poisson batches are drawn in step order; step {step} is past.")
        while self._next <= step:
            self._last = next(self._batches)
            self._next += 1
        assert self._last is not None
        ids, lens = self._last
        return ids.to(self.device), lens.to(self.device)


def batch_loss(module: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """The mean over a batch's rows of each row's mean next-token cross-entropy (nats)."""
    ids, lens = batch
    return row_loss(module(ids), ids, lens).mean()


def plain_backward(module: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor | None:
    """``backward`` hook of :func:`memlens.training.train` without DP: the batch loss's backward,
    and nothing for an empty Poisson batch (no gradient, so Adam leaves every parameter and its
    state as they are)."""
    if len(batch[0]) == 0:
        return None
    loss = batch_loss(module, batch)
    loss.backward()
    return loss


def private_backward(
    optimizer: Any, trainable: dict[str, nn.Parameter], physical: int
) -> Callable[[nn.Module, tuple[Tensor, Tensor]], Tensor | None]:
    """``backward`` hook of :func:`memlens.training.train` for DP-SGD with Opacus's ``DPOptimizer``
    (``grad_sample_mode="no_op"``): it fills ``p.grad_sample`` with per-sample gradients
    (:func:`per_sample_grads`) ``physical`` rows at a time; every chunk but the last is clipped and
    summed into ``p.summed_grad`` at once (``clip_and_accumulate``, Opacus's virtual step), and
    the loop's ``optimizer.step()`` clips the last chunk, adds the noise ``N(0, σ²C²)``, divides by
    the expected batch size, records the step with the accountant and steps. An empty batch takes
    a pure-noise step. Returns the batch's mean row loss (nats, float64), or ``None`` when empty.
    """

    def backward(module: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor | None:
        ids, lens = batch
        B = len(ids)
        if B == 0:  # an empty Poisson batch still takes a (pure noise) step
            for p in trainable.values():
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device, dtype=p.dtype)
            return None
        params = {k: p.detach() for k, p in trainable.items()}
        starts = list(range(0, B, physical))
        total = 0.0
        for i, a in enumerate(starts):
            grads, losses = per_sample_grads(
                module,  # type: ignore[arg-type]
                params,
                ids[a : a + physical],
                lens[a : a + physical],
            )
            for k, p in trainable.items():
                p.grad_sample = grads[k]
            if i < len(starts) - 1:
                optimizer.clip_and_accumulate()
                for p in trainable.values():
                    p.grad_sample = None
            total += float(losses.sum())
        return torch.tensor(total / B, dtype=torch.float64)

    return backward


@dataclass
class TrainStats:
    """What a training run did (saved in the arm's cell and the manifest)."""

    steps: int
    epochs: int
    seconds: float
    private: bool
    expected_batch_size: int
    sample_rate: float
    epsilon_target: float | None = None
    epsilon_spent: float | None = None  # the accountant's ε at ``delta`` after training
    delta: float | None = None
    noise_multiplier: float | None = None
    max_grad_norm: float | None = None
    accountant: str | None = None
    final_loss_nats: float | None = None
    loop: str = LOOP

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_rows(
    model: nn.Module,
    tokens: Tensor,
    lengths: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    dp: DPSettings | None,
    warmup_steps: int = 0,
    betas: tuple[float, float] = (0.9, 0.98),
    physical_batch_size: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> TrainStats:
    """Train ``model`` on rows ``tokens [N, T]`` (right-padded to ``lengths``), with DP-SGD when
    ``dp`` is given and plain Adam on the same Poisson-sampled batches otherwise.

    Training runs through memlens's one training loop (:func:`memlens.training.train`): the
    batches are Poisson-sampled (:class:`PoissonBatches`, rate ``q = 1 / ceil(N / batch_size)``,
    ``ceil(N / batch_size)`` steps per epoch), the learning rate is the ``constant`` schedule
    with ``warmup_steps`` of linear warm-up, and the optimizer is Adam, wrapped with ``dp`` in
    Opacus's ``DPOptimizer``: the loop's ``backward`` hook (:func:`private_backward`) computes
    per-sample gradients (:func:`per_sample_grads`), which the ``DPOptimizer`` clips to
    ``dp.max_grad_norm``, sums, noises with the σ that
    :meth:`opacus.PrivacyEngine.make_private_with_epsilon` chose for ``dp.epsilon`` over
    ``epochs`` epochs, and divides by the expected batch size before Adam steps. Deterministic
    under ``seed`` (sampling and noise use seeded generators, dropout a seeded global generator
    restored afterwards). An empty batch takes a pure-noise step with DP and no step without.

    Parameters
    ----------
    model : a one-model :class:`~memlens.models.gpt.GPT` or a Hugging Face causal LM.
    tokens, lengths : ``[N, T]`` token ids and each row's length (tokens after it are padding).
    epochs, batch_size, lr : epochs of ``ceil(N / batch_size)`` steps, the expected batch size
        (Poisson sampling) and Adam's learning rate (``betas``).
    dp : the privacy target, or ``None`` for the same loop without clipping and noise.
    physical_batch_size : rows per per-sample-gradient chunk (default: within 2^28 numbers).
    progress : called as ``progress(step, total_steps)`` before the first step (step 0, before
        the noise multiplier is searched) and after every step.

    Returns
    -------
    TrainStats, with the accountant's ε after training for a private run and the loss (nats) of
    the last batch that had rows.
    """
    from opacus import PrivacyEngine

    from memlens.training import TrainConfig, train

    device = torch.device(device)
    N = int(tokens.shape[0])
    if N < 1:
        raise UserError("there are no training rows.")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise UserError("epochs, batch size and learning rate must be positive.")
    module = RowModel(model).to(device)
    g_sample = torch.Generator().manual_seed(int(seed))
    batches = PoissonBatches.of_rows(tokens, lengths, batch_size, generator=g_sample, device=device)
    optimizer: Any = torch.optim.Adam(
        [p for p in module.parameters() if p.requires_grad], lr=lr, betas=betas
    )
    engine = None
    backward = plain_backward
    if progress is not None:  # the bar shows before Opacus's search for sigma (seconds to minutes)
        progress(0, epochs * batches.steps_per_epoch)
    if dp is not None:
        g_noise = torch.Generator(device=device).manual_seed(int(seed) + 1)
        with quiet():
            engine = PrivacyEngine(accountant=dp.accountant)
            try:
                _, optimizer, _ = engine.make_private_with_epsilon(
                    module=module,
                    optimizer=optimizer,
                    data_loader=batches.loader,  # its sample rate is the accountant's
                    target_epsilon=dp.epsilon,
                    target_delta=dp.delta,
                    epochs=epochs,
                    max_grad_norm=dp.max_grad_norm,
                    poisson_sampling=False,  # the loader above already samples Poisson, seeded
                    grad_sample_mode="no_op",  # per-sample gradients from torch.func (the hook)
                    noise_generator=g_noise,
                )
            except ValueError as exc:  # Opacus: "The privacy budget is too low."
                if "budget is too low" not in str(exc):
                    raise
                steps_per_epoch = batches.steps_per_epoch
                raise _unreachable(dp, 1.0 / steps_per_epoch, epochs * steps_per_epoch) from None
        trainable = {k: p for k, p in module.named_parameters() if p.requires_grad}
        if physical_batch_size is None:
            n_params = sum(p.numel() for p in trainable.values())
            physical_batch_size = max(1, min(4 * batch_size, PER_SAMPLE_BUDGET // max(n_params, 1)))
        backward = private_backward(optimizer, trainable, physical_batch_size)
    steps_per_epoch = batches.steps_per_epoch
    total = epochs * steps_per_epoch
    config = TrainConfig(
        lr=lr,
        max_steps=total,
        batch_size=batch_size,
        warmup_steps=warmup_steps,
        beta1=betas[0],
        beta2=betas[1],
    )
    last_loss = [float("nan")]

    def observe(info: Any) -> None:
        if info.loss is not None:
            last_loss[0] = float(info.loss.detach())
        if progress is not None:
            progress(info.step, info.total)

    start = time.perf_counter()
    # Dropout (Hugging Face models; memlens GPTs have none) draws from torch's global generator,
    # also under vmap: seed it for this run only, so that the same seed trains the same model
    # whatever ran before (another arm, or a resumed run that skipped it).
    fork = [device] if device.type == "cuda" else []
    with quiet(), torch.random.fork_rng(devices=fork):
        torch.manual_seed(int(seed) + 2)
        steps = train(
            module,
            config,
            batches,
            batch_loss,
            optimizer=optimizer,
            observers=[observe],
            backward=backward,
        )
    seconds = time.perf_counter() - start
    module.eval()
    stats = TrainStats(
        steps=steps,
        epochs=epochs,
        seconds=seconds,
        private=dp is not None,
        expected_batch_size=int(N / steps_per_epoch),
        sample_rate=1.0 / steps_per_epoch,
        final_loss_nats=last_loss[0],
        loop=LOOP + (" (DP-SGD step of Opacus)" if dp is not None else ""),
    )
    if dp is not None and engine is not None:
        with quiet():
            spent = float(engine.get_epsilon(dp.delta))
        stats.epsilon_target = dp.epsilon
        stats.epsilon_spent = spent
        stats.delta = dp.delta
        stats.noise_multiplier = float(optimizer.noise_multiplier)
        stats.max_grad_norm = dp.max_grad_norm
        stats.accountant = dp.accountant
    return stats
