"""Run directories: manifest, atomic writes and resumable cells.

Every memlens command writes one directory::

    manifest.json     config, seed, versions, git revision, command, start/end time
    cells/<key>.json  one finished unit of a sweep (reused on resume)
    ...               tables (CSV/Parquet), JSON results and PNG plots

All writes go to a temporary file in the same directory first and are renamed into place, so an
interrupted run never leaves a half-written result behind. Records that grow during a run (a
tracker's observations, a training curve) go to a :class:`PartStore`: one Parquet part per flush.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from memlens.errors import UserError


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "model_dump"):
        return obj.model_dump()
    if hasattr(obj, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(obj)
    raise TypeError(f"cannot serialize {type(obj).__name__}")


def to_json(obj: Any) -> str:
    """Serialize ``obj`` as indented JSON (numpy scalars, dataclasses, pydantic and paths allowed)."""
    return json.dumps(obj, indent=2, default=_json_default, allow_nan=True)


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: the only portable read sets it for an instant
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    The file lands with the permissions of an ordinary new file (``0o666`` less the umask), not
    the temporary file's private ``0o600``: a run directory is shared with collaborators.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with contextlib.suppress(OSError):  # a file system without permissions keeps its own
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return write_text_atomic(path, to_json(obj) + "\n")


def write_table_atomic(path: str | os.PathLike[str], df: Any) -> Path:
    """Write a pandas DataFrame as CSV or Parquet (by suffix) atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
    return path


