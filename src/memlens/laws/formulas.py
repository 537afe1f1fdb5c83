"""Sizing laws: capacity, capacity ratio, regimes and the membership-inference scaling law.

All quantities are in **bits** and follow Morris et al. 2025, "How much do language models
memorize?" (arXiv:2505.24832):

* **Capacity** of a GPT-style model: ``alpha * params`` bits, with ``alpha`` = 3.64 bits per
  parameter (the paper's headline figure; a memlens capacity run measures its own, see
  :mod:`memlens.capacity`).
* **Dataset bits**: the information a dataset can hold. For ``N`` sequences of ``S`` tokens over a
  vocabulary of ``V`` the uniform *upper bound* is ``N * S * log2 V``; with a measured entropy of
  ``b`` bits per token it is ``N * S * b``.
* **Capacity ratio** ``= dataset bits / capacity bits``. The paper finds that a model memorizes
  until its capacity is full and that held-out loss peaks (double descent) where the ratio is
  about 1. memlens names three regimes around that point (see :data:`REGIME_THRESHOLDS`).
* **Membership-inference scaling law**: the F1 score of a loss-threshold attack falls from about
  1 towards 1/2 as the dataset grows past what the model can store,

      ``F1 = 1/2 * (1 + c1 * sigmoid(c2 - c3 * |D| / Capacity))``

  with ``|D|`` in sequences and Capacity in bits. **The law as printed in the paper is wrong**:
  ``F1 = 1/2 (1 + c1 sigma(c2 (Capacity/|D| + c3)))`` with ``c1 = 1.34, c2 = -0.034,
  c3 = -33.14`` tends to 1.006 (not 1/2) as ``|D| -> infinity`` and *rises* with ``|D|``. memlens
  uses the corrected constants ``c1 = 1.3405, c2 = 1.1159, c3 = 120.61`` (:data:`CORRECTED`),
  which reproduce the six published validation targets (:data:`PUBLISHED_VALIDATION`) to within
  1e-5 and have the right limits; :func:`fit_mia_law` fits the constants to your own
  measurements.

Examples
--------
>>> round(capacity_bits(123_702_528), 0)
450277202.0
>>> round(float(mia_f1(1_498_634, capacity_bits(123_702_528))), 3)
0.95
>>> regime(1.0)
'critical'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from memlens.errors import UserError
from memlens.units import PUBLISHED_ALPHA, capacity_bits, uniform_entropy_bits
from memlens.units import positive as _positive

#: Capacity-ratio thresholds between the regimes. ``ratio < 0.5``: memorization (the model can
#: store every bit of its data with room to spare); ``0.5 <= ratio < 2``: critical (within a
#: factor of 2 of capacity, where Morris et al. 2025 find the double-descent peak at ratio ~ 1);
#: ``ratio >= 2``: generalization (the data cannot be stored; the model must compress it).
#: The factor-of-2 band is a memlens convention, not a number from the paper.
REGIME_THRESHOLDS: dict[str, float] = {"critical_from": 0.5, "generalization_from": 2.0}

REGIME_DOC = (
    "capacity ratio = dataset bits / capacity bits; memorization below 0.5, critical from 0.5 "
    "to 2 (double-descent peak near 1, Morris et al. 2025), generalization from 2; the factor-2 "
    "band is a memlens convention"
)


@dataclass(frozen=True)
class MiaLawConstants:
    """Constants of ``F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D| / Capacity))`` (|D| in sequences, bits)."""

    c1: float
    c2: float
    c3: float

    def as_array(self) -> np.ndarray:
        return np.array([self.c1, self.c2, self.c3], dtype=np.float64)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: Corrected constants that reproduce the published validation targets (Concepts §2 (docs/concepts.md)).
CORRECTED = MiaLawConstants(c1=1.3405, c2=1.1159, c3=120.61)

#: The constants printed in Morris et al. 2025 for ``F1 = 1/2 (1 + c1 sigma(c2 (C/|D| + c3)))``.
#: Kept only to show the error; never used for prediction.
PRINTED = {"c1": 1.34, "c2": -0.034, "c3": -33.14}

LAW_FORM = "F1 = 1/2 * (1 + c1 * sigmoid(c2 - c3 * n_sequences / capacity_bits))"

LAW_NOTE = (
    "Morris et al. 2025 (arXiv:2505.24832) print F1 = 1/2 (1 + c1 sigma(c2 (Capacity/|D| + c3))) "
    "with c1=1.34, c2=-0.034, c3=-33.14, which tends to 1.006 (not 0.5) as |D| grows; memlens "
    "uses the corrected form above, calibrated on 64-token sequences."
)

#: Published validation of the MIA law (loss-threshold attack, 64-token sequences): params,
#: dataset size in sequences, the F1 the law was asked to hit, and the F1 observed.
PUBLISHED_VALIDATION: tuple[dict[str, float], ...] = (
    {"params": 1_556_075_200, "n_sequences": 170_654_583, "target_f1": 0.55, "observed_f1": 0.546},
    {"params": 1_556_075_200, "n_sequences": 76_795_021, "target_f1": 0.75, "observed_f1": 0.711},
    {"params": 1_556_075_200, "n_sequences": 18_851_574, "target_f1": 0.95, "observed_f1": 0.959},
    {"params": 123_702_528, "n_sequences": 13_566_442, "target_f1": 0.55, "observed_f1": 0.534},
    {"params": 123_702_528, "n_sequences": 6_104_935, "target_f1": 0.75, "observed_f1": 0.657},
    {"params": 123_702_528, "n_sequences": 1_498_634, "target_f1": 0.95, "observed_f1": 0.980},
)

#: Bounds of the fitted constants (c1, c2, c3). ``c1`` above 2 only lifts the sigmoid's upper
#: part further above F1 = 1, where no measurement can see it, and makes the fit unidentifiable.
FIT_BOUNDS = ((0.0, -20.0, 0.0), (2.0, 20.0, np.inf))


# --------------------------------------------------------------------------------------------
# Forward quantities
# --------------------------------------------------------------------------------------------


def bits_per_sequence(
    seq_len: int, vocab_size: int | None = None, bits_per_token: float | None = None
) -> float:
    """Information in one sequence of ``seq_len`` tokens, in bits.

    ``seq_len * bits_per_token`` when a measured entropy is given, else the uniform upper bound
    ``seq_len * log2(vocab_size)`` (exact for uniform random tokens, a loose bound for text).
    Given both, a measured entropy above ``log2(vocab_size)``, more than any token of that
    vocabulary can carry, is refused.
    """
    S = _positive(seq_len, "the sequence length")
    if bits_per_token is not None:
        h = _positive(bits_per_token, "bits per token")
        if vocab_size is not None:
            V = _positive(vocab_size, "the vocabulary size")
            if h > math.log2(V) * (1 + 1e-12):
                raise UserError(
                    f"{bits_per_token} bits per token is more than a token of a {V:,.0f}-token "
                    f"vocabulary can carry (log2 V = {math.log2(V):.4g}); measured entropies are "
                    "at most that."
                )
        return S * h
    if vocab_size is None:
        raise UserError("give the vocabulary size `vocab_size` or a measured `bits_per_token`.")
    V = _positive(vocab_size, "the vocabulary size")
    if V < 2:
        raise UserError(f"the vocabulary size must be at least 2, got {vocab_size}.")
    return uniform_entropy_bits(S, V)


def dataset_bits(
    n_sequences: float,
    seq_len: int,
    vocab_size: int | None = None,
    bits_per_token: float | None = None,
) -> float:
    """Dataset bits ``n_sequences * bits_per_sequence(...)`` (see :func:`bits_per_sequence`)."""
    return _positive(n_sequences, "the number of sequences") * bits_per_sequence(
        seq_len, vocab_size, bits_per_token
    )


def capacity_ratio(data_bits: float, cap_bits: float) -> float:
    """``dataset bits / capacity bits``: below 1 the model can store its whole dataset."""
    return _positive(data_bits, "dataset bits") / _positive(cap_bits, "capacity bits")


def regime(ratio: float) -> str:
    """``memorization`` / ``critical`` / ``generalization`` for a capacity ratio.

    Thresholds: :data:`REGIME_THRESHOLDS` (0.5 and 2, a factor of 2 around the double-descent
    peak at ratio ~ 1 of Morris et al. 2025).

    Examples
    --------
    >>> [regime(r) for r in (0.1, 0.5, 1.9, 2.0)]
    ['memorization', 'critical', 'critical', 'generalization']
    """
    r = float(ratio)
    if r < REGIME_THRESHOLDS["critical_from"]:
        return "memorization"
    if r < REGIME_THRESHOLDS["generalization_from"]:
        return "critical"
    return "generalization"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(z)


def mia_f1(
    n_sequences: float | np.ndarray,
    cap_bits: float | np.ndarray,
    constants: MiaLawConstants = CORRECTED,
) -> np.ndarray:
    """Predicted F1 of a loss-threshold membership-inference attack (the corrected law).

    ``F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D| / Capacity))`` with ``|D|`` in sequences and Capacity in
    bits (Morris et al. 2025, arXiv:2505.24832, with corrected constants: the printed law tends
    to 1.006 as |D| grows; see the module docstring). The raw law is returned: with the default
    constants it tends to 1/2 as ``|D| -> infinity`` and to 1.0048 as ``|D| -> 0`` (clip to 1 for
    display, as ``memlens size`` does).

    >>> round(float(mia_f1(170_654_583, capacity_bits(1_556_075_200))), 4)
    0.55
    """
    x = np.asarray(n_sequences, dtype=np.float64) / np.asarray(cap_bits, dtype=np.float64)
    c = constants
    return 0.5 * (1.0 + c.c1 * _sigmoid(c.c2 - c.c3 * x))


def mia_f1_printed(n_sequences: float | np.ndarray, cap_bits: float | np.ndarray) -> np.ndarray:
    """The law **as printed** in Morris et al. 2025 (wrong; kept to document the error).

    ``F1 = 1/2 (1 + 1.34 sigmoid(-0.034 (Capacity/|D| - 33.14)))``: it rises with ``|D|`` and
    tends to 1.006 instead of 1/2.
    """
    ratio = np.asarray(cap_bits, dtype=np.float64) / np.asarray(n_sequences, dtype=np.float64)
    p = PRINTED
    return 0.5 * (1.0 + p["c1"] * _sigmoid(p["c2"] * (ratio + p["c3"])))


def mia_f1_ceiling(constants: MiaLawConstants = CORRECTED) -> float:
    """The law's value as ``|D| / Capacity -> 0``: ``1/2 (1 + c1 sigmoid(c2))``."""
    return float(0.5 * (1.0 + constants.c1 * _sigmoid(np.float64(constants.c2))))


