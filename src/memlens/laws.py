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

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memlens.errors import UserError

PUBLISHED_ALPHA = 3.64  # bits/param, headline figure of Morris et al. 2025 (same as capacity.py)

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


#: Corrected constants that reproduce the published validation targets (science.md §2).
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


def _positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a positive number, got {value!r}.") from None
    if not math.isfinite(v) or v <= 0:
        raise UserError(f"{name} must be positive, got {v:g}.")
    return v


def capacity_bits(params: float, alpha: float = PUBLISHED_ALPHA) -> float:
    """Model capacity ``alpha * params`` in bits (Morris et al. 2025, arXiv:2505.24832).

    Parameters
    ----------
    params: parameter count (> 0).
    alpha: bits per parameter (default 3.64, the paper's headline figure).
    """
    return _positive(alpha, "alpha (bits per parameter)") * _positive(params, "the parameter count")


def bits_per_sequence(
    seq_len: int, vocab_size: int | None = None, bits_per_token: float | None = None
) -> float:
    """Information in one sequence of ``seq_len`` tokens, in bits.

    ``seq_len * bits_per_token`` when a measured entropy is given, else the uniform upper bound
    ``seq_len * log2(vocab_size)`` (exact for uniform random tokens, a loose bound for text).
    """
    S = _positive(seq_len, "the sequence length")
    if bits_per_token is not None:
        return S * _positive(bits_per_token, "bits per token")
    if vocab_size is None:
        raise UserError("give the vocabulary size (--vocab) or a measured --bits-per-token.")
    V = _positive(vocab_size, "the vocabulary size")
    if V < 2:
        raise UserError(f"the vocabulary size must be at least 2, got {vocab_size}.")
    return S * math.log2(V)


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
        raise UserError(f"--target-f1 must be a number, got {target_f1!r}.") from None
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


# --------------------------------------------------------------------------------------------
# Parameter counts from a Hugging Face config.json, and alpha from a capacity.json
# --------------------------------------------------------------------------------------------

SUPPORTED_MODEL_TYPES = ("gpt2", "llama", "mistral", "qwen2", "gpt_neox")


