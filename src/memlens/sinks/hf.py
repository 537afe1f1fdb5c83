"""Patch MemSinks masks into Hugging Face GPT-2 and LLaMA-style MLPs.

Ghosal, Maini & Raghunathan, "Memorization Sinks", ICML 2025, arXiv:2507.09937: the mask
multiplies the MLP's hidden activations after the nonlinearity and before the down-projection.
In a Hugging Face model that is exactly the *input* of the down-projection:

* GPT-2 (``GPT2MLP``): ``c_proj(act(c_fc(x)))``; the hook sits on ``mlp.c_proj``;
* LLaMA, Mistral, Qwen2 and other gated MLPs: ``down_proj(act(gate_proj(x)) * up_proj(x))``; the
  hook sits on ``mlp.down_proj`` (the mask multiplies the gated product, the unit's activation).

:class:`SinkPatch` registers one forward pre-hook per MLP. It holds the current mode
(:data:`memlens.sinks.masks.MODES`) and, for ``"own"``, the sequence IDs of the rows of the next
forward passes; set them with :meth:`SinkPatch.use`. The hooks work in training (gradients flow
through the mask) and in KV-cached generation (the mask depends on the row, not the position).

Example
-------
>>> import torch
>>> from transformers import GPT2Config, GPT2LMHeadModel
>>> from memlens.sinks import SinkConfig, SinkPatch, sequence_ids
>>> model = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=2))
>>> patch = SinkPatch(model, SinkConfig())
>>> ids = torch.randint(0, 50, (3, 16))
>>> with patch.use("own", sequence_ids(ids)):
...     loss = model(input_ids=ids, labels=ids).loss
>>> with patch.use("drop"):
...     logits = model(input_ids=ids).logits
>>> patch.remove()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from memlens.errors import UserError
from memlens.sinks.masks import SinkConfig, check_mode, mode_mask, own_masks


def find_down_projections(model: nn.Module) -> list[tuple[str, nn.Module, int]]:
    """``(name, down-projection module, hidden units)`` of every MLP, in layer order.

    An MLP is a module whose class name ends in ``MLP`` and that has a ``down_proj`` (LLaMA-style)
    or ``c_proj`` (GPT-2) child.
    """
    found = []
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("MLP"):
            continue
        for child in ("down_proj", "c_proj"):
            proj = getattr(module, child, None)
            if isinstance(proj, nn.Module) and getattr(proj, "weight", None) is not None:
                hidden = getattr(proj, "in_features", None)
                if hidden is None:  # GPT-2 Conv1D stores its weight as [in, out]
                    hidden = int(proj.weight.shape[0])
                found.append((f"{name}.{child}", proj, int(hidden)))
                break
    return found


class SinkPatch:
    """MemSinks masks on every MLP of a Hugging Face causal LM (forward pre-hooks).

    Parameters
    ----------
    model: a ``GPT2LMHeadModel``, ``LlamaForCausalLM`` or another model with GPT-2 or LLaMA-style
        MLP modules.
    config: the unit split and fractions.
    mode: the initial mode (``"all"``: the model behaves exactly as unpatched).
    """

    def __init__(self, model: nn.Module, config: SinkConfig, mode: str = "all") -> None:
        self.model = model
        self.config = config
        self.projections = find_down_projections(model)
        if not self.projections:
            raise UserError(
                f"{type(model).__name__} has no GPT-2 or LLaMA-style MLP (a module named *MLP with "
                "c_proj or down_proj) to patch with memorization sinks."
            )
        hidden = {h for _, _, h in self.projections}
        if len(hidden) != 1:
            raise UserError("memorization sinks need every MLP to have the same hidden width.")
        self.hidden = hidden.pop()
        self.n_layer = len(self.projections)
        config.split(self.hidden)  # validate the split for this width
        self.mode = check_mode(mode)
        self._ids: np.ndarray | None = None
        self._cache: dict[tuple, Tensor] = {}
        self._handles = [
            proj.register_forward_pre_hook(self._make_hook(layer))
            for layer, (_, proj, _) in enumerate(self.projections)
        ]

    def _mask(self, layer: int, rows: int, like: Tensor) -> Tensor | None:
        if self.mode == "all":
            return None
        if self.mode == "own":
            if self._ids is None:
                raise ValueError("mode 'own' needs sequence ids: use patch.use('own', ids)")
            if len(self._ids) != rows:
                raise ValueError(f"{len(self._ids)} sequence ids for a batch of {rows} rows")
            key = ("own", self._ids.tobytes(), like.device, like.dtype)
        else:
            key = (self.mode, like.device, like.dtype)
        m = self._cache.get(key)
        if m is None:
            if self.mode == "own":
                full = own_masks(self._ids, self.n_layer, self.hidden, self.config)  # [B, L, H]
                m = torch.from_numpy(full).to(like.device, like.dtype)
            else:
                m = torch.from_numpy(mode_mask(self.mode, self.hidden, self.config)).to(
                    like.device, like.dtype
                )
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = m
        if self.mode == "own":
            return m[:, layer, None, :]  # [B, 1, H]
        return m

    def _make_hook(self, layer: int):
        def hook(module: nn.Module, args: tuple) -> tuple | None:
            (hidden, *rest) = args
            m = self._mask(layer, hidden.shape[0], hidden)
            if m is None:
                return None
            return (hidden * m, *rest)

        return hook

    def set_mode(self, mode: str, ids: np.ndarray | Tensor | None = None) -> None:
        """Switch mode; ``ids`` (one per batch row) are required for ``"own"``."""
        self.mode = check_mode(mode)
        self._ids = (
            None
            if ids is None
            else np.asarray(torch.as_tensor(ids).cpu(), dtype=np.uint64).reshape(-1)
        )

    @contextlib.contextmanager
    def use(self, mode: str, ids: np.ndarray | Tensor | None = None) -> Iterator[SinkPatch]:
        """Temporarily switch mode (and row IDs for ``"own"``)."""
        old = (self.mode, self._ids)
        self.set_mode(mode, ids)
        try:
            yield self
        finally:
            self.mode, self._ids = old

    def remove(self) -> None:
        """Remove the hooks; the model is exactly as before patching."""
        for h in self._handles:
            h.remove()
        self._handles = []
