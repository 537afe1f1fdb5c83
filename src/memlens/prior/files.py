"""Reading a user's ``(X, y)`` for ``memlens prior diagnose``: numeric arrays from ``.npy``,
``.csv`` (header row optional) or ``.parquet``, checked with one sentence per problem."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memlens.errors import UserError

SUFFIXES = (".npy", ".csv", ".parquet")


def _numeric_frame(df, path: Path) -> np.ndarray:
    import pandas as pd

    if df.shape[0] == 0 or df.shape[1] == 0:
        raise UserError(f"{path} holds no data.")
    num = df.apply(pd.to_numeric, errors="coerce")
    bad = num.isna() & df.notna()
    if bad.to_numpy().any():
        col = df.columns[bad.any(axis=0).to_numpy()][0]
        raise UserError(
            f"{path} has a non-numeric value in column {col!r}; only numbers are allowed."
        )
    return num.to_numpy(dtype=float)


def load_array(path: str | Path) -> np.ndarray:
    """Read a numeric array from ``.npy``, ``.csv`` (header row optional) or ``.parquet``."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    if not path.is_file():
        raise UserError(f"{path} is not a file.")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UserError(f"{path} has an unsupported type; use one of {', '.join(SUFFIXES)}.")
    try:
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
                raise UserError(f"{path} does not hold a numeric array (dtype {arr.dtype}).")
            return np.asarray(arr, dtype=float)
        import pandas as pd

        if suffix == ".parquet":
            return _numeric_frame(pd.read_parquet(path), path)
        raw = pd.read_csv(path, header=None, dtype=str, skip_blank_lines=True)
        if raw.shape[0] == 0:
            raise UserError(f"{path} holds no data.")
        first = pd.to_numeric(raw.iloc[0], errors="coerce")
        labels = [str(v).strip() for v in raw.iloc[0]]
        # a header row: any non-number, or the column labels 0, 1, ..., k-1 that pandas writes for
        # a frame made from an array (no row of real features reads exactly 0, 1, 2, ...)
        if first.isna().any() or (
            len(labels) >= 2 and labels == [str(i) for i in range(len(labels))]
        ):
            raw = raw.iloc[1:].reset_index(drop=True)
            raw.columns = pd.read_csv(path, nrows=0).columns[: raw.shape[1]]
        return _numeric_frame(raw, path)
    except UserError:
        raise
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0].rstrip('.')}.") from None
    except Exception as exc:  # pandas/pyarrow parser errors have many types
        raise UserError(
            f"cannot read {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None


def load_xy(x_path: str | Path, y_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate a design (``n x d``) and a response (``n`` values)."""
    X = load_array(x_path)
    y = load_array(y_path)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise UserError(
            f"{x_path} must hold a 2-D array (samples x features), got {X.ndim} dimensions."
        )
    if y.ndim == 2 and 1 in y.shape:
        y = y.ravel()
    if y.ndim != 1:
        raise UserError(
            f"{y_path} must hold one response per sample (a single column), got shape {y.shape}."
        )
    check_xy(X, y)
    return X, y


def check_xy(X: np.ndarray, y: np.ndarray) -> None:
    if X.shape[0] != y.shape[0]:
        raise UserError(
            f"X has {X.shape[0]} rows but y has {y.shape[0]} values; they must match (a .csv header "
            "made only of numbers is read as data: give y a name such as 'y' as its header)."
        )
    if X.shape[0] < 4:
        raise UserError(f"need at least 4 samples for leave-one-out, got {X.shape[0]}.")
    if not np.all(np.isfinite(X)):
        raise UserError("X contains NaN or infinite values.")
    if not np.all(np.isfinite(y)):
        raise UserError("y contains NaN or infinite values.")