def _get(cfg: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    if default is None:
        raise UserError(
            f"the model config has no {names[0]!r} entry, which the parameter count needs."
        )
    return default


def _ints(cfg: Mapping[str, Any], **specs: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for key, names in specs.items():
        v = _get(cfg, *names)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise UserError(
                f"the model config's {names[0]!r} must be a positive integer, got {v!r}."
            )
        out[key] = v
    return out


def params_from_hf_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter count of a Hugging Face causal LM from its ``config.json`` contents.

    Counts every trainable tensor once (tied input/output embeddings count once), the way
    ``sum(p.numel() for p in model.parameters())`` does. Missing keys take the Transformers
    defaults of that model type. Supported ``model_type`` values: ``gpt2``
    (``V*d + n_positions*d + L*(12 d^2 + 13 d) + 2 d`` with the default 4d MLP and tied
    embeddings, as in Morris et al. 2025), ``llama``/``mistral``/``qwen2`` (RMSNorm, gated MLP,
    grouped-query attention) and ``gpt_neox`` (Pythia).

    Returns ``{"params", "model_type", "vocab_size", "n_positions", "tied_embeddings"}``.
    """
    if not isinstance(cfg, Mapping):
        raise UserError("the model config must be a JSON object.")
    mtype = cfg.get("model_type")
    if mtype not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"cannot count parameters of model_type {mtype!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)} "
            "(or pass --params)."
        )
    if mtype == "gpt2":
        v = _ints(cfg, V=("vocab_size",), d=("n_embd", "hidden_size"), L=("n_layer", "num_hidden_layers"),
                  P=("n_positions", "max_position_embeddings"))  # fmt: skip
        V, d, L, P = v["V"], v["d"], v["L"], v["P"]
        inner = cfg.get("n_inner") or 4 * d
        tied = bool(cfg.get("tie_word_embeddings", True))
        block = (
            2 * d
            + (d * 3 * d + 3 * d)
            + (d * d + d)
            + 2 * d
            + (d * inner + inner)
            + (inner * d + d)
        )
        params = V * d + P * d + L * block + 2 * d + (0 if tied else V * d)
        positions: int | None = P
    elif mtype in ("llama", "mistral", "qwen2"):
        v = _ints(cfg, V=("vocab_size",), d=("hidden_size",), L=("num_hidden_layers",),
                  inner=("intermediate_size",), h=("num_attention_heads",))  # fmt: skip
        V, d, L, inner, h = v["V"], v["d"], v["L"], v["inner"], v["h"]
        h_kv = int(cfg.get("num_key_value_heads") or h)
        hd = int(cfg.get("head_dim") or d // h)
        tied = bool(cfg.get("tie_word_embeddings", False))
        qkv_bias = True if mtype == "qwen2" else bool(cfg.get("attention_bias", False))
        o_bias = False if mtype == "qwen2" else bool(cfg.get("attention_bias", False))
        mlp_bias = bool(cfg.get("mlp_bias", False)) if mtype == "llama" else False
        attn = d * h * hd + 2 * d * h_kv * hd + h * hd * d
        attn += (h * hd + 2 * h_kv * hd if qkv_bias else 0) + (d if o_bias else 0)
        mlp = 3 * d * inner + ((2 * inner + d) if mlp_bias else 0)
        params = V * d + L * (attn + mlp + 2 * d) + d + (0 if tied else V * d)
        positions = cfg.get("max_position_embeddings")
    else:  # gpt_neox (Pythia)
        v = _ints(cfg, V=("vocab_size",), d=("hidden_size",), L=("num_hidden_layers",),
                  inner=("intermediate_size",))  # fmt: skip
        V, d, L, inner = v["V"], v["d"], v["L"], v["inner"]
        bias = bool(cfg.get("attention_bias", True))
        tied = bool(cfg.get("tie_word_embeddings", False))
        attn = d * 3 * d + d * d + ((3 * d + d) if bias else 0)
        block = 4 * d + attn + (d * inner + inner) + (inner * d + d)
        params = V * d + L * block + 2 * d + (0 if tied else V * d)
        positions = cfg.get("max_position_embeddings")
    return {
        "params": int(params),
        "model_type": mtype,
        "vocab_size": int(cfg["vocab_size"]),
        "n_positions": positions,
        "tied_embeddings": tied,
    }


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read ``--config``: a Hugging Face ``config.json`` or a memlens ``capacity.json``.

    Returns ``{"kind": "hf", ...params_from_hf_config...}`` or
    ``{"kind": "capacity", "alpha", "all_saturated", "n_models", ...}`` (the measured alpha of a
    memlens capacity run, :mod:`memlens.capacity`).
    """
    p = Path(path)
    if p.is_dir():
        p = p / "capacity.json" if (p / "capacity.json").exists() else p / "config.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file {p} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"cannot read config file {p}: {getattr(exc, 'strerror', None) or exc}."
        ) from None
    except json.JSONDecodeError as exc:
        raise UserError(
            f"config file {p} is not valid JSON ({exc.msg} at line {exc.lineno})."
        ) from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p} must hold a JSON object.")
    if "alpha_bits_per_param" in data:
        alpha = data["alpha_bits_per_param"]
        if not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
            raise UserError(f"capacity file {p} has an invalid alpha_bits_per_param {alpha!r}.")
        models = data.get("models") or []
        return {
            "kind": "capacity",
            "path": str(p),
            "alpha": float(alpha),
            "alpha_se": data.get("alpha_se"),
            "all_saturated": data.get("all_saturated"),
            "n_models": len(models),
            "param_range": [min(m["params"] for m in models), max(m["params"] for m in models)]
            if models and all("params" in m for m in models)
            else None,
            "precision": data.get("precision"),
        }
    if "model_type" in data:
        return {"kind": "hf", "path": str(p), **params_from_hf_config(data)}
    raise UserError(
        f"config file {p} is neither a Hugging Face config.json (no model_type) nor a memlens "
        "capacity.json (no alpha_bits_per_param)."
    )


