"""MemSinks masks: general MLP units always on, a sink pool masked per sequence ID.

Ghosal, Maini & Raghunathan, "Memorization Sinks: Isolating Memorization during LLM Training",
ICML 2025, arXiv:2507.09937 (ancestor: example-tied dropout, Maini et al. 2023, "Can neural
network memorization be localized?").

The hidden units of every MLP (the ``H`` units between the nonlinearity and the down-projection)
are split into

* **general units**: the first ``n_general = round(p_gen * H)`` units, multiplied by 1 for every
  sequence;
* **the sink pool**: the remaining ``n_sink = H - n_general`` units. Each training sequence has a
  *sequence ID* (:func:`sequence_ids`: a 64-bit BLAKE2b hash of its tokens), and a deterministic
  function of the ID (and of the layer) selects exactly ``k = round(p_mem * n_sink)`` sink units
  that are on (multiplied by 1) for that sequence; the others are multiplied by 0.

The same ID gives the same mask every time the sequence repeats, so a repeated sequence always
trains the same sinks. There is no extra loss term. Because exactly ``k`` units are chosen and
``1 <= k <= n_sink - 1`` is enforced, no ID ever gets an all-ones mask (which would make its sinks
behave like general units) or an all-zeros one. Layers draw independent subsets (the layer index
is mixed into the seed). The subset is the ``k`` sink units with the smallest
SplitMix64 outputs of a stream seeded by ``(ID, layer, mask_seed)``: pure integer arithmetic,
identical on every platform and library version.

Inference modes (:data:`MODES`):

* ``"own"``: each sequence's own mask, as in training (needs the sequence's ID).
* ``"drop"``: every sink unit off and general units multiplied by ``drop_scale``, which defaults
  to ``(p_gen + p_mem) / p_gen`` (1/0.7 = 1.4286 at the defaults) as the Concepts page
  (docs/concepts.md §5) specifies: the model "without memorization". Note that the *expected*
  fraction of units on during training is ``p_gen + (1 - p_gen) * p_mem`` (0.79 at the defaults),
  so the default factor is larger than the ratio of active mass (0.79/0.7 = 1.129); pass
  ``drop_scale=1.0`` for no rescaling. :func:`memlens.sinks.recipe.run` reports the
  validation loss under both.
* ``"mean"``: every unit on, sink units multiplied by ``p_mem`` (each sink unit's probability of
  being on for a random ID: the expected training mask).
* ``"all"``: every unit multiplied by 1 (an unmasked model; for standard models and ablations).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from memlens.errors import UserError

MODES = ("own", "drop", "mean", "all")

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def splitmix64_mix(z: np.ndarray) -> np.ndarray:
    """The SplitMix64 output function (Steele, Lea & Flood 2014) on uint64 arrays."""
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def splitmix64_stream(seed: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` outputs of SplitMix64 seeded with each of ``seed`` (shape ``[..., n]``).

    Output ``j`` is ``mix(seed + (j + 1) * 0x9E3779B97F4A7C15)`` modulo 2^64, the reference
    generator (seed 1234567 gives 6457827717110365317 first).
    """
    seed = np.asarray(seed, dtype=np.uint64)[..., None]
    steps = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return splitmix64_mix(seed + steps * _GOLDEN)


def sequence_id(tokens: Sequence[int] | np.ndarray | Tensor) -> int:
    """The sequence ID: the first 8 bytes of BLAKE2b over the tokens as little-endian int64.

    Depends only on the token values and their order (not on the array's dtype or device).
    """
    arr = np.ascontiguousarray(np.asarray(torch.as_tensor(tokens).cpu(), dtype="<i8").reshape(-1))
    return int.from_bytes(hashlib.blake2b(arr.tobytes(), digest_size=8).digest(), "little")


def sequence_ids(
    tokens: np.ndarray | Tensor | Sequence[np.ndarray], lengths: Sequence[int] | None = None
) -> np.ndarray:
    """Sequence IDs (uint64 ``[N]``) of ``N`` sequences: rows of ``[N, T]`` ids, or a list of arrays.

    With ``lengths``, only the first ``lengths[i]`` tokens of row ``i`` are hashed (right padding
    does not change a sequence's ID).
    """
    if isinstance(tokens, (list, tuple)):
        rows = list(tokens)
    else:
        arr = np.asarray(torch.as_tensor(tokens).cpu())
        if arr.ndim != 2:
            raise ValueError("tokens must be [N, T] or a list of 1-D arrays")
        rows = list(arr)
    if lengths is not None:
        rows = [r[: int(n)] for r, n in zip(rows, lengths, strict=True)]
    return np.array([sequence_id(r) for r in rows], dtype=np.uint64)


