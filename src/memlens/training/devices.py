"""Where and on how many threads memlens computes: one device picker, one thread setter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from memlens.errors import UserError


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device for ``device``: ``auto``/``None`` picks CUDA, then Apple MPS, then CPU.

    Anything else must name a valid device that is present (``cpu``, ``cuda``, ``cuda:N``,
    ``mps``); otherwise :class:`UserError`.
    """
    if isinstance(device, torch.device):
        return device
    if device is None or str(device).lower() == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' was requested but no CUDA device is available.")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise UserError(f"device '{device}' was requested but Apple MPS is not available.")
    return dev


def check_device_name(device: str | torch.device | None) -> None:
    """Refuse a device name torch does not know (:class:`UserError`), without asking whether that
    device is present here: a sweep's cells may run on Ray workers that have a GPU this process
    lacks, and :func:`pick_device` checks presence where a cell runs."""
    if device is None or isinstance(device, torch.device) or str(device).lower() == "auto":
        return
    try:
        torch.device(str(device))
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device '{device}'; use auto, cpu, cuda, cuda:N or mps.") from None


def set_threads(n: int) -> None:
    """Use ``n`` torch CPU threads (at least 1)."""
    if n < 0:
        raise UserError(f"the thread count must be 0 (torch's default) or positive, got {n}.")
    torch.set_num_threads(max(1, n))


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (``0``: leave the setting alone)."""
    old = torch.get_num_threads()
    if n > 0:
        set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