# --------------------------------------------------------------------------------------------
# memlens size
# --------------------------------------------------------------------------------------------


@dataclass
class SizeReport:
    """Everything ``memlens size`` reports (JSON-ready through :meth:`to_dict`)."""

    alpha: float
    alpha_source: str
    seq_len: int
    params: float | None = None
    capacity_bits: float | None = None
    n_sequences: float | None = None
    tokens: float | None = None
    vocab_size: int | None = None
    bits_per_sequence: float | None = None
    bits_source: str | None = None
    dataset_bits: float | None = None
    capacity_ratio: float | None = None
    regime: str | None = None
    tokens_per_param: float | None = None
    predicted_mia_f1: float | None = None
    predicted_mia_f1_unclipped: float | None = None
    sequences_per_capacity_bit: float | None = None
    inverse: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    law: dict[str, Any] = field(default_factory=dict)
    regime_thresholds: dict[str, float] = field(default_factory=lambda: dict(REGIME_THRESHOLDS))
    regime_rule: str = REGIME_DOC
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and math.isinf(v):
                out[k] = None
        for k in ("params", "n_sequences", "tokens"):
            v = out[k]
            if isinstance(v, float) and v.is_integer():
                out[k] = int(v)
        return out


def size(
    *,
    params: float | None = None,
    n_sequences: float | None = None,
    tokens: float | None = None,
    seq_len: int = 64,
    vocab_size: int | None = None,
    bits_per_token: float | None = None,
    alpha: float | None = None,
    target_f1: float | None = None,
    config: str | Path | None = None,
    constants: MiaLawConstants = CORRECTED,
) -> SizeReport:
    """Where a model and dataset sit: capacity, capacity ratio, regime and predicted MIA F1.

    Parameters
    ----------
    params: parameter count (or take it from a Hugging Face ``config``).
    n_sequences / tokens: dataset size in sequences, or in tokens (``n = tokens / seq_len``).
    seq_len: tokens per sequence (the MIA law was calibrated on 64).
    vocab_size: for the uniform upper bound ``S * log2 V`` bits per sequence (default: the HF
        config's vocabulary).
    bits_per_token: a measured entropy (bits/token) instead of the uniform bound.
    alpha: bits per parameter (default 3.64, or the measured alpha of a capacity.json ``config``).
    target_f1: also answer the inverse questions: the largest model (for this dataset) and the
        smallest dataset (for this model) whose predicted MIA F1 is at most ``target_f1``.
    config: a Hugging Face ``config.json`` (parameter count, vocabulary) or a memlens
        ``capacity.json`` (measured alpha).

    Capacity ``= alpha * params`` bits; dataset bits ``= n_sequences * bits_per_sequence``;
    capacity ratio = dataset / capacity; MIA F1 from the corrected law of Morris et al. 2025
    (arXiv:2505.24832; the printed law tends to 1.006, see :data:`LAW_NOTE`), clipped to 1.
    """
    warnings: list[str] = []
    cfg_info = None
    alpha_source = "published headline figure (Morris et al. 2025)"
    if config is not None:
        cfg_info = load_config_file(config)
        if cfg_info["kind"] == "hf":
            if params is not None and float(params) != cfg_info["params"]:
                raise UserError(
                    f"--params {params} contradicts the {cfg_info['params']:,} parameters counted in "
                    f"{cfg_info['path']}; pass only one of them."
                )
            params = cfg_info["params"]
            if vocab_size is None:
                vocab_size = cfg_info["vocab_size"]
        else:
            if alpha is not None:
                raise UserError("pass either --alpha or a capacity.json --config, not both.")
            alpha = cfg_info["alpha"]
            alpha_source = f"measured in {cfg_info['path']}"
            if cfg_info.get("all_saturated") is False:
                warnings.append(
                    "not every run of that capacity sweep saturated, so its alpha is a lower bound."
                )
            rng = cfg_info.get("param_range")
            if rng and params is not None and not rng[0] / 10 <= float(params) <= rng[1] * 10:
                warnings.append(
                    f"alpha was measured on models of {rng[0]:,}-{rng[1]:,} parameters; "
                    f"{float(params):,.0f} is far outside that range."
                )
    if alpha is None:
        alpha = PUBLISHED_ALPHA
    alpha = _positive(alpha, "alpha (bits per parameter)")
    S = int(_positive(seq_len, "the sequence length"))
    if n_sequences is not None and tokens is not None:
        raise UserError("give the dataset size as --n-sequences or --tokens, not both.")
    if tokens is not None:
        tokens = _positive(tokens, "the number of tokens")
        n_sequences = tokens / S
    elif n_sequences is not None:
        n_sequences = _positive(n_sequences, "the number of sequences")
        tokens = n_sequences * S
    if params is not None:
        params = _positive(params, "the parameter count")
    if params is None and n_sequences is None:
        raise UserError(
            "give a model size (--params or --config) and/or a dataset size (--n-sequences or --tokens)."
        )
    if target_f1 is None and (params is None or n_sequences is None):
        missing = "--params (or --config)" if params is None else "--n-sequences (or --tokens)"
        raise UserError(f"give {missing} as well, or ask an inverse question with --target-f1.")
    if (
        bits_per_token is None
        and vocab_size is None
        and params is not None
        and n_sequences is not None
    ):
        raise UserError("give the vocabulary size (--vocab) or a measured --bits-per-token.")
    if S != 64:
        warnings.append(
            "the MIA law was calibrated on 64-token sequences; F1 for other lengths is an extrapolation."
        )

    rep = SizeReport(
        alpha=alpha,
        alpha_source=alpha_source,
        seq_len=S,
        params=params,
        n_sequences=n_sequences,
        tokens=tokens,
        vocab_size=int(vocab_size) if vocab_size is not None else None,
        config=cfg_info,
        law={
            "form": LAW_FORM,
            "constants": constants.to_dict(),
            "note": LAW_NOTE,
            "ceiling": mia_f1_ceiling(constants),
        },  # fmt: skip
        warnings=warnings,
    )
    if params is not None:
        rep.capacity_bits = capacity_bits(params, alpha)
    if n_sequences is not None and (bits_per_token is not None or vocab_size is not None):
        rep.bits_per_sequence = bits_per_sequence(S, vocab_size, bits_per_token)
        rep.bits_source = (
            f"measured entropy, {bits_per_token} bits/token"
            if bits_per_token is not None
            else "uniform upper bound S*log2(V) (loose for text: pass --bits-per-token)"
        )
        rep.dataset_bits = n_sequences * rep.bits_per_sequence
    if rep.capacity_bits is not None and n_sequences is not None:
        rep.tokens_per_param = float(tokens) / float(params)
        rep.sequences_per_capacity_bit = n_sequences / rep.capacity_bits
        f1 = float(mia_f1(n_sequences, rep.capacity_bits, constants))
        rep.predicted_mia_f1_unclipped = f1
        rep.predicted_mia_f1 = min(1.0, f1)
        if rep.dataset_bits is not None:
            rep.capacity_ratio = capacity_ratio(rep.dataset_bits, rep.capacity_bits)
            rep.regime = regime(rep.capacity_ratio)
    if target_f1 is not None:
        x = ratio_for_f1(target_f1, constants)
        inv: dict[str, Any] = {"target_f1": float(target_f1), "sequences_per_capacity_bit": x}
        if x == 0.0:
            inv["note"] = (
                f"the law never predicts more than {mia_f1_ceiling(constants):.4f}, so every model "
                "and dataset size meets this target."
            )
        if n_sequences is not None:
            mp = max_params_for_f1(n_sequences, target_f1, alpha, constants)
            inv["max_params"] = None if math.isinf(mp) else math.floor(mp)
        if params is not None:
            inv["min_n_sequences"] = math.ceil(
                min_sequences_for_f1(params, target_f1, alpha, constants)
            )
            inv["min_tokens"] = inv["min_n_sequences"] * S
        rep.inverse = inv
    return rep


