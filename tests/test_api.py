"""The top-level API: ``import memlens`` is light, every exported name resolves, and
:func:`memlens.run` is each capability's own ``run``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import memlens
from memlens.errors import UserError
from memlens.recipes import RECIPES


def test_import_memlens_does_not_import_torch():
    code = (
        "import sys, memlens, memlens.models, memlens.data; "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_exported_name_resolves():
    for name in memlens.__all__:
        assert getattr(memlens, name) is not None, name
    assert set(memlens.__all__) <= set(dir(memlens))
    from memlens.models.hf import load_causal_lm
    from memlens.units import capacity_bits

    assert memlens.load_causal_lm is load_causal_lm
    assert memlens.capacity_bits is capacity_bits
    assert memlens.capacity_bits(1_000_000) == 3_640_000.0
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        memlens.nope  # noqa: B018


def test_every_package_states_a_public_api_that_resolves():
    import importlib

    for package in memlens._PACKAGES:
        module = importlib.import_module(f"memlens.{package}")
        assert module.__all__, package
        for name in module.__all__:
            assert getattr(module, name) is not None, (package, name)


def test_every_package_init_states_its_public_api():
    """Every package of the tree, capabilities, shared cores and the CLI's, declares ``__all__``."""
    import ast
    from pathlib import Path

    root = Path(memlens.__file__).parent
    missing = []
    for init in sorted(root.rglob("__init__.py")):
        tree = ast.parse(init.read_text(encoding="utf-8"))
        names = {
            t.id
            for node in tree.body
            if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name)
        }
        if "__all__" not in names:
            missing.append(str(init.relative_to(root)))
    assert missing == []


def test_run_dispatches_to_the_capabilitys_own_run(tmp_path):
    from memlens.prior.recipe import TheoryConfig
    from memlens.prior.recipe import run as prior_run

    config = TheoryConfig(gamma=2.0, r2=1.0, sigma2=0.25)
    ours = memlens.run(config, tmp_path / "a")
    theirs = prior_run(config, tmp_path / "b")
    assert type(ours.summary) is type(theirs.summary)
    assert ours.summary.to_json() == theirs.summary.to_json()
    assert ours.out_dir == tmp_path / "a"
    a = json.loads((tmp_path / "a" / "theory.json").read_text())
    assert a == json.loads((tmp_path / "b" / "theory.json").read_text())


def test_run_answers_a_size_question_without_a_directory():
    from memlens.laws import SizeConfig

    result = memlens.run(SizeConfig(params=1e6, n_sequences=1000, vocab_size=2048))
    # 3.64 bits/param * 1e6 params; 1000 sequences of 64 tokens at log2(2048) = 11 bits.
    assert result.summary.capacity_bits == 3_640_000.0
    assert result.out_dir is None


def test_run_refuses_an_unknown_config_in_one_sentence():
    with pytest.raises(
        UserError, match=r"^memlens.run needs a capability's config .* got a dict\.$"
    ):
        memlens.run({"gamma": 2.0})


def test_every_recipe_target_exists():
    import importlib

    from memlens.recipes import RECIPES

    for config, recipe in RECIPES.items():
        for target in (config, recipe):
            module, _, name = target.partition(":")
            assert callable(getattr(importlib.import_module(module), name)), target
        # dispatch reads the class's own module and name: the key must be where it is defined
        module, _, name = config.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert f"{cls.__module__}:{cls.__qualname__}" == config


def test_docstring_examples_run():
    import doctest

    import memlens.recipes

    for mod in (memlens, memlens.recipes):
        result = doctest.testmod(mod)
        assert result.attempted >= 2 and result.failed == 0, mod.__name__


