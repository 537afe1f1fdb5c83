"""A small GPT-2 that trains K same-shaped models at once.

The architecture is exactly Hugging Face ``GPT2LMHeadModel`` with tied embeddings, no dropout,
``n_positions = seq_len`` and the ``gelu_new`` (tanh) activation, so

    params = V*d + S*d + L*(12*d^2 + 13*d) + 2*d

(Morris et al. 2025, "How much do language models memorize?", arXiv:2505.24832, count parameters
this way). Every weight carries a leading *model* dimension ``K``: ``K`` independent models with
the same shape live in one module and train in one pass (``torch.bmm`` over the model axis), which
keeps two CPU cores busy where a single tiny model would not. Models never share a parameter, so
an element-wise optimizer such as Adam over the stacked tensors is exactly ``K`` separate Adams.

``K = 1`` is the ordinary single model. :meth:`GPT.to_hf` exports any one of the ``K`` models
as a ``GPT2LMHeadModel``.

Shapes: token ids ``[K, B, T]`` in, logits ``[K, B, T, V]`` out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memlens.errors import UserError


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a GPT-2 style model.

    Parameters
    ----------
    vocab_size: V, number of token ids.
    seq_len: S, the context length (``n_positions``).
    n_layer: L, transformer blocks.
    d_model: d, residual width (``n_embd``); the MLP is ``4*d`` wide.
    n_head: attention heads; must divide ``d_model``.
    """

    vocab_size: int
    seq_len: int
    n_layer: int
    d_model: int
    n_head: int = 0  # 0: choose automatically (head size 16 when possible)

    def __post_init__(self) -> None:
        if self.vocab_size < 2:
            raise UserError(f"vocab size must be at least 2, got {self.vocab_size}.")
        if self.seq_len < 2:
            raise UserError(f"sequence length must be at least 2, got {self.seq_len}.")
        if self.n_layer < 1:
            raise UserError(f"n_layer must be at least 1, got {self.n_layer}.")
        if self.d_model < 1:
            raise UserError(f"d_model must be at least 1, got {self.d_model}.")
        if self.n_head == 0:
            object.__setattr__(
                self, "n_head", max(1, self.d_model // 16) if self.d_model % 16 == 0 else 1
            )
        if self.n_head < 1 or self.d_model % self.n_head != 0:
            raise UserError(
                f"d_model {self.d_model} is not divisible by n_head {self.n_head}; choose a head count that divides it."
            )

    @property
    def n_params(self) -> int:
        """Parameter count, equal to ``GPT2LMHeadModel`` with tied embeddings."""
        V, S, L, d = self.vocab_size, self.seq_len, self.n_layer, self.d_model
        return V * d + S * d + L * (12 * d * d + 13 * d) + 2 * d

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """Batched affine map: x [K, M, in] @ w [K, in, out] + b [K, 1, out]."""
    return torch.baddbmm(b, x, w)


def _gelu_new(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


class _LayerNorm(nn.Module):
    def __init__(self, k: int, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(k, 1, d))
        self.bias = nn.Parameter(torch.zeros(k, 1, d))

    def forward(self, x: Tensor) -> Tensor:  # x [K, M, d]
        x = F.layer_norm(x, x.shape[-1:], eps=1e-5)
        return x * self.weight + self.bias


class _Block(nn.Module):
    def __init__(self, k: int, d: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1 = _LayerNorm(k, d)
        self.attn_w = nn.Parameter(torch.empty(k, d, 3 * d))
        self.attn_b = nn.Parameter(torch.zeros(k, 1, 3 * d))
        self.attn_proj_w = nn.Parameter(torch.empty(k, d, d))
        self.attn_proj_b = nn.Parameter(torch.zeros(k, 1, d))
        self.ln_2 = _LayerNorm(k, d)
        self.fc_w = nn.Parameter(torch.empty(k, d, 4 * d))
        self.fc_b = nn.Parameter(torch.zeros(k, 1, 4 * d))
        self.mlp_proj_w = nn.Parameter(torch.empty(k, 4 * d, d))
        self.mlp_proj_b = nn.Parameter(torch.zeros(k, 1, d))

    def forward(
        self,
        x: Tensor,
        shape: tuple[int, int, int],
        attn_mask: Tensor | None,
        mlp_mask: Tensor | None,
    ) -> Tensor:
        K, B, T = shape
        d = x.shape[-1]
        h = self.n_head
        qkv = _linear(self.ln_1(x), self.attn_w, self.attn_b)  # [K, B*T, 3d]
        q, k, v = qkv.view(K * B, T, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each [K*B, h, T, hd]
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        y = y.transpose(1, 2).reshape(K, B * T, d)
        x = x + _linear(y, self.attn_proj_w, self.attn_proj_b)
        hidden = _gelu_new(_linear(self.ln_2(x), self.fc_w, self.fc_b))  # [K, B*T, 4d]
        if (
            mlp_mask is not None
        ):  # MemSinks: applied after the nonlinearity, before the down-projection
            hidden = (hidden.view(K, B, T, -1) * mlp_mask).view(K, B * T, -1)
        return x + _linear(hidden, self.mlp_proj_w, self.mlp_proj_b)


def document_attention_mask(doc_ids: Tensor) -> Tensor:
    """Boolean attention mask for packed rows: causal and never across documents.

    ``doc_ids`` is ``[N, T]`` (a document index per position); returns ``[N, 1, T, T]`` with
    ``True`` where attention is allowed.
    """
    T = doc_ids.shape[-1]
    causal = torch.ones(T, T, dtype=torch.bool, device=doc_ids.device).tril()
    same = doc_ids.unsqueeze(-1) == doc_ids.unsqueeze(-2)
    return (same & causal).unsqueeze(1)


class GPT(nn.Module):
    """``n_models`` independent GPT-2 models of one shape, trained and evaluated together.

    Parameters
    ----------
    config: the shape.
    n_models: K, how many independent models to hold.
    init_std: standard deviation of the normal initialization (GPT-2 uses 0.02); residual
        output projections use ``init_std / sqrt(2 * n_layer)`` as in GPT-2.
    generator: optional ``torch.Generator`` for a deterministic initialization.
    """

    def __init__(
        self,
        config: GPTConfig,
        n_models: int = 1,
        init_std: float = 0.02,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.n_models = n_models
        K, V, S, d = n_models, config.vocab_size, config.seq_len, config.d_model
        try:
            self.wte = nn.Parameter(torch.empty(K, V, d))
            self.wpe = nn.Parameter(torch.empty(K, S, d))
            self.blocks = nn.ModuleList(_Block(K, d, config.n_head) for _ in range(config.n_layer))
            self.ln_f = _LayerNorm(K, d)
        except (RuntimeError, MemoryError) as exc:  # the allocator's refusal, e.g. V = 1e11
            if isinstance(exc, RuntimeError) and "allocate" not in str(exc):
                raise
            what = "a GPT" if K == 1 else f"{K} GPTs"
            gb = K * config.n_params * 4 / 1e9
            raise UserError(
                f"{what} of {config.n_params:,} parameters ({gb:,.1f} GB in float32) does not fit "
                "in memory; choose a smaller vocabulary, width or depth."
            ) from None
        self.reset_parameters(init_std, generator)

    @torch.no_grad()
    def reset_parameters(
        self, init_std: float = 0.02, generator: torch.Generator | None = None
    ) -> None:
        proj_std = init_std / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith(("attn_proj_w", "mlp_proj_w")):
                p.normal_(0.0, proj_std, generator=generator)
            elif name in ("wte", "wpe") or name.endswith(("attn_w", "fc_w")):
                p.normal_(0.0, init_std, generator=generator)
            elif name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()

    def num_parameters_per_model(self) -> int:
        return sum(p.numel() for p in self.parameters()) // self.n_models

    def forward(
        self,
        idx: Tensor,
        doc_ids: Tensor | None = None,
        mlp_masks: list[Tensor] | Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Logits ``[K, B, T, V]`` for token ids ``[K, B, T]`` (arguments as in :meth:`hidden`)."""
        if idx.dim() == 2:
            idx = idx.unsqueeze(0)
        K, B, T = idx.shape
        x = self.hidden(idx, doc_ids, mlp_masks, position_ids)
        logits = torch.bmm(x, self.wte.transpose(1, 2))  # tied embeddings: [K, B*T, V]
        return logits.view(K, B, T, -1)

    def hidden(
        self,
        idx: Tensor,
        doc_ids: Tensor | None = None,
        mlp_masks: list[Tensor] | Tensor | None = None,
        position_ids: Tensor | None = None,
    ) -> Tensor:
        """Final hidden states ``[K, B*T, d]`` (after ``ln_f``) for token ids ``[K, B, T]``.

        The logits are ``hidden @ wteᵀ``; training uses :func:`memlens.training.linear_cross_entropy`
        on these instead of materializing them.

        ``doc_ids`` (``[K, B, T]``, optional) keeps attention inside each packed document.
        ``mlp_masks`` (optional) multiplies each block's MLP hidden units; either one tensor for
        all blocks or a list with one per block, each broadcastable to ``[K, B, T, 4d]``.
        ``position_ids`` (``[K, B, T]``, optional) replaces positions ``0..T-1``, e.g. restarting at
        0 with every packed document so that a document is the same input wherever it lands.
        """
        if idx.dim() == 2:
            idx = idx.unsqueeze(0)
        K, B, T = idx.shape
        if K != self.n_models:
            raise ValueError(f"got tokens for {K} models, this module holds {self.n_models}")
        if T > self.config.seq_len:
            raise UserError(
                f"sequence of {T} tokens is longer than the model's context of {self.config.seq_len}."
            )
        # Token embedding: gather each model's own table.
        model_offsets = (torch.arange(K, device=idx.device) * self.config.vocab_size).view(K, 1, 1)
        tok = self.wte.reshape(K * self.config.vocab_size, -1)[idx + model_offsets]  # [K, B, T, d]
        if position_ids is None:
            pos = self.wpe[:, None, :T, :]
        else:  # gather each model's own position table
            pos_offsets = (torch.arange(K, device=idx.device) * self.config.seq_len).view(K, 1, 1)
            pos = self.wpe.reshape(K * self.config.seq_len, -1)[position_ids + pos_offsets]
        x = (tok + pos).reshape(K, B * T, -1)
        attn_mask = None
        if doc_ids is not None:
            attn_mask = document_attention_mask(doc_ids.reshape(K * B, T))
        for i, block in enumerate(self.blocks):
            mask = mlp_masks[i] if isinstance(mlp_masks, (list, tuple)) else mlp_masks
            x = block(x, (K, B, T), attn_mask, mask)
        return self.ln_f(x)

    # -- Hugging Face interoperability ----------------------------------------------------
    def hf_config(self):  # -> transformers.GPT2Config
        from transformers import GPT2Config

        c = self.config
        return GPT2Config(
            vocab_size=c.vocab_size,
            n_positions=c.seq_len,
            n_embd=c.d_model,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_inner=None,
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=None,
        )

    @torch.no_grad()
    def to_hf(self, k: int = 0):  # -> transformers.GPT2LMHeadModel
        """Export model ``k`` as a ``transformers.GPT2LMHeadModel`` (same weights, same outputs)."""
        from transformers import GPT2LMHeadModel

        hf = GPT2LMHeadModel(self.hf_config()).eval()
        sd = {
            "transformer.wte.weight": self.wte[k],
            "transformer.wpe.weight": self.wpe[k],
            "transformer.ln_f.weight": self.ln_f.weight[k, 0],
            "transformer.ln_f.bias": self.ln_f.bias[k, 0],
        }
        for i, b in enumerate(self.blocks):
            p = f"transformer.h.{i}."
            # HF GPT-2 uses Conv1D with weights stored [in, out], the layout used here.
            sd.update(
                {
                    p + "ln_1.weight": b.ln_1.weight[k, 0],
                    p + "ln_1.bias": b.ln_1.bias[k, 0],
                    p + "attn.c_attn.weight": b.attn_w[k],
                    p + "attn.c_attn.bias": b.attn_b[k, 0],
                    p + "attn.c_proj.weight": b.attn_proj_w[k],
                    p + "attn.c_proj.bias": b.attn_proj_b[k, 0],
                    p + "ln_2.weight": b.ln_2.weight[k, 0],
                    p + "ln_2.bias": b.ln_2.bias[k, 0],
                    p + "mlp.c_fc.weight": b.fc_w[k],
                    p + "mlp.c_fc.bias": b.fc_b[k, 0],
                    p + "mlp.c_proj.weight": b.mlp_proj_w[k],
                    p + "mlp.c_proj.bias": b.mlp_proj_b[k, 0],
                }
            )
        own = hf.state_dict()
        for name, value in sd.items():
            own[name].copy_(value.detach().to(own[name].dtype).cpu())
        hf.tie_weights()
        return hf

    @classmethod
    @torch.no_grad()
    def from_hf(cls, hf_model) -> GPT:
        """Build a single-model :class:`GPT` from a ``GPT2LMHeadModel`` (inverse of :meth:`to_hf`)."""
        c = hf_model.config
        config = GPTConfig(c.vocab_size, c.n_positions, c.n_layer, c.n_embd, c.n_head)
        model = cls(config, n_models=1)
        sd = hf_model.state_dict()
        model.wte.copy_(sd["transformer.wte.weight"][None])
        model.wpe.copy_(sd["transformer.wpe.weight"][None])
        model.ln_f.weight.copy_(sd["transformer.ln_f.weight"].view(1, 1, -1))
        model.ln_f.bias.copy_(sd["transformer.ln_f.bias"].view(1, 1, -1))
        names = {
            "ln_1.weight": "ln_1.weight", "ln_1.bias": "ln_1.bias",
            "attn_w": "attn.c_attn.weight", "attn_b": "attn.c_attn.bias",
            "attn_proj_w": "attn.c_proj.weight", "attn_proj_b": "attn.c_proj.bias",
            "ln_2.weight": "ln_2.weight", "ln_2.bias": "ln_2.bias",
            "fc_w": "mlp.c_fc.weight", "fc_b": "mlp.c_fc.bias",
            "mlp_proj_w": "mlp.c_proj.weight", "mlp_proj_b": "mlp.c_proj.bias",
        }  # fmt: skip
        for i, b in enumerate(model.blocks):
            own = dict(b.named_parameters())
            for ours, theirs in names.items():
                src = sd[f"transformer.h.{i}.{theirs}"]
                own[ours].copy_(src.reshape(own[ours].shape))
        return model

    def select(self, indices: list[int]) -> GPT:
        """A new module holding copies of the models at ``indices`` (for export or scoring)."""
        out = GPT(self.config, n_models=len(indices))
        idx = torch.as_tensor(indices, device=self.wte.device)
        with torch.no_grad():
            for (_name, p_out), (_, p_in) in zip(
                out.named_parameters(), self.named_parameters(), strict=True
            ):
                p_out.copy_(p_in.index_select(0, idx).to(p_out.device))
        return out.to(self.wte.device)