# --------------------------------------------------------------------------------------------
# Fitting the MIA law (memlens laws fit-mia)
# --------------------------------------------------------------------------------------------


@dataclass
class MiaFit:
    """A least-squares fit of the MIA law, with Jacobian-based confidence intervals."""

    constants: MiaLawConstants
    se: dict[str, float]
    ci: dict[str, list[float]]
    ci_level: float
    at_bound: dict[str, bool]
    predictions: np.ndarray
    residuals: np.ndarray
    rmse: float
    max_abs_residual: float
    n: int
    dof: int
    success: bool
    message: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "form": LAW_FORM,
            "constants": self.constants.to_dict(),
            "se": self.se,
            "ci": self.ci,
            "ci_level": self.ci_level,
            "at_bound": self.at_bound,
            "bounds": {  # None = unbounded (strict JSON has no infinity)
                "lower": [float(b) for b in FIT_BOUNDS[0]],
                "upper": [float(b) if math.isfinite(b) else None for b in FIT_BOUNDS[1]],
            },
            "rmse": self.rmse,
            "max_abs_residual": self.max_abs_residual,
            "n": self.n,
            "dof": self.dof,
            "success": self.success,
            "message": self.message,
            "ceiling_f1": mia_f1_ceiling(self.constants),
            "warnings": self.warnings,
        }


