"""``memlens size``: parameter counts from a Hugging Face ``config.json`` (or alpha from a
``capacity.json``), capacity, capacity ratio and regime of a model and a dataset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from memlens.config import Config, require_config
from memlens.errors import UserError
from memlens.laws.formulas import (
    CORRECTED,
    LAW_FORM,
    LAW_NOTE,
    PUBLISHED_ALPHA,
    REGIME_DOC,
    REGIME_THRESHOLDS,
    MiaLawConstants,
    _positive,
    bits_per_sequence,
    capacity_bits,
    capacity_ratio,
    max_params_for_f1,
    mia_f1,
    mia_f1_ceiling,
    min_sequences_for_f1,
    ratio_for_f1,
    regime,
)
from memlens.laws.summaries import SizeReport
from memlens.progress import ProgressFn
from memlens.results import RunResult

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
            "(or pass `params`)."
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
    """Read a Hugging Face ``config.json`` or a memlens ``capacity.json``.

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

    Capacity ``= alpha * params`` bits; dataset bits ``= n_sequences * bits_per_sequence``;
    capacity ratio = dataset / capacity; MIA F1 from the corrected law of Morris et al. 2025
    (arXiv:2505.24832; the printed law tends to 1.006, see :data:`LAW_NOTE`), clipped to 1.

    Parameters
    ----------
    params: parameter count (or take it from a Hugging Face ``config``).
    n_sequences, tokens: dataset size in sequences, or in tokens (``n = tokens / seq_len``).
    seq_len: tokens per sequence (the MIA law was calibrated on 64).
    vocab_size: for the uniform upper bound ``S * log2 V`` bits per sequence (default: the HF
        config's vocabulary).
    bits_per_token: a measured entropy (bits/token) instead of the uniform bound.
    alpha: bits per parameter (default 3.64, or the measured alpha of a capacity.json ``config``).
    target_f1: also answer the inverse questions: the largest model (for this dataset) and the
        smallest dataset (for this model) whose predicted MIA F1 is at most ``target_f1``.
    config: a Hugging Face ``config.json`` (parameter count, vocabulary) or a memlens
        ``capacity.json`` (measured alpha).
    """
    warnings: list[str] = []
    cfg_info = None
    alpha_source = "published headline figure (Morris et al. 2025)"
    if config is not None:
        cfg_info = load_config_file(config)
        if cfg_info["kind"] == "hf":
            if params is not None and float(params) != cfg_info["params"]:
                raise UserError(
                    f"`params` {params} contradicts the {cfg_info['params']:,} parameters counted in "
                    f"{cfg_info['path']}; pass only one of them."
                )
            params = cfg_info["params"]
            if vocab_size is None:
                vocab_size = cfg_info["vocab_size"]
            elif int(vocab_size) != cfg_info["vocab_size"]:
                warnings.append(
                    f"the vocabulary size {int(vocab_size):,} differs from the "
                    f"{cfg_info['vocab_size']:,} of {cfg_info['path']}; the dataset bits use "
                    f"{int(vocab_size):,}."
                )
        else:
            if alpha is not None:
                raise UserError("pass either `alpha` or a capacity.json `config`, not both.")
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
        raise UserError("give the dataset size as `n_sequences` or `tokens`, not both.")
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
            "give a model size (`params` or `config`) and/or a dataset size (`n_sequences` or `tokens`)."
        )
    if target_f1 is None and (params is None or n_sequences is None):
        missing = "`params` (or `config`)" if params is None else "`n_sequences` (or `tokens`)"
        raise UserError(f"give {missing} as well, or ask an inverse question with `target_f1`.")
    if (
        bits_per_token is None
        and vocab_size is None
        and params is not None
        and n_sequences is not None
    ):
        raise UserError("give the vocabulary size `vocab_size` or a measured `bits_per_token`.")
    if S != 64:
        warnings.append(
            "the MIA law was calibrated on 64-token sequences; F1 for other lengths is an extrapolation."
        )

    rep = SizeReport(
        regime_thresholds=dict(REGIME_THRESHOLDS),
        regime_rule=REGIME_DOC,
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
            else "uniform upper bound S*log2(V) (loose for text: pass a measured bits per token)"
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


class SizeConfig(Config):
    """The question ``memlens size`` answers (the arguments of :func:`size`)."""

    what: ClassVar[str] = "size question"

    params: float | None = None
    n_sequences: float | None = None
    tokens: float | None = None
    seq_len: int = 64
    vocab_size: int | None = None
    bits_per_token: float | None = None
    alpha: float | None = None
    target_f1: float | None = None
    config: str | None = None


def run(
    config: SizeConfig, out: str | Path | None = None, *, progress: ProgressFn | None = None
) -> RunResult[SizeReport]:
    """Answer a :class:`SizeConfig` (:func:`size`); with ``out``, also write ``size.json`` and
    ``manifest.json`` there (an instant answer needs no run directory, so ``None`` writes none)."""
    require_config(config, SizeConfig)
    rep = size(**config.model_dump())
    if out is None:
        return RunResult(rep)
    from memlens.store import RunDir

    rd = RunDir(out, SizeReport.kind, config, None)
    rd.write_json(SizeReport.file, rep.to_dict())
    rd.write_manifest(status="finished")
    return RunResult(rep, rd.path)
