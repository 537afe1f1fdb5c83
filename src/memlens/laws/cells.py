"""Helpers shared by the laws experiments' cells."""

from __future__ import annotations

from typing import Any


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _stack(tensors: list[Any]) -> Any:
    """Stack ``[n_k, S]`` tensors into ``[K, max n_k, S]`` (zero padding beyond each n_k)."""
    import torch

    n_max = max(t.shape[0] for t in tensors)
    return torch.stack([torch.nn.functional.pad(t, (0, 0, 0, n_max - t.shape[0])) for t in tensors])


def _cell_key(kind: str, ident: dict[str, Any]) -> str:
    from memlens.store import config_hash

    return f"{kind}-{config_hash(ident)}"