def fit_mia_law(
    cap_bits: Sequence[float] | np.ndarray,
    n_sequences: Sequence[float] | np.ndarray,
    f1: Sequence[float] | np.ndarray,
    *,
    start: MiaLawConstants = CORRECTED,
    level: float = 0.95,
) -> MiaFit:
    """Fit ``F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D| / Capacity))`` by nonlinear least squares.

    Uses :func:`scipy.optimize.least_squares` (trust-region reflective, bounds
    :data:`FIT_BOUNDS`, started at the corrected published constants). Standard errors come from
    the Jacobian at the optimum, ``cov = s^2 (J^T J)^-1`` with ``s^2 = SSR / (n - 3)``; the
    confidence intervals are ``+- t_{(1+level)/2, n-3} * se`` (Wald intervals: they assume the law
    is locally linear; a constant at its bound gets a one-sided note in ``at_bound``).

    The law is that of Morris et al. 2025 (arXiv:2505.24832) with corrected constants (the
    printed form tends to 1.006 as |D| grows). Needs at least 4 rows (3 constants plus one degree
    of freedom for the error) and at least 3 distinct values of ``|D| / Capacity``.
    """
    from scipy.optimize import least_squares
    from scipy.stats import t as student_t

    C = np.asarray(cap_bits, dtype=np.float64).ravel()
    N = np.asarray(n_sequences, dtype=np.float64).ravel()
    y = np.asarray(f1, dtype=np.float64).ravel()
    if not (C.size == N.size == y.size):
        raise UserError("capacity, dataset size and F1 columns must have the same length.")
    n = y.size
    if n < 4:
        raise UserError(
            f"need at least 4 rows to fit the 3 constants of the MIA law with an error estimate, got {n}."
        )
    for name, a in (("capacity", C), ("n_sequences", N), ("f1", y)):
        if not np.all(np.isfinite(a)):
            raise UserError(f"the {name} column has missing or non-numeric values.")
    if np.any(C <= 0) or np.any(N <= 0):
        raise UserError("params (or capacity_bits) and n_sequences must all be positive.")
    if np.any((y < 0) | (y > 1)):
        raise UserError("f1 values must lie between 0 and 1.")
    x = N / C
    if np.unique(np.round(np.log(x), 9)).size < 3:
        raise UserError(
            "need at least 3 distinct values of n_sequences / capacity to fit the 3 constants."
        )
    if not 0 < level < 1:
        raise UserError(f"the confidence level must be between 0 and 1, got {level}.")

    def model(c: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + c[0] * _sigmoid(c[1] - c[2] * x))

    lo, hi = np.array(FIT_BOUNDS[0]), np.array(FIT_BOUNDS[1])
    x0 = np.clip(start.as_array(), lo + 1e-9, np.where(np.isinf(hi), 1e300, hi - 1e-9))
    # Rescale c3 by the data's typical |D|/Capacity so all three constants are of order 1.
    res = least_squares(
        lambda c: model(c) - y, x0, bounds=(lo, hi), x_scale="jac", method="trf", max_nfev=20_000
    )
    c = res.x
    pred = model(c)
    resid = y - pred
    dof = n - 3
    ssr = float((resid**2).sum())
    s2 = ssr / dof
    J = res.jac
    cov = s2 * np.linalg.pinv(J.T @ J)
    se = np.sqrt(np.clip(np.diag(cov), 0, None))
    tq = float(student_t.ppf(0.5 + level / 2.0, dof))
    names = ("c1", "c2", "c3")
    active = getattr(res, "active_mask", np.zeros(3, dtype=int))
    tol = 1e-6 * (1 + np.abs(c))
    at_bound = {k: bool(active[i] != 0 or abs(c[i] - lo[i]) < tol[i] or abs(c[i] - hi[i]) < tol[i])
                for i, k in enumerate(names)}  # fmt: skip
    warnings = []
    for k, b in at_bound.items():
        if b:
            warnings.append(
                f"{k} stopped at its bound, so the data do not pin it down (its interval is not valid); "
                "rows with smaller and larger n_sequences/capacity would help."
            )
    rel = se / np.maximum(np.abs(c), 1e-12)
    for i, k in enumerate(names):
        if not at_bound[k] and rel[i] > 1.0:
            warnings.append(
                f"{k} is poorly determined (standard error {se[i]:.3g} exceeds its value)."
            )
    return MiaFit(
        constants=MiaLawConstants(*map(float, c)),
        se={k: float(se[i]) for i, k in enumerate(names)},
        ci={k: [float(c[i] - tq * se[i]), float(c[i] + tq * se[i])] for i, k in enumerate(names)},
        ci_level=level,
        at_bound=at_bound,
        predictions=pred,
        residuals=resid,
        rmse=math.sqrt(ssr / n),
        max_abs_residual=float(np.abs(resid).max()),
        n=n,
        dof=dof,
        success=bool(res.success),
        message=str(res.message),
        warnings=warnings,
    )