@pytest.mark.parametrize("config_class, recipe", list(RECIPES.items()))
def test_every_recipe_refuses_a_plain_dict_in_one_sentence(config_class, recipe, tmp_path):
    """A notebook user's ``run({"model": ...}, out)`` (or another capability's config) is one
    sentence naming the config to build, and writes nothing; the single-config recipes failed
    with ``AttributeError: 'dict' object has no attribute ...``."""
    import importlib

    from memlens.laws import SizeConfig

    module, _, name = recipe.partition(":")
    run = getattr(importlib.import_module(module), name)
    cls_name = config_class.partition(":")[2]
    out = tmp_path / "out"
    with pytest.raises(UserError) as exc:
        run({"seed": 1}, out)
    message = str(exc.value)
    assert cls_name in message and "dict" in message and "\n" not in message, message
    assert not out.exists()
    if cls_name != "SizeConfig":
        with pytest.raises(UserError, match="SizeConfig"):
            run(SizeConfig(params=1e6, n_sequences=10, vocab_size=64), out)
        assert not out.exists()


def test_an_unknown_config_key_is_named_with_the_setting_meant():
    """A misspelt key gets the closest setting; a ``run`` keyword put in a config is sent to
    ``run``; otherwise the settings are listed (pydantic said "Extra inputs are not permitted")."""
    from memlens.audit import AuditConfig
    from memlens.capacity import load_config

    with pytest.raises(UserError) as exc:
        load_config("smoke", workers=1)
    assert str(exc.value) == (
        "invalid capacity config: 'workers' is not a setting but an argument of how it runs, "
        "run(config, out, workers=...)."
    )
    with pytest.raises(UserError) as exc:
        AuditConfig(model="m", train="t", heldout="h", prefx=8)
    assert (
        str(exc.value) == "invalid audit config: no setting named 'prefx'; did you mean 'prefix'?"
    )
    with pytest.raises(UserError) as exc:
        AuditConfig.validate_dict({"model": "m", "train": "t", "heldout": "h", "zzz": 1})
    message = str(exc.value)
    assert message.startswith(
        "invalid audit config: no setting named 'zzz'; its settings are model,"
    )
    assert message.endswith(".") and "\n" not in message
    with pytest.raises(UserError) as exc:
        load_config("smoke", train={"lrr": 1e-3})
    assert str(exc.value) == "invalid capacity config: no setting named 'train.lrr'."
    # a bad value of a known setting keeps the field-naming sentence
    with pytest.raises(UserError, match=r"^invalid audit config \(prefix\): "):
        AuditConfig(model="m", train="t", heldout="h", prefix=0)


def test_print_of_a_run_result_shows_its_headline(tmp_path):
    """``print(result)`` in a notebook: the kind, the directory and the headline numbers on a few
    lines (the dataclass repr dumped the whole summary on one line)."""
    from memlens.laws import SizeConfig

    res = memlens.run(SizeConfig(params=1e6, n_sequences=10, vocab_size=64), tmp_path / "size")
    res.reused = ["a", "b", "c", "d", "e", "f"]
    assert repr(res).splitlines() == [
        f"RunResult: laws-size in {tmp_path / 'size'}",
        "  parameters: 1,000,000",
        "  capacity (bits): 3,640,000",
        "  dataset (sequences): 10",
        "  capacity ratio: 0.001055",  # 10 * 64 * 6 bits / 3.64e6 bits
        "  regime: memorization",
        "  predicted MIA F1: 1",
        "  α (bits/param): 3.64",
        "  reused 6 stored: a, b, c, d, e, ...",
    ]


def test_every_config_with_a_seed_refuses_a_negative_one():
    """numpy's generators take no negative seed: ``seed=-1`` ended in a traceback deep inside
    mia, shadow, dp-audit, laws, capacity and prior runs. Every config refuses it at the door."""
    import importlib

    from memlens.config import Config
    from memlens.errors import UserError
    from memlens.recipes import RECIPES

    seeded = []
    for target in RECIPES:
        module, name = target.split(":")
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, Config)
        for field in cls.model_fields:
            if field == "seed" or field.endswith("_seed"):
                seeded.append((cls, field))
                with pytest.raises(UserError) as refused:  # other required fields missing too
                    cls(**{field: -1})
                errors = refused.value.validation.errors()
                said = [e["msg"] for e in errors if e["loc"] == (field,)]
                assert said and (
                    "a seed is 0 or more" in said[0] or "greater than or equal to 0" in said[0]
                ), (cls.__name__, errors)
    assert len(seeded) >= 14  # every capability that draws random numbers has one
