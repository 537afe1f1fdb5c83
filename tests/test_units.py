"""memlens.units is the one home of the shared constants and code lengths: every module that
needs capacity bits or a zlib size calls it, and nothing else spells 3.64 or compresses text."""

from __future__ import annotations

import ast
import importlib
import math
from pathlib import Path

import memlens.units as U

SRC = Path(U.__file__).parent


def test_units_known_values():
    assert U.capacity_bits(1_000_000) == 3_640_000.0  # 3.64 bits per parameter
    assert U.capacity_bits(1528, alpha=2.0) == 3056.0
    # V = 64, S = 16: 6 bits per token, 96 per sequence, 90 memorizable (first token never)
    assert U.uniform_code_bits(64) == 6.0
    assert U.uniform_entropy_bits(16, 64) == 96.0 and U.memorizable_bits(16, 64) == 90.0
    assert U.LN2 == math.log(2.0)


def test_one_capacity_bits_and_one_zlib_size():
    users = {
        "memlens.audit.recipe": ("capacity_bits", "zlib_bytes"),
        "memlens.mia.attacks": ("zlib_bytes",),
        "memlens.laws": ("capacity_bits",),
        "memlens.laws.formulas": ("capacity_bits",),
        "memlens.laws.settings": ("capacity_bits",),
        "memlens.laws.mia_experiment": ("capacity_bits",),
        "memlens.laws.double_descent": ("capacity_bits",),
    }
    for module, names in users.items():
        for name in names:
            assert getattr(importlib.import_module(module), name) is getattr(U, name), (
                module,
                name,
            )


def test_no_module_but_units_defines_them():
    """No second ``capacity_bits``/``zlib_bytes``, no ``zlib.compress`` and no literal 3.64 (the
    published alpha) in code outside memlens.units (docstrings may cite the number)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "units.py" and path.parent == SRC:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name in ("capacity_bits", "zlib_bytes"):
                found.append(f"{path.name}: def {node.name}")
            if isinstance(node, ast.Constant) and node.value == 3.64:
                found.append(f"{path.name}:{node.lineno}: 3.64")
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "compress"
                and isinstance(node.value, ast.Name)
                and node.value.id == "zlib"
            ):
                found.append(f"{path.name}:{node.lineno}: zlib.compress")
    assert found == []


def test_bad_units_input_is_one_sentence():
    import pytest

    from memlens.errors import UserError

    # 'fp7' returned the fp32 figures; V = 0 was a math domain error
    with pytest.raises(UserError, match="unknown precision 'fp7'; use fp32 or bf16"):
        U.published_alpha("fp7")
    for call in (U.uniform_code_bits, lambda v: U.uniform_entropy_bits(8, v)):
        with pytest.raises(UserError, match="the vocabulary size must be positive, got 0"):
            call(0)
    assert U.memorizable_bits(3, 4) == 4.0