MIA_TABLE_COLUMNS = "params (or capacity_bits), n_sequences, f1"


def read_mia_table(path: str | Path, alpha: float = PUBLISHED_ALPHA) -> Any:
    """Read a CSV (or Parquet) with ``params`` or ``capacity_bits``, ``n_sequences`` and ``f1``.

    Returns a pandas DataFrame in input order with a ``capacity_bits`` column added
    (``alpha * params`` when only ``params`` is given).
    """
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise UserError(f"file {p} does not exist.")
    try:
        if p.suffix == ".parquet":
            df = pd.read_parquet(p)
        else:
            df = pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise UserError(f"cannot read {p} as a table: {exc}.") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("n_sequences", "f1") if c not in df.columns]
    if "params" not in df.columns and "capacity_bits" not in df.columns:
        missing.insert(0, "params (or capacity_bits)")
    if missing:
        raise UserError(
            f"{p} is missing column(s) {', '.join(missing)}; it needs {MIA_TABLE_COLUMNS}."
        )
    out = df.copy()
    for col in ("params", "capacity_bits", "n_sequences", "f1"):
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    if "capacity_bits" in out.columns and out["capacity_bits"].notna().all():
        out["capacity_source"] = "capacity_bits column"
    else:
        if "params" not in out.columns:
            raise UserError(
                f"{p} has empty capacity_bits values and no params column to fill them."
            )
        alpha = _positive(alpha, "alpha (bits per parameter)")
        cap = alpha * out["params"]
        out["capacity_bits"] = (
            out["capacity_bits"].fillna(cap) if "capacity_bits" in out.columns else cap
        )
        out["capacity_source"] = f"{alpha} bits/param * params"
    return out