@dataclass(frozen=True)
class SinkConfig:
    """How MLP hidden units are split and masked (Ghosal et al. 2025, arXiv:2507.09937).

    Parameters
    ----------
    p_gen:
        Fraction of each MLP's hidden units that are general (always on); the first
        ``round(p_gen * H)`` units. Default 0.7.
    p_mem:
        Fraction of the sink pool that each sequence ID switches on. Default 0.3.
    drop_scale:
        Factor on general units when sinks are dropped; ``None`` means ``(p_gen + p_mem) / p_gen``.
    mask_seed:
        Mixed into every ID, so two runs can use unrelated masks for the same data.
    """

    p_gen: float = 0.7
    p_mem: float = 0.3
    drop_scale: float | None = None
    mask_seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.p_gen < 1.0:
            raise UserError(f"p_gen must be strictly between 0 and 1, got {self.p_gen}.")
        if not 0.0 < self.p_mem < 1.0:
            raise UserError(f"p_mem must be strictly between 0 and 1, got {self.p_mem}.")
        if self.drop_scale is not None and not self.drop_scale > 0:
            raise UserError(f"drop_scale must be positive, got {self.drop_scale}.")

    @property
    def sink_drop_scale(self) -> float:
        """The factor on general units in ``"drop"`` mode."""
        if self.drop_scale is not None:
            return float(self.drop_scale)
        return (self.p_gen + self.p_mem) / self.p_gen

    def split(self, hidden: int) -> tuple[int, int, int]:
        """``(n_general, n_sink, k)`` for an MLP with ``hidden`` units; ``k`` sinks are on per ID.

        Raises :class:`UserError` when the sink pool is too small for a mask that is neither all
        ones nor all zeros.
        """
        n_general = int(round(self.p_gen * hidden))
        n_sink = hidden - n_general
        k = int(round(self.p_mem * n_sink))
        if n_sink < 2 or not 1 <= k <= n_sink - 1:
            raise UserError(
                f"an MLP with {hidden} hidden units and p_gen={self.p_gen}, p_mem={self.p_mem} "
                f"has {n_sink} sink units of which {k} would be on; need at least 1 on and 1 off."
            )
        return n_general, n_sink, k

    def active_fraction(self, hidden: int) -> float:
        """Fraction of the ``hidden`` units that are on for one sequence during training."""
        n_general, _, k = self.split(hidden)
        return (n_general + k) / hidden

    def to_dict(self) -> dict:
        return {**asdict(self), "sink_drop_scale": self.sink_drop_scale}


def sink_subsets(
    ids: np.ndarray, n_layer: int, n_sink: int, k: int, mask_seed: int = 0
) -> np.ndarray:
    """Boolean ``[N, n_layer, n_sink]``: which sink units are on for each ID in each layer.

    Exactly ``k`` per (ID, layer): the ``k`` units with the smallest outputs of a SplitMix64
    stream seeded by ``mix(mix(ID ^ mix(mask_seed)) + layer)`` (ties impossible to matter: a
    stable sort breaks them by unit index).
    """
    ids = np.asarray(ids, dtype=np.uint64).reshape(-1)
    salt = splitmix64_mix(np.array([mask_seed], dtype=np.uint64))[0]
    base = splitmix64_mix(ids ^ salt)  # [N]
    with np.errstate(over="ignore"):
        seeds = splitmix64_mix(
            base[:, None] + np.arange(n_layer, dtype=np.uint64)[None, :]
        )  # [N, L]
    scores = splitmix64_stream(seeds, n_sink)  # [N, L, n_sink]
    order = np.argsort(scores, axis=-1, kind="stable")[..., :k]
    out = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(out, order, True, axis=-1)
    return out


def own_masks(ids: np.ndarray, n_layer: int, hidden: int, config: SinkConfig) -> np.ndarray:
    """Float32 ``[N, n_layer, hidden]`` training masks: general units 1, each ID's sinks 1, rest 0."""
    n_general, n_sink, k = config.split(hidden)
    ids = np.asarray(ids, dtype=np.uint64).reshape(-1)
    out = np.ones((len(ids), n_layer, hidden), dtype=np.float32)
    out[:, :, n_general:] = sink_subsets(ids, n_layer, n_sink, k, config.mask_seed)
    return out


def mode_mask(mode: str, hidden: int, config: SinkConfig) -> np.ndarray:
    """Float32 ``[hidden]`` mask shared by every sequence for ``"drop"``, ``"mean"`` or ``"all"``."""
    n_general, _, _ = config.split(hidden)
    m = np.ones(hidden, dtype=np.float32)
    if mode == "drop":
        m[:n_general] = config.sink_drop_scale
        m[n_general:] = 0.0
    elif mode == "mean":
        m[n_general:] = config.p_mem
    elif mode != "all":
        raise UserError(f"unknown sink mode '{mode}'; use one of {', '.join(MODES)}.")
    return m


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"unknown sink mode '{mode}'; use one of {', '.join(MODES)}.")
    return mode


def batch_masks(
    mode: str,
    config: SinkConfig,
    n_layer: int,
    hidden: int,
    ids: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> list[Tensor]:
    """Per-layer masks for memlens's :class:`~memlens.models.gpt.GPT` (``mlp_masks=``).

    ``"own"`` needs ``ids`` (``[B]``) and returns ``[1, B, 1, hidden]`` per layer; the shared modes
    return ``[hidden]`` per layer (broadcast over models, rows and positions).
    """
    check_mode(mode)
    if mode == "own":
        if ids is None:
            raise ValueError("mode 'own' needs the sequence ids")
        m = torch.from_numpy(own_masks(ids, n_layer, hidden, config)).to(device)  # [B, L, H]
        return [m[None, :, layer, None, :] for layer in range(n_layer)]
    m = torch.from_numpy(mode_mask(mode, hidden, config)).to(device)
    return [m] * n_layer
