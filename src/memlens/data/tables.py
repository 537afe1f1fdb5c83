"""One reader for tables of samples: CSV, JSON Lines, Parquet and Hugging Face datasets.

:func:`read_table` reads

* ``.csv`` (UTF-8, a header row; every cell is read as a string, so ``007`` stays ``007`` and a
  caller converts numeric columns itself);
* ``.jsonl`` (UTF-8, one JSON object per line; blank lines skipped);
* ``.parquet``;
* a directory written by ``datasets``' ``save_to_disk`` (a ``DatasetDict`` needs ``split``,
  default ``train``), or a Hugging Face dataset name (needs the hub or its cache; see
  :mod:`memlens.hub`)

into a pandas ``DataFrame``, with one-sentence :class:`~memlens.errors.UserError` messages for a
missing or empty file, bad UTF-8, a line that is not a JSON object, an unreadable file and a
missing column.

**Missing values, one rule.** A value is missing when it is an empty CSV cell, a JSON ``null``,
or a Parquet/Arrow null (or a float NaN). Nothing else is missing: the CSV strings ``NA``,
``null``, ``nan`` or ``None`` are text (pandas would have read them as NaN), and a JSON Lines
row that lacks a column the caller asks for is an error naming the line, not a missing value.
Missing values come back as pandas missing values; test them with :func:`is_missing`. What a
missing value means is the caller's, and memlens uses the same meaning everywhere:

* a missing **text** is an empty text, dropped and counted like ``""``
  (:func:`memlens.data.text.read_texts`, :func:`memlens.mia.recipe.load_samples`);
* a missing **score** is an unscored sample, handled by the NaN policy of
  :func:`memlens.mia.metrics.evaluate_attacks`;
* a missing **label** is an error (every sample needs 1 or 0).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memlens.errors import UserError

TABLE_SUFFIXES = (".csv", ".jsonl", ".parquet")


def is_missing(value: Any) -> bool:
    """Whether ``value`` is missing under the rule above (``None``, NaN, ``pd.NA``, ``NaT``)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, (str, bytes, list, dict)) else False
    except (TypeError, ValueError):
        return False


def decode_utf8(raw: bytes, path: Path) -> str:
    """``raw`` as text (a leading byte-order mark removed), or :class:`UserError` naming the
    offset and line of the first byte that is not UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise UserError(
            f"{path} is not valid UTF-8 (bad byte at offset {exc.start}, line {line})."
        ) from None
    return text.removeprefix("\ufeff")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__).rstrip(".")


def _choose(column: str, columns: Mapping[str, str]) -> str:
    param = columns.get(column)
    return f"; choose one with `{param}`" if param else ""


def read_jsonl_records(
    path: str | os.PathLike[str], columns: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file, one per non-blank line, each checked to hold
    ``columns`` (mapped to the parameter that chooses each, as in :func:`read_table`)."""
    path = Path(path)
    columns = dict(columns or {})
    text = decode_utf8(path.read_bytes(), path)
    rows = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"line {n} of {path} is not valid JSON ({exc.msg}).") from None
        if not isinstance(obj, dict):
            example = next(iter(columns), "text")
            raise UserError(
                f'line {n} of {path} is not a JSON object; each line must be like {{"{example}": ...}}.'
            )
        for c in columns:
            if c not in obj:
                fields = ", ".join(sorted(map(str, obj))) or "none"
                raise UserError(
                    f"line {n} of {path} has no '{c}' field (fields: {fields}){_choose(c, columns)}."
                )
        rows.append(obj)
    return rows


def _read_jsonl(path: Path, columns: Mapping[str, str]) -> Any:
    import pandas as pd

    rows = read_jsonl_records(path, columns)
    return pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=list(columns))


def _read_file(path: Path, columns: Mapping[str, str]) -> Any:
    import pandas as pd

    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty.")
    if suffix == ".jsonl":
        return _read_jsonl(path, columns)
    if suffix == ".csv":
        decode_utf8(path.read_bytes(), path)  # our own sentence for bad bytes
        try:
            return pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8"
            )
        except pd.errors.EmptyDataError:
            raise UserError(f"{path} is empty.") from None
        except (pd.errors.ParserError, ValueError) as exc:
            raise UserError(f"{path} is not a readable CSV file ({_first_line(exc)}).") from None
    if suffix == ".parquet":
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise UserError(
                f"{path} is not a readable Parquet file ({_first_line(exc)})."
            ) from None
    raise UserError(f"{path} has an unsupported suffix '{suffix}'; use .csv, .jsonl or .parquet.")


def _read_dataset(name: str, split: str | None) -> Any:
    import datasets

    from memlens.hub import quiet_hub

    path = Path(name).expanduser()
    want = split or "train"
    try:
        if path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if want not in ds:
                    raise UserError(
                        f"dataset {path} has no split '{want}' (splits: {', '.join(ds)}); choose one with `split`."
                    )
                ds = ds[want]
        else:
            with quiet_hub():
                ds = datasets.load_dataset(name, split=want)
    except UserError:
        raise
    except (FileNotFoundError, ValueError, OSError, ConnectionError) as exc:
        where = f"dataset directory {path}" if path.is_dir() else f"dataset '{name}' (split {want})"
        raise UserError(f"could not load {where}: {_first_line(exc)}.") from None
    return ds.to_pandas()


def table_source_kind(source: str | os.PathLike[str], suffixes: tuple[str, ...]) -> str:
    """``"file"``, ``"dataset"`` (a directory or a hub name) or ``"missing"`` for ``source``.

    A name that looks like a path (it has one of ``suffixes``, starts with ``.``, ``/`` or ``~``,
    or its parent directory exists, as ``data/train`` with ``./data`` present) and does not exist
    is ``"missing"``; any other absent name is taken for a hub dataset.
    """
    name = str(source)
    path = Path(name).expanduser()
    if path.is_file():
        return "file"
    if path.is_dir():
        return "dataset"
    if (
        path.suffix.lower() in suffixes
        or name.startswith((".", "/", "~"))
        or (path.parent != Path(".") and path.parent.is_dir())
    ):
        return "missing"
    return "dataset"


def read_table(
    source: str | os.PathLike[str],
    *,
    split: str | None = None,
    columns: Mapping[str, str] | None = None,
) -> Any:
    """Read a table of samples (see the module docstring for formats and the missing-value rule).

    Parameters
    ----------
    source: a ``.csv``, ``.jsonl`` or ``.parquet`` file, a ``save_to_disk`` directory or a hub
        dataset name.
    split: the dataset split (default ``train``).
    columns: required columns, each mapped to the parameter that chooses it (``{"text":
        "text_column"}``), named in the error when the column is absent; ``None`` requires none.

    Returns
    -------
    pandas.DataFrame
    """
    columns = dict(columns or {})
    kind = table_source_kind(source, TABLE_SUFFIXES)
    path = Path(str(source)).expanduser()
    if kind == "missing":
        raise UserError(f"data file {path} does not exist.")
    df = _read_file(path, columns) if kind == "file" else _read_dataset(str(source), split)
    where = str(path) if kind == "file" or path.is_dir() else f"dataset '{source}'"
    present = [str(c) for c in df.columns]
    for c in columns:
        if c not in present:
            raise UserError(
                f"{where} has no column '{c}' (columns: {', '.join(present) or 'none'}){_choose(c, columns)}."
            )
    return df