def fit_mia_table(
    path: str | Path, alpha: float = PUBLISHED_ALPHA, level: float = 0.95
) -> dict[str, Any]:
    """Read a table (:func:`read_mia_table`), fit the law, and return a JSON-ready result.

    ``predictions`` are in input order: each row's inputs, fitted F1, residual, and the F1 the
    corrected published constants predict.
    """
    df = read_mia_table(path, alpha)
    fit = fit_mia_law(df["capacity_bits"], df["n_sequences"], df["f1"], level=level)
    published = mia_f1(df["n_sequences"].to_numpy(float), df["capacity_bits"].to_numpy(float))
    preds = []
    for i, row in enumerate(df.itertuples(index=False)):
        r = row._asdict()
        preds.append(
            {
                "row": i,
                **({"params": float(r["params"])} if "params" in r else {}),
                "capacity_bits": float(r["capacity_bits"]),
                "n_sequences": float(r["n_sequences"]),
                "sequences_per_capacity_bit": float(r["n_sequences"] / r["capacity_bits"]),
                "f1": float(r["f1"]),
                "fitted_f1": float(fit.predictions[i]),
                "residual": float(fit.residuals[i]),
                "published_law_f1": float(published[i]),
            }
        )
    return {
        "input": str(path),
        "alpha": float(alpha),
        "capacity_source": str(df["capacity_source"].iloc[0]),
        **fit.to_dict(),
        "published_constants": CORRECTED.to_dict(),
        "law_note": LAW_NOTE,
        "predictions": preds,
    }


def plot_mia_fit(result: Mapping[str, Any], ax: Any = None, title: str | None = None) -> Any:
    """F1 against ``|D| / Capacity``: measurements, the fitted law and the corrected published law.

    ``result`` is the dict of :func:`fit_mia_table` (or any dict with ``constants`` and
    ``predictions`` holding ``sequences_per_capacity_bit`` and ``f1``). Returns the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
    else:
        fig = ax.figure
    xs = np.array([p["sequences_per_capacity_bit"] for p in result["predictions"]], dtype=float)
    ys = np.array([p["f1"] for p in result["predictions"]], dtype=float)
    lo, hi = xs.min(), xs.max()
    grid = np.geomspace(lo / 4, hi * 4, 300)
    fitted = MiaLawConstants(**result["constants"])
    ax.plot(grid, np.minimum(1.0, mia_f1(grid, 1.0, fitted)), "C0-", label=_label("fitted", fitted))
    ax.plot(grid, np.minimum(1.0, mia_f1(grid, 1.0, CORRECTED)), "k--", lw=1,
            label=_label("published (corrected)", CORRECTED))  # fmt: skip
    ax.scatter(xs, ys, c="C3", zorder=3, label="measured")
    ax.axhline(0.5, color="grey", lw=0.7, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(0.4, 1.05)
    ax.set_xlabel("|D| / Capacity  (sequences per capacity bit)")
    ax.set_ylabel("membership-inference F1")
    ax.set_title(title or "MIA scaling law (Morris et al. 2025, corrected form)")
    ax.legend(fontsize=7)
    return fig


def _label(name: str, c: MiaLawConstants) -> str:
    return f"{name}: c1={c.c1:.3g}, c2={c.c2:.3g}, c3={c.c3:.4g}"
