from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from conftest import REPO, write_recipe

from edgeft.cli import main
from edgeft.errors import EdgeftError
from edgeft.recipe import load_recipe, validate_recipe

SHIPPED = sorted((REPO / "recipes").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_recipe_validates(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem


def test_defaults_and_output_dir():
    recipe = validate_recipe({"name": "x", "data": {"train": "a.csv"}})
    assert recipe.method.kind == "lora"
    assert recipe.output_dir == Path("runs/x")


def test_all_problems_reported_at_once_with_field_and_value(tiny_recipe):
    tiny_recipe["method"] = {"kind": "lora-xl", "r": -4}
    tiny_recipe["training"]["lr"] = 0.1
    with pytest.raises(EdgeftError) as caught:
        validate_recipe(tiny_recipe, source="bad.yaml")
    problems = caught.value.problems
    assert len(problems) == 3
    text = "\n".join(problems)
    assert "bad.yaml: method.kind:" in text and "'lora', 'dora'" in text and "head-only" in text
    assert "method.r: Input should be greater than 0 (got -4)" in text
    assert "training.lr: unknown field; did you mean training.learning_rate?" in text


def test_unknown_top_level_field_lists_allowed():
    with pytest.raises(EdgeftError) as caught:
        validate_recipe({"name": "x", "data": {"train": "a.csv"}, "zzz": 1})
    assert "zzz: unknown field; allowed: name, model, data" in caught.value.problems[0]


def test_overrides_parse_values_as_yaml(tiny_recipe, tmp_path):
    path = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    recipe = load_recipe(path, ["training.epochs=1", "method.kind=dora", "training.early_stopping_patience="])
    assert recipe.training.epochs == 1
    assert recipe.method.kind == "dora"
    assert recipe.training.early_stopping_patience is None


def test_bad_override_syntax(tiny_recipe, tmp_path):
    path = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    with pytest.raises(EdgeftError, match="expected key.path=value"):
        load_recipe(path, ["training.epochs"])


def test_validation_fraction_range(tiny_recipe):
    tiny_recipe["data"]["validation"] = 0.9
    with pytest.raises(EdgeftError, match=r"data.validation: a fraction must be in \(0, 0.5\)"):
        validate_recipe(tiny_recipe)


def test_cli_bad_recipe_exits_2_without_traceback(tiny_recipe, tmp_path):
    tiny_recipe["method"]["kind"] = "nope"
    path = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    result = CliRunner().invoke(main, ["tune", str(path)])
    assert result.exit_code == 2
    assert "error: " in result.output and "method.kind" in result.output
    assert "Traceback" not in result.output


def test_cli_missing_recipe_and_bad_yaml(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["tune", str(tmp_path / "none.yaml")]).exit_code == 2
    (tmp_path / "broken.yaml").write_text("name: [unclosed")
    result = runner.invoke(main, ["tune", str(tmp_path / "broken.yaml")])
    assert result.exit_code == 2 and "not valid YAML" in result.output


def test_cli_dry_run_prints_resolved_recipe_and_summary(tiny_recipe, tmp_path):
    path = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    result = CliRunner().invoke(main, ["tune", str(path), "--dry-run", "--set", "training.epochs=1"])
    assert result.exit_code == 0, result.output
    assert "epochs: 1.0" in result.output
    summary = yaml.safe_load(result.stdout[result.stdout.index("{"):])  # stderr may carry data warnings
    assert summary["labels"] == 3
    assert summary["splits"]["train"]["rows"] + summary["splits"]["validation"]["rows"] == 120
    assert not (tmp_path / "run").exists()


def test_tune_without_the_extra_names_the_install_line(tiny_recipe, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    path = write_recipe(tiny_recipe, tmp_path / "r.yaml")
    result = CliRunner().invoke(main, ["tune", str(path)])
    assert result.exit_code == 2
    assert 'edgeft tune needs: pip install "edgeft[tune]"' in result.output
