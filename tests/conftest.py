"""Settings and fixtures shared by every test folder.

Fixtures (no import needed in a test module):

* ``one_thread``: torch on one intra-op thread for the test, then restored (tiny models gain
  nothing from a second thread, and two OpenMP threads on a busy 2-core machine can be tens of
  times slower than one). Use ``pytestmark = pytest.mark.usefixtures("one_thread")``.
* ``word_tokenizer``: the word-level tokenizer of the toy language (``<|endoftext|>`` = 0 is BOS).
* ``tiny_gpt2_dir``, ``tiny_llama_dir``: a saved random tiny GPT-2 / LLaMA (context 64) with it.
* ``overfit``: a target that memorized its 30 training sentences, a reference and held-out data.

The plain builders behind them are in ``helpers_hf`` (and GGUF writers in ``helpers_gguf``),
importable from every folder (``tests/`` is on ``sys.path``, see pyproject's pytest settings).
Torch is imported only when a fixture is used.
"""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Small LAPACK calls are far slower with several BLAS threads on a busy 2-core machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture
def one_thread():
    """Torch on one intra-op thread for the test (see :func:`helpers_hf.single_thread`)."""
    from helpers_hf import single_thread

    with single_thread():
        yield


@pytest.fixture(scope="session")
def word_tokenizer():
    """The word-level tokenizer of the toy language (``<|endoftext|>`` = 0 is BOS)."""
    from helpers_hf import wordlevel_tokenizer

    return wordlevel_tokenizer()


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    """A saved random tiny GPT-2 (context 64) with the word-level tokenizer."""
    from helpers_hf import save_lm, tiny_gpt2, wordlevel_tokenizer

    tok = wordlevel_tokenizer()
    return save_lm(tiny_gpt2(len(tok)), tok, tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A saved random tiny LLaMA (context 64) with the word-level tokenizer."""
    from helpers_hf import save_lm, tiny_llama, wordlevel_tokenizer

    tok = wordlevel_tokenizer()
    return save_lm(tiny_llama(len(tok)), tok, tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def overfit():
    """A target that memorized its 30 training sentences, a reference and held-out data."""
    from helpers_hf import overfit_bundle

    return overfit_bundle()