def ratio_for_f1(target_f1: float, constants: MiaLawConstants = CORRECTED) -> float:
    """The ``|D| / Capacity`` (sequences per bit) at which the law predicts ``target_f1``.

    The law decreases in ``|D| / Capacity``, so predicted F1 <= target exactly when
    ``|D| / Capacity >= ratio_for_f1(target)``. Returns ``0.0`` when every dataset meets the target
    (a target of 1, which no F1 exceeds, or one at or above the law's ceiling). Raises :class:`UserError` for targets at or below
    1/2, which the law approaches but never reaches.
    """
    try:
        t = float(target_f1)
    except (TypeError, ValueError):
        raise UserError(f"`target_f1` must be a number, got {target_f1!r}.") from None
    if not math.isfinite(t) or t <= 0.5 or t > 1.0:
        raise UserError(
            f"target F1 must be above 0.5 (the chance level the law only approaches) and at most 1, got {target_f1}."
        )
    c = constants
    y = (2.0 * t - 1.0) / c.c1
    if t >= 1.0 or y >= 1.0 or t >= mia_f1_ceiling(c):
        return 0.0
    z = math.log(y / (1.0 - y))  # logit
    return max(0.0, (c.c2 - z) / c.c3)


def max_params_for_f1(
    n_sequences: float,
    target_f1: float,
    alpha: float = PUBLISHED_ALPHA,
    constants: MiaLawConstants = CORRECTED,
) -> float:
    """Largest parameter count whose predicted MIA F1 on ``n_sequences`` is at most ``target_f1``.

    ``inf`` when every model size meets the target.
    """
    n = _positive(n_sequences, "the number of sequences")
    x = ratio_for_f1(target_f1, constants)
    if x == 0.0:
        return math.inf
    return n / (x * _positive(alpha, "alpha (bits per parameter)"))


def min_sequences_for_f1(
    params: float,
    target_f1: float,
    alpha: float = PUBLISHED_ALPHA,
    constants: MiaLawConstants = CORRECTED,
) -> float:
    """Smallest dataset (sequences) that keeps predicted MIA F1 at most ``target_f1``.

    ``0`` when every dataset size meets the target.
    """
    x = ratio_for_f1(target_f1, constants)
    return x * capacity_bits(params, alpha)
