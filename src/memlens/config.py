"""One way to validate a configuration: pydantic models whose bad values raise one sentence.

Every run of memlens is described by a config, a :class:`Config` subclass (a pydantic model):
plain data that round-trips to JSON and is saved in every run's ``manifest.json``. Values are
validated at the door; a bad value raises :class:`~memlens.errors.UserError` with one sentence
naming the field (``invalid capacity config (train.lr): Input should be greater than 0.``), both
when a config is built in Python and when the command line builds it.

:func:`build_config` merges, in order, a preset (a dict), a TOML or YAML file and keyword
overrides (``None`` means "not given"), then validates.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from memlens.errors import UserError


class ConfigError(UserError):
    """A bad config value; keeps pydantic's error so that a config holding this one as a field
    names the whole path (``settings.gamma``) in one sentence."""

    def __init__(self, message: str, validation: ValidationError) -> None:
        super().__init__(message)
        self.validation = validation


# Keyword arguments of the recipes' ``run(config, out, *, ...)``: a notebook user who puts one in
# a config is told where it goes.
RUN_KEYWORDS = (
    "out",
    "progress",
    "backend",
    "workers",
    "ray_address",
    "ray_num_cpus",
    "ray_num_gpus",
)


def _unknown_setting(name: str, fields: Sequence[str], what: str) -> str:
    if name in RUN_KEYWORDS:
        return (
            f"invalid {what}: '{name}' is not a setting but an argument of how it runs, "
            f"run(config, out, {name}=...)."
        )
    close = difflib.get_close_matches(name, list(fields), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; its settings are {', '.join(fields)}."
    return f"invalid {what}: no setting named '{name}'{hint}"


def validation_message(
    exc: ValidationError, what: str = "config", fields: Sequence[str] = ()
) -> str:
    """The first error of a pydantic ``ValidationError`` as one sentence (naming the field, or
    only ``what`` when a check across fields failed). An unknown top-level key is named with the
    closest of ``fields`` (the config's settings), or said to be an argument of ``run``."""
    err = exc.errors()[0]
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "extra_forbidden" and len(loc) == 1 and fields:
        return _unknown_setting(str(loc[0]), fields, what)
    inner = (err.get("ctx") or {}).get("error")
    if not loc and isinstance(inner, ConfigError):  # raised by the config's own __init__
        return str(inner)
    while isinstance(inner, ConfigError):  # a nested config's error: its field, under ours
        err = inner.validation.errors()[0]
        loc += tuple(err.get("loc", ()))
        inner = (err.get("ctx") or {}).get("error")
    where = ".".join(str(x) for x in loc)
    if err.get("type") == "extra_forbidden" and where:  # an unknown key of a nested section
        return f"invalid {what}: no setting named '{where}'."
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ").rstrip(".")
    return f"invalid {what} ({where}): {msg}." if where else f"invalid {what}: {msg}."


class Config(BaseModel):
    """Base of every memlens config: unknown keys refused, bad values raise :class:`UserError`.

    Subclasses set :attr:`what` (used in messages, e.g. ``"capacity config"``).
    """

    model_config = ConfigDict(extra="forbid", validate_default=True)
    what: ClassVar[str] = "config"

    @field_validator("*", mode="after")
    @classmethod
    def _seed_is_not_negative(cls, value: Any, info: ValidationInfo) -> Any:
        """Every ``seed`` and ``*_seed`` setting is 0 or more: numpy's generators take no negative
        seed (it ended in a traceback deep in a run)."""
        name = info.field_name or ""
        if (name == "seed" or name.endswith("_seed")) and type(value) is int and value < 0:
            raise ValueError("a seed is 0 or more")
        return value

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(
                validation_message(exc, type(self).what, list(type(self).model_fields)), exc
            ) from None

    @classmethod
    def validate_dict(cls, data: Mapping[str, Any]) -> Self:
        """Validate a dict (e.g. a manifest's ``config``), raising :class:`UserError` when bad."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise ConfigError(
                validation_message(exc, cls.what, list(cls.model_fields)), exc
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-ready data (what the manifest records)."""
        return self.model_dump(mode="json")


def require_config(config: Any, cls: type[Config]) -> None:
    """Raise :class:`UserError` (one sentence) unless ``config`` is a ``cls``: a recipe called with
    a plain dict, or another capability's config, says what it takes instead of failing on the
    first attribute it reads."""
    if isinstance(config, cls):
        return
    name = cls.__name__
    got = type(config).__name__
    hint = f" (from a dict: {name}(**settings))" if isinstance(config, Mapping) else ""
    raise UserError(f"this recipe runs {name} configs{hint}, not a {got}.")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML (or, with PyYAML installed, YAML) file holding a table of settings."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(
            f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}."
        ) from None
    try:
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml  # type: ignore[import-untyped]
            except ImportError:
                raise UserError(
                    f"reading {path} needs PyYAML (pip install pyyaml), or use a TOML file."
                ) from None
            loaded = yaml.safe_load(text) or {}
        else:
            loaded = tomllib.loads(text)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise UserError(f"cannot parse config file {path}: {exc}.") from None
    if not isinstance(loaded, dict):
        raise UserError(f"config file {path} must hold a table of settings.")
    return loaded


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update`` (``None`` values skipped; nested tables merged)."""
    out = dict(base)
    for key, value in update.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def nest(overrides: Mapping[str, Any], section: str, fields: Any) -> dict[str, Any]:
    """``overrides`` with the keys named in ``fields`` moved into a ``section`` table (``None``
    values dropped), e.g. a command's ``lr=...`` into ``{"train": {"lr": ...}}``."""
    out = {k: v for k, v in overrides.items() if k not in fields}
    inner = {k: v for k, v in overrides.items() if k in fields and v is not None}
    if inner:
        out[section] = inner
    return out


C = TypeVar("C", bound=Config)


def build_config(
    cls: type[C],
    preset: Mapping[str, Any] | None = None,
    config_file: str | Path | None = None,
    **overrides: Any,
) -> C:
    """Validate ``preset`` < ``config_file`` < ``overrides`` (later wins; ``None`` = not given)."""
    data = dict(preset or {})
    if config_file is not None:
        data = merge(data, read_config_file(config_file))
    data = merge(data, overrides)
    return cls(**data)