def save_figure_atomic(fig: Any, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def git_revision() -> str | None:
    """The git revision of the memlens source tree (with ``-dirty`` when modified), if known."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


#: Distributions whose versions every manifest records when they are installed (the ones that can
#: change a number: the scientific stack, tokenizers, adapters, GGUF dequantization, DP-SGD).
VERSIONED = (
    "memlens", "torch", "numpy", "scipy", "transformers", "tokenizers", "accelerate", "pandas",
    "scikit-learn", "peft", "gguf", "opacus",
)  # fmt: skip


def versions() -> dict[str, str]:
    """Versions of Python, the platform and the installed distributions of :data:`VERSIONED`."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in VERSIONED:
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            continue
    return out


def default_out_dir(kind: str) -> Path:
    """A fresh timestamped directory name under ``./memlens-runs``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("memlens-runs") / f"{kind}-{stamp}"


def config_hash(config: Any) -> str:
    """A short stable hash of a JSON-serializable config."""
    return hashlib.sha256(
        json.dumps(config, sort_keys=True, default=_json_default).encode()
    ).hexdigest()[:12]


def _as_asked(old: Any, schema: Any) -> Any:
    """A stored config as the current config class reads it (settings added since filled in with
    their defaults), or as it is without a class or when this version cannot read it."""
    if schema is None or not isinstance(old, dict):
        return old
    try:
        return json.loads(to_json(schema.model_validate(old).model_dump(mode="json")))
    except Exception:  # a config this version cannot read is compared as it is
        return old


def _holds_only(directory: Path, manifest: Path) -> bool:
    """Whether ``directory`` holds no file but its manifest (a run refused or stopped before it
    wrote any result, e.g. a model too large for memory found in its first cell)."""
    return all(p == manifest for p in directory.rglob("*") if p.is_file())


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """``key: stored -> asked`` for each setting that differs (nested keys dotted)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in [*old, *(k for k in new if k not in old)]:
            if old.get(key, _MISSING) != new.get(key, _MISSING):
                out += _differences(
                    old.get(key, _MISSING), new.get(key, _MISSING), f"{prefix}{key}."
                )
        return out

    def show(v: Any) -> str:
        return "not set" if v is _MISSING else repr(v)[:40]

    return [f"{prefix.rstrip('.') or 'config'}: {show(old)} there, {show(new)} here"]


_MISSING = object()

#: The temporary files of :func:`atomic_path` (``.<name>.<8 random characters>.tmp<suffix>``).
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[^.]*)?$")


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete what writes killed mid-way left behind (a crash skips :func:`atomic_path`'s
    clean-up): nothing else writes in a run directory while it is being opened."""
    for p in directory.rglob(".*.tmp*"):
        if p.is_file() and _TEMPORARY.match(p.name):
            with contextlib.suppress(OSError):
                p.unlink()


_LAST_RUN_DIR: Path | None = None


def last_run_dir() -> Path | None:
    """The run directory this process opened last (what an interrupted command names for
    resuming), or ``None``."""
    return _LAST_RUN_DIR


class RunDir:
    """A run directory with a manifest and resumable cells.

    Parameters
    ----------
    path:
        Directory to create (or reuse when resuming).
    kind:
        The run type (``"capacity"``, ``"audit"``, ...), recorded in the manifest.
    config:
        JSON-serializable configuration, or a pydantic config, recorded in the manifest. When
        the directory already holds a manifest with a *different* config, resuming would mix
        results, so :class:`UserError` is raised, naming the settings that differ. Given a
        pydantic config, a manifest written by an older memlens that lacks settings added since
        still matches when the current defaults of those settings are the values asked for (the
        stored config is validated by the config's class, which fills them in).
    seed:
        The seed, recorded in the manifest.
    """

    def __init__(
        self, path: str | os.PathLike[str], kind: str, config: Any, seed: int | None
    ) -> None:
        self.path = Path(path)
        self.kind = kind
        schema = type(config) if hasattr(config, "model_validate") else None
        if schema is not None:
            config = config.model_dump(mode="json")
        self.config = json.loads(to_json(config))
        self.seed = seed
        blocker = next((p for p in (self.path, *self.path.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise UserError(
                f"the output directory {self.path} cannot be created: {blocker} is a file."
            )
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise UserError(
                f"cannot write to output directory {self.path}: {exc.strerror or exc}."
            ) from None
        self.cells = self.path / "cells"
        manifest = self.path / "manifest.json"
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                old = None
            if old is not None and (not isinstance(old, dict) or not old.get("kind")):
                raise UserError(
                    f"{self.path} holds a manifest.json that is not a memlens run's; use a new "
                    "`out` directory."
                )
            if old is not None and old.get("kind") != kind:
                other = str(old.get("kind"))
                article = "an" if other[:1].lower() in "aeiou" else "a"
                raise UserError(
                    f"{self.path} already holds {article} {other} run, not {kind}; use a new "
                    "`out` directory."
                )
            stored = None if old is None else _as_asked(old.get("config"), schema)
            if (
                old is not None
                and stored != self.config
                and old.get("status") == "running"
                and _holds_only(self.path, manifest)
            ):
                stored = self.config  # a run that stopped before writing anything: start anew
            if old is not None and stored != self.config:
                differ = "; ".join(_differences(stored, self.config)[:3])
                article = "an" if kind[:1].lower() in "aeiou" else "a"
                raise UserError(
                    f"{self.path} already holds {article} {kind} run with a different config "
                    f"({differ}); "
                    "use a new `out` directory or the same settings to resume."
                )
        if manifest.exists():  # a run directory; never walk a directory memlens did not make
            _remove_stale_temporaries(self.path)
        global _LAST_RUN_DIR
        _LAST_RUN_DIR = self.path

    def manifest(self, **extra: Any) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": self.config,
            "seed": self.seed,
            "versions": versions(),
            "git_revision": git_revision(),
            "command": " ".join(sys.argv),
            "written_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            **extra,
        }

    def discard_if_empty(self) -> bool:
        """Remove the directory when it holds no file (a run that failed before writing
        anything, e.g. on a model that does not load); return whether it was removed."""
        import shutil

        if not self.path.is_dir() or any(p.is_file() for p in self.path.rglob("*")):
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        return True

    def write_manifest(self, status: str = "finished", **extra: Any) -> Path:
        """Write ``manifest.json`` (config, seed, versions, git revision, ``extra``) atomically.

        ``status`` is ``"running"`` while a run works (written first, so an interrupted
        directory says so) and ``"finished"`` once its results are written, for every command.
        """
        return write_json_atomic(self.path / "manifest.json", self.manifest(status=status, **extra))

    # -- resumable cells -------------------------------------------------------------------
    def cell_file(self, key: str) -> Path:
        return self.cells / f"{key}.json"

    def load_cell(self, key: str) -> Any | None:
        """The stored result for ``key``, or ``None`` if that cell has not finished."""
        f = self.cell_file(key)
        if not f.exists():
            return None
        try:
            return json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def save_cell(self, key: str, result: Any) -> Path:
        return write_json_atomic(self.cell_file(key), result)

    def save_arrays(self, key: str, arrays: dict[str, Any]) -> Path:
        """Store a cell of numpy arrays (``cells/<key>.npz``), atomically."""
        import numpy as np

        path = self.cells / f"{key}.npz"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
        return path

    def load_arrays(self, key: str) -> dict[str, Any] | None:
        """The arrays stored for ``key``, or ``None`` if that cell has not finished."""
        import numpy as np

        path = self.cells / f"{key}.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError):
            return None

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json_atomic(self.path / name, obj)

    def write_table(self, name: str, df: Any) -> Path:
        return write_table_atomic(self.path / name, df)

    def save_figure(self, name: str, fig: Any) -> Path:
        return save_figure_atomic(fig, self.path / name)


class PartStore:
    """An append-only store of Parquet parts, ``<directory>/part-<first>-<last>.parquet``.

    Each flush of a growing record (a tracker's observations, a training curve) is one part, written
    atomically, named by the first and last step it holds (12 digits each) and optionally carrying
    JSON metadata. A crash loses at most what was not flushed yet; :meth:`read` returns the parts
    oldest first (so a step recorded twice, before and after a resume, can keep its latest record)
    and skips a part it cannot read.
    """

    META_KEY = b"memlens"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def write(self, table: Any, first: int, last: int, meta: Any = None) -> Path:
        """Write ``table`` (a pyarrow Table or a pandas DataFrame) as the part for steps
        ``first``..``last``, with ``meta`` (JSON-serializable) in its schema metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        if meta is not None:
            table = table.replace_schema_metadata({self.META_KEY: to_json(meta).encode()})
        path = self.directory / f"part-{int(first):012d}-{int(last):012d}.parquet"
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def read(self) -> list[tuple[Any, Any]]:
        """``(pyarrow Table, meta or None)`` for every readable part, oldest first."""
        import pyarrow.parquet as pq

        files = sorted(
            self.directory.glob("part-*.parquet"), key=lambda f: (f.stat().st_mtime_ns, f.name)
        )
        parts = []
        for f in files:
            try:
                table = pq.read_table(f)
            except Exception:  # noqa: BLE001 - a torn part from a crash (atomic writes: unlikely)
                continue
            raw = (table.schema.metadata or {}).get(self.META_KEY)
            parts.append((table, json.loads(raw) if raw is not None else None))
        return parts
