"""The causal-lm task: prompt/completion data, completion-only loss, tune -> merge -> scored run on a tiny Llama."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from tests.conftest import write_recipe

pytest.importorskip("peft")

from edgeft.decoders import TINY_LLAMA, load_decoder_tokenizer  # noqa: E402
from edgeft.recipe import validate_recipe  # noqa: E402
from edgeft.tasks import get_task  # noqa: E402
from edgeft.tasks.causal_lm import IGNORE, build_prompt_format  # noqa: E402

NAMES = ["The Eagle", "The Mill", "Alimentum", "Aromi", "Cotto", "Zizzi", "Strada", "Wildwood"]
FOODS = ["French", "Italian", "Chinese", "English"]


def write_tiny_e2e(path: Path, names: list[str], seed: int = 0) -> Path:
    """An E2E-shaped CSV (`mr,ref`), two references per meaning representation."""
    rng = random.Random(seed)
    rows = []
    for name in names:
        food = rng.choice(FOODS)
        mr = f"name[{name}], food[{food}]"
        rows += [(mr, f"{name} serves {food} food."), (mr, f"{name} is a {food} place.")]
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["mr", "ref"])
        writer.writerows(rows)
    return path


@pytest.fixture
def causal_recipe(tmp_path) -> dict:
    return {
        "name": "tiny-lm",
        "model": {"name": TINY_LLAMA, "task": "causal-lm"},
        "data": {"train": str(write_tiny_e2e(tmp_path / "train.csv", NAMES * 3)),
                 "test": str(write_tiny_e2e(tmp_path / "test.csv", NAMES[:4], seed=1)),
                 "validation": 0.25, "text_column": "mr", "label_column": "ref", "max_length": 48},
        "method": {"kind": "lora", "r": 8, "alpha": 16},
        "training": {"epochs": 6, "batch_size": 8, "learning_rate": 2e-2, "warmup_ratio": 0.0},
        "generation": {"prompt_template": "MR: {prompt}\nText:", "max_new_tokens": 12, "samples": 2},
        "output": str(tmp_path / "run"),
    }


def test_loss_covers_only_the_completion_and_eos(causal_recipe):
    # setup
    recipe = validate_recipe(causal_recipe)
    task = get_task("causal-lm")
    tokenizer = load_decoder_tokenizer(TINY_LLAMA)
    splits = task.load_splits(recipe.data, 0)
    prompt_format = build_prompt_format(tokenizer, recipe.generation)
    # execute
    row = task.tokenize(splits.train.select([0]), tokenizer, 48, prompt_format)[0]
    # assert: the prompt's tokens are ignored; the rest is exactly the completion followed by eos
    prompt_ids = tokenizer(prompt_format.replace("{prompt}", splits.train[0]["prompt"]), add_special_tokens=False)
    n_prompt = len(prompt_ids["input_ids"])
    assert row["labels"][:n_prompt] == [IGNORE] * n_prompt
    completion = tokenizer.decode(row["labels"][n_prompt:-1])
    assert completion == splits.train[0]["completion"]
    assert row["labels"][-1] == tokenizer.eos_token_id
    assert row["input_ids"][n_prompt:] == row["labels"][n_prompt:]


def test_validation_is_held_out_by_prompt(causal_recipe):
    splits = get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)
    assert set(splits.train["prompt"]).isdisjoint(splits.validation["prompt"])
    assert len(splits.validation) > 0


def test_chat_template_is_rendered_once_around_the_prompt(causal_recipe):
    causal_recipe["generation"] = {"prompt_template": "Describe: {prompt}", "chat_template": True}
    tokenizer = load_decoder_tokenizer(TINY_LLAMA)
    prompt_format = build_prompt_format(tokenizer, validate_recipe(causal_recipe).generation)
    assert prompt_format == "<|im_start|>user\nDescribe: {prompt}<|im_end|>\n<|im_start|>assistant\n"


def test_other_methods_are_refused_with_the_allowed_ones(causal_recipe, tmp_path):
    from edgeft.errors import EdgeftError
    from edgeft.tune import tune

    causal_recipe["method"] = {"kind": "prefix"}
    with pytest.raises(EdgeftError, match="lora, dora, full"):
        tune(validate_recipe(causal_recipe))


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_tune_merges_checks_and_scores_by_generating(causal_recipe, kind):
    # setup
    from edgeft.tune import tune

    causal_recipe["method"]["kind"] = kind
    if kind == "full":
        causal_recipe["training"]["learning_rate"] = 2e-3
    # execute
    run = tune(validate_recipe(causal_recipe))
    # assert
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == "causal-lm"
    assert metrics["merge"]["max_abs_diff"] < 1e-3
    assert (run / "merged" / "config.json").is_file() and (run / "merged" / "generation.json").is_file()
    assert (run / "adapter").is_dir() == (kind == "lora")
    # A random 400-token model starts near perplexity 400; a few epochs on templated text must cut that hard.
    assert metrics["test"]["perplexity"] < 40
    assert 0 <= metrics["test"]["bleu"] <= 100 and metrics["test"]["n"] == 4
    assert len(metrics["samples"]) == 2
    losses = [json.loads(line)["loss"] for line in (run / "train_log.jsonl").read_text().splitlines()
              if "loss" in json.loads(line)]
    assert losses[-1] < losses[0]
    assert "BLEU" in (run / "README.md").read_text()
