"""The audit's console shows memlens's own output only: no deprecation warnings from transformers
during extraction, and a sentence (with what to pass) when no text is long enough to extract."""

from __future__ import annotations

import json
import warnings

import pytest

from helpers_cli import cli
from helpers_hf import write_lines

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("affix", [4, 12])
def test_audit_console_is_memlens_only(overfit, tmp_path, capsys, monkeypatch, affix):
    monkeypatch.setenv("COLUMNS", "200")
    train = write_lines(tmp_path / "train.txt", overfit.train)
    held = write_lines(tmp_path / "held.txt", overfit.heldout)
    args = ["audit", "--model", overfit.target, "--reference", overfit.reference]
    args += ["--train", train, "--heldout", held, "--out", tmp_path / "run", "--device", "cpu"]
    args += ["--prefix", affix, "--suffix", affix, "--top", "0"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = cli(args, capsys, monkeypatch)
    assert code in (0, None) and err == ""
    assert not [w for w in caught if "past_key_values" in str(w.message)], caught
    summary = json.loads((tmp_path / "run" / "audit.json").read_text())
    if affix == 4:  # every toy sentence has 13-17 tokens
        assert summary["warnings"] == [] and "warning" not in out
        # No training text repeats: the duplicate-count Spearman is undefined, and the console
        # says why instead of a bare "-".
        assert summary["duplicate_spearman"] is None
        assert summary["duplicate_spearman_detail"]["why"] == "every sample has duplicate count 1"
        flat = " ".join(out.split())
        assert "with duplicate count: undefined (every sample has duplicate count 1)" in flat
    else:  # 12 + 12 = 24 > 17: nothing eligible, and the audit says so and what to pass
        assert summary["train"]["n_extraction_eligible"] == 0
        (w,) = summary["warnings"]
        assert "no text has the 12 + 12 = 24 tokens extraction needs" in w
        assert "`prefix` 7 and `suffix` 7" in w  # the library names parameters ...
        flat = " ".join(out.split())  # ... and the command line their flags
        assert "warning: no text has the 12 + 12" in flat and "--prefix 7 and --suffix 7" in flat
