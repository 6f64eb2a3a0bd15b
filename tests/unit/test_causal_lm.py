"""The causal-lm task: prompt/completion data, completion-only loss, tune -> merge -> scored run on a tiny Llama."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pytest

from click.testing import CliRunner

from edgeft.cli import main
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


def tiny_causal_recipe(folder: Path) -> dict:
    return {
        "name": "tiny-lm",
        "model": {"name": TINY_LLAMA, "task": "causal-lm"},
        "data": {"train": str(write_tiny_e2e(folder / "train.csv", NAMES * 3)),
                 "test": str(write_tiny_e2e(folder / "test.csv", NAMES[:4], seed=1)),
                 "validation": 0.25, "text_column": "mr", "label_column": "ref", "max_length": 48},
        "method": {"kind": "lora", "r": 8, "alpha": 16},
        "training": {"epochs": 6, "batch_size": 8, "learning_rate": 2e-2, "warmup_ratio": 0.0},
        "generation": {"prompt_template": "MR: {prompt}\nText:", "max_new_tokens": 12, "samples": 2},
        "output": str(folder / "run"),
    }


@pytest.fixture
def causal_recipe(tmp_path) -> dict:
    return tiny_causal_recipe(tmp_path)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> Path:
    """One LoRA run on the tiny Llama, tuned through the CLI as a user would."""
    folder = tmp_path_factory.mktemp("causal")
    path = write_recipe(tiny_causal_recipe(folder), folder / "recipe.yaml")
    result = CliRunner().invoke(main, ["tune", str(path)])
    assert result.exit_code == 0, result.output
    return folder / "run"


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


def test_perplexity_does_not_depend_on_batching_or_padding(causal_recipe):
    # setup: rows of different lengths, so batches of 4 pad and length order regroups them
    from edgeft.decoders import load_decoder
    from edgeft.tasks.causal_lm import perplexity

    recipe = validate_recipe(causal_recipe)
    task = get_task("causal-lm")
    tokenizer = load_decoder_tokenizer(TINY_LLAMA)
    split = task.load_splits(recipe.data, 0).test
    tokenized = task.tokenize(split, tokenizer, 48, build_prompt_format(tokenizer, recipe.generation))
    model = load_decoder(TINY_LLAMA)
    assert len(set(map(len, tokenized["input_ids"]))) > 1
    # execute
    one_by_one, batched = perplexity(model, tokenized, task.collator(tokenizer), batch_size=1), \
        perplexity(model, tokenized, task.collator(tokenizer), batch_size=4)
    # assert: a random model near its vocabulary size, and the same value however the rows are grouped
    assert one_by_one > 10
    assert batched == pytest.approx(one_by_one, rel=1e-4)


def test_label_smoothing_spreads_the_next_token_target_over_the_vocabulary(causal_recipe, tmp_path):
    # setup: the Trainer built from a recipe with label smoothing, and a batch of real rows
    import torch

    from edgeft.decoders import load_decoder
    from edgeft.tasks.causal_lm import _trainer_class
    from edgeft.training import build_trainer

    causal_recipe["training"]["label_smoothing"] = 0.1
    recipe = validate_recipe(causal_recipe)
    task = get_task("causal-lm")
    tokenizer = load_decoder_tokenizer(TINY_LLAMA)
    splits = task.load_splits(recipe.data, 0)
    prompt_format = build_prompt_format(tokenizer, recipe.generation)
    tokenized = {name: task.tokenize(getattr(splits, name), tokenizer, 48, prompt_format)
                 for name in ("train", "validation")}
    model = load_decoder(TINY_LLAMA)
    trainer = build_trainer(model, recipe.training, tokenizer, tokenized, tmp_path, trainer_class=_trainer_class(),
                            task=task)
    batch = task.collator(tokenizer)([tokenized["train"][i] for i in range(4)])
    # execute
    with torch.no_grad():
        loss = float(trainer.compute_loss(model, dict(batch)))
        log_probs = torch.log_softmax(model(input_ids=batch["input_ids"],
                                            attention_mask=batch["attention_mask"]).logits[:, :-1].float(), -1)
    # assert: 0.9 of the target token's loss plus 0.1 of the vocabulary's mean, over the completion's next tokens
    targets = batch["labels"][:, 1:]
    active = targets != IGNORE
    nll = -log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)[active].mean()
    uniform = -log_probs.mean(-1)[active].mean()
    assert loss == pytest.approx(float(0.9 * nll + 0.1 * uniform), rel=1e-4)
    assert loss != pytest.approx(float(nll), rel=1e-3)


def test_neftune_noise_changes_the_training_loss_and_leaves_no_hook(causal_recipe, tmp_path):
    # setup: one training step of the same model, rows and seed, with and without NEFTune
    import copy

    from edgeft.decoders import load_decoder
    from edgeft.tasks.causal_lm import _trainer_class
    from edgeft.training import build_trainer

    task = get_task("causal-lm")
    tokenizer = load_decoder_tokenizer(TINY_LLAMA)
    model = load_decoder(TINY_LLAMA)
    losses, models = {}, {}
    for alpha in (None, 15.0):
        causal_recipe["training"].update(neftune_alpha=alpha, max_steps=1)
        recipe = validate_recipe(causal_recipe)
        splits = task.load_splits(recipe.data, 0)
        prompt_format = build_prompt_format(tokenizer, recipe.generation)
        tokenized = {name: task.tokenize(getattr(splits, name), tokenizer, 48, prompt_format)
                     for name in ("train", "validation")}
        models[alpha] = copy.deepcopy(model)
        trainer = build_trainer(models[alpha], recipe.training, tokenizer, tokenized, tmp_path / str(alpha),
                                trainer_class=_trainer_class(), task=task)
        # execute
        losses[alpha] = trainer.train().training_loss
    # assert: the noise changed the training loss; afterwards the embeddings carry no noise hook
    assert losses[15.0] != pytest.approx(losses[None], rel=1e-6)
    embeddings = models[15.0].get_input_embeddings()
    assert not hasattr(embeddings, "neftune_noise_alpha") and not embeddings._forward_hooks


def test_validation_is_held_out_by_prompt(causal_recipe):
    splits = get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)
    assert set(splits.train["prompt"]).isdisjoint(splits.validation["prompt"])
    assert len(splits.validation) > 0


def test_a_fixed_validation_seed_holds_out_the_same_prompts_whatever_the_training_seed(causal_recipe):
    task = get_task("causal-lm")
    held = {seed: set(task.load_splits(validate_recipe(causal_recipe).data, seed).validation["prompt"])
            for seed in range(4)}
    assert len({frozenset(prompts) for prompts in held.values()}) > 1  # the training seed draws it by default
    fixed = validate_recipe({**causal_recipe, "data": {**causal_recipe["data"], "validation_seed": 0}}).data
    assert all(set(task.load_splits(fixed, seed).validation["prompt"]) == held[0] for seed in range(4))


def test_substitutions_replace_a_value_in_prompt_and_completion_alike():
    # setup
    from datasets import Dataset

    from edgeft.tasks.causal_lm import substitute_values

    rows = Dataset.from_dict({
        "prompt": ["name[A], eatType[coffee shop], food[English]", "name[B], food[Chinese], near[Raja Indian Cuisine]",
                   "name[C], food[English]"],
        "completion": ["Coffee shop A has English food; an English menu.", "B: Chinese food near Raja Indian Cuisine.",
                       "C is a nice place."],
    })
    groups = [["coffee shop", "pub", "restaurant"], ["Chinese", "English", "Fast food", "Italian", "Indian"]]
    # execute
    replaced = substitute_values(rows, groups, 1.0, seed=0)
    kept = substitute_values(rows, groups, 0.0, seed=0)
    # assert: every eligible value changed, consistently, in its case style, with its article and no doubled word
    first = replaced[0]
    eat_type, food = (re.search(rf"{key}\[([^\]]*)\]", first["prompt"]).group(1) for key in ("eatType", "food"))
    assert eat_type in ("pub", "restaurant") and food in ("Chinese", "Fast food", "Italian", "Indian")
    article = "an" if food[0] in "AEIOU" else "a"
    assert first["completion"] == f"{eat_type.capitalize()} A has {food} food; {article} {food} menu.".replace(
        "Fast food food", "Fast food")
    # Chinese next to `Indian` inside a name is ambiguous; a completion that does not name the value is left alone
    assert replaced[1] == rows[1] and replaced[2] == rows[2]
    assert kept.to_dict() == rows.to_dict()


def test_substitutions_change_training_rows_only(causal_recipe):
    # setup
    plain = get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)
    causal_recipe["data"]["substitutions"] = [FOODS]
    # execute
    splits = get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)
    # assert: about half the training rows name another food; validation and test are as read
    changed = sum(a != b for a, b in zip(plain.train["prompt"], splits.train["prompt"]))
    assert 0.2 * len(plain.train) < changed < 0.8 * len(plain.train)
    assert splits.validation.to_dict() == plain.validation.to_dict()
    assert splits.test.to_dict() == plain.test.to_dict()


def test_substitutions_are_refused_for_a_classifier_and_for_a_single_value(causal_recipe, tmp_path):
    from edgeft.errors import EdgeftError

    causal_recipe["data"]["substitutions"] = [["pub"]]
    with pytest.raises(EdgeftError, match=r"data.substitutions\[0\]: a group needs two or more"):
        validate_recipe(causal_recipe)
    causal_recipe["data"]["substitutions"] = [["pub", "restaurant"]]
    causal_recipe["model"] = {"name": "tiny-bert"}
    with pytest.raises(EdgeftError, match="only a causal LM"):
        validate_recipe(causal_recipe)


@pytest.mark.parametrize("field, value", [("label_smoothing", 0.1), ("neftune_alpha", 5.0)])
def test_training_options_of_a_causal_lm_are_refused_for_a_classifier(causal_recipe, field, value):
    from edgeft.errors import EdgeftError

    causal_recipe["model"] = {"name": "tiny-bert"}
    causal_recipe["training"][field] = value
    with pytest.raises(EdgeftError, match=f"training.{field}: only a causal LM"):
        validate_recipe(causal_recipe)


def test_checkpoints_can_be_chosen_on_validation_bleu(causal_recipe):
    # setup
    from edgeft.tune import tune

    causal_recipe["training"].update(checkpoint_metric="bleu", early_stopping_patience=None)
    # execute
    run = tune(validate_recipe(causal_recipe))
    # assert: every evaluation generated for BLEU, the kept checkpoint has the best, and the merged model's own
    # validation scoring reproduces it
    evaluations = [record for record in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())
                   if "eval_loss" in record]
    assert len(evaluations) == 6 and all(0 <= record["eval_bleu"] <= 100 for record in evaluations)
    metrics = json.loads((run / "metrics.json").read_text())
    best = max(evaluations, key=lambda record: record["eval_bleu"])  # the first of equals, as the Trainer keeps
    assert metrics["train"]["best_checkpoint"] == f"checkpoint-{best['step']}"
    assert metrics["validation"]["bleu"] == best["eval_bleu"]


def test_checkpoint_metric_is_refused_for_a_classifier(causal_recipe):
    from edgeft.errors import EdgeftError

    causal_recipe["model"] = {"name": "tiny-bert"}
    causal_recipe["training"]["checkpoint_metric"] = "bleu"
    with pytest.raises(EdgeftError, match="training.checkpoint_metric: only a causal LM"):
        validate_recipe(causal_recipe)


def test_training_rows_that_leave_out_a_required_value_are_dropped(causal_recipe):
    # setup
    from datasets import Dataset

    from edgeft.recipe import CompletionRule
    from edgeft.tasks.causal_lm import keep_complete

    rows = Dataset.from_dict({
        "prompt": ["name[A], food[Fast food], familyFriendly[yes]", "name[B.], food[Chinese]", "name[C], area[riverside]",
                   "name[D], familyFriendly[no]"],
        "completion": ["A sells fast food to families.", "B is a Chinese place.", "C is by the river.",
                       "D is a pub."],
    })
    rules = [CompletionRule(when=r"(?:name|food)\[([^\]]+)\]", require=r"\b\1"),
             CompletionRule(when=r"familyFriendly\[", require="famil|kid|child")]
    # execute
    kept = keep_complete(rows, rules)
    causal_recipe["data"]["require_in_completion"] = [{"when": r"food\[(\w+)\]", "require": r"serves \1"}]
    splits = get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)
    # assert: each match of every rule must be said, case-insensitively, with a group taken literally (`B.` is
    # not `B` + any character); validation and test stay whole
    assert kept["prompt"] == [rows[0]["prompt"], rows[2]["prompt"]]
    assert len(splits.train) and all(" serves " in completion for completion in splits.train["completion"])
    assert len(splits.validation) and "is a" in " ".join(splits.validation["completion"])


def test_completion_rules_are_checked_when_the_recipe_loads(causal_recipe):
    from edgeft.errors import EdgeftError

    for rule, message in [({"when": "food[", "require": "x"}, "when: not a regular expression"),
                          ({"when": r"food\[(\w+)\]", "require": r"\2"}, "names group 2 but `when` has 1"),
                          ({"when": "food", "require": "(x"}, "require: not a regular expression")]:
        causal_recipe["data"]["require_in_completion"] = [rule]
        with pytest.raises(EdgeftError, match=re.escape(message)):
            validate_recipe(causal_recipe)
    causal_recipe["data"]["require_in_completion"] = [{"when": r"food\[(\w+)\]", "require": r"never said"}]
    with pytest.raises(EdgeftError, match="none of the .* training rows"):
        get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)


def test_training_rows_matching_a_repeat_rule_appear_that_many_times(causal_recipe):
    # setup
    from datasets import Dataset

    from edgeft.recipe import RepeatRule
    from edgeft.tasks.causal_lm import repeat_rows

    rows = Dataset.from_dict({"prompt": ["name[A], near[B]", "name[C]", "name[D], near[E], food[F]"],
                              "completion": ["a", "c", "d"]})
    rules = [RepeatRule(when=r"food\[", times=3), RepeatRule(when=r"near\[", times=2)]
    # execute
    repeated = repeat_rows(rows, rules)
    plain = get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)
    causal_recipe["data"]["repeat"] = [{"when": ".", "times": 4}]
    every_row = get_task("causal-lm").load_splits(validate_recipe(causal_recipe).data, 0)
    # assert: the first matching rule counts; validation stays as read
    assert repeated["completion"] == ["a", "a", "c", "d", "d", "d"]
    assert every_row.train["completion"] == [c for c in plain.train["completion"] for _ in range(4)]
    assert every_row.validation["completion"] == plain.validation["completion"]


def test_repeat_rules_are_checked_when_the_recipe_loads(causal_recipe):
    from edgeft.errors import EdgeftError

    for rule, message in [({"when": "food[", "times": 2}, "when: not a regular expression"),
                          ({"when": "food", "times": 1}, "times: Input should be greater than or equal to 2")]:
        causal_recipe["data"]["repeat"] = [rule]
        with pytest.raises(EdgeftError, match=re.escape(message)):
            validate_recipe(causal_recipe)
    causal_recipe["data"]["repeat"] = [{"when": "food", "times": 2}]
    causal_recipe["model"] = {"name": "tiny-bert"}
    with pytest.raises(EdgeftError, match="data.repeat: only a causal LM"):
        validate_recipe(causal_recipe)


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


def test_lora_run_is_merged_checked_and_scored_by_generating(lora_run):
    metrics = json.loads((lora_run / "metrics.json").read_text())
    assert metrics["task"] == "causal-lm"
    assert metrics["merge"]["max_abs_diff"] < 1e-3
    assert (lora_run / "merged" / "config.json").is_file() and (lora_run / "merged" / "generation.json").is_file()
    assert (lora_run / "adapter" / "adapter_config.json").is_file()
    # A random 400-token model starts near perplexity 400; six epochs on templated text must cut that hard.
    assert metrics["test"]["perplexity"] < 40
    assert 0 <= metrics["test"]["bleu"] <= 100 and metrics["test"]["n"] == 4
    assert len(metrics["samples"]) == 2
    losses = [record["loss"] for record in map(json.loads, (lora_run / "train_log.jsonl").read_text().splitlines())
              if "loss" in record]
    assert losses[-1] < losses[0]
    card = (lora_run / "README.md").read_text()
    assert "BLEU" in card and "Labels" not in card
    assert f"edgeft export {lora_run} " in card and "AutoModelForCausalLM" in card  # the final folder, not staging


def test_tuning_continues_from_a_saved_adapter(lora_run, causal_recipe):
    # setup: one step at a negligible learning rate, so the run scores what it started from
    from edgeft.tune import tune

    causal_recipe["method"]["adapter"] = str(lora_run / "adapter")
    causal_recipe["training"].update(max_steps=1, learning_rate=1e-12)
    # execute
    run = tune(validate_recipe(causal_recipe))
    # assert: the saved adapter's quality, far from a fresh adapter's (the untuned random model, perplexity ~400)
    before = json.loads((lora_run / "metrics.json").read_text())["test"]["perplexity"]
    after = json.loads((run / "metrics.json").read_text())["test"]["perplexity"]
    assert after == pytest.approx(before, rel=1e-3)


def test_a_saved_adapter_of_another_rank_is_refused(lora_run, causal_recipe, tmp_path):
    causal_recipe["method"].update(adapter=str(lora_run / "adapter"), r=4)
    result = CliRunner().invoke(main, ["tune", str(write_recipe(causal_recipe, tmp_path / "r4.yaml"))])
    assert result.exit_code == 2 and "method.adapter" in result.output and "r=8" in result.output
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["dora", "full"])
def test_dora_and_full_tune_through_the_same_path(causal_recipe, kind):
    from edgeft.tune import tune

    causal_recipe["method"]["kind"] = kind
    causal_recipe["training"].update(epochs=1, learning_rate=2e-3 if kind == "full" else 2e-2)
    run = tune(validate_recipe(causal_recipe))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == kind
    assert metrics["merge"]["max_abs_diff"] < 1e-3
    assert (run / "adapter").is_dir() == (kind == "dora")
    trainable, total = metrics["params"]["trainable"], metrics["params"]["total"]
    assert (trainable == total) == (kind == "full")


def test_export_then_generate_equals_pytorch_greedy(lora_run):
    # setup: the merged model's own greedy continuation, decoded
    from edgeft.decoders import load_decoder
    from edgeft.tasks.causal_lm import generate_torch

    merged = lora_run / "merged"
    prompt_format = json.loads((merged / "generation.json").read_text())["prompt_format"]
    expected = generate_torch(load_decoder(merged), load_decoder_tokenizer(merged), ["name[Aromi], food[French]"],
                              prompt_format, 12)[0]
    assert len(expected.split()) >= 2  # a real continuation, so equality says something
    # execute: export through the CLI, generate through the CLI (light runtime)
    exported = CliRunner().invoke(main, ["export", str(lora_run), "--format", "onnx", "--samples", "8"])
    assert exported.exit_code == 0, exported.output
    generated = CliRunner().invoke(main, ["generate", str(lora_run / "bundles" / "onnx-fp32"),
                                          "name[Aromi], food[French]", "--max-new-tokens", "12"])
    # assert
    assert generated.exit_code == 0, generated.output
    assert generated.output.strip() == expected
    manifest = json.loads((lora_run / "bundles" / "onnx-fp32" / "manifest.json").read_text())
    assert manifest["verification"]["greedy"]["identical"] == manifest["verification"]["greedy"]["prompts"]


def test_generate_refuses_a_prompt_longer_than_the_context(lora_run):
    bundle = lora_run / "bundles" / "onnx-fp32"
    if not bundle.is_dir():
        CliRunner().invoke(main, ["export", str(lora_run), "--format", "onnx", "--samples", "4"])
    result = CliRunner().invoke(main, ["generate", str(bundle), "word " * 300])
    assert result.exit_code == 2
    assert "context holds 256 tokens" in result.output and "Traceback" not in result.output


def test_compress_searches_the_decoder_exports_scored_by_bleu_and_timed_per_token(lora_run):
    # execute: the search over two of the export pairs a decoder offers
    result = CliRunner().invoke(main, ["compress", str(lora_run), "--target", "host", "--trials", "4",
                                       "--set", "export.targets=[onnx-int8,onnx-int4]", "--set", "bench.final_rounds=1"])
    # assert: every candidate scored by BLEU in its own runtime and timed per decoded token; the front tested once
    assert result.exit_code == 0, result.output
    folder = lora_run / "compress" / "host"
    report = json.loads((folder / "candidates.json").read_text())
    summary, candidates = report["summary"], report["candidates"]
    assert summary["metric"] == "bleu" and summary["latency_unit"] == "ms per decoded token"
    assert {c["precision"] for c in candidates} == {"int8", "int4"}
    assert all(0 <= c["validation"]["bleu"] <= 100 and c["latency"]["p50_ms"] > 0 for c in candidates)
    assert all(c["test"] is not None for c in candidates if c["pareto"])
    assert summary["reference"]["test"] is not None and "point" in summary["reason"]
    report_md = (folder / "report.md").read_text()
    assert "ms per decoded token" in report_md and "What each pass bought" not in report_md  # no pass, no empty table
    # the chosen bundle generates through the CLI
    generated = CliRunner().invoke(main, ["generate", str(folder / "best"), "name[Aromi], food[French]",
                                          "--max-new-tokens", "8"])
    assert generated.exit_code == 0, generated.output


def test_compress_refuses_a_pair_a_decoder_does_not_export_and_a_device_it_cannot_time(lora_run):
    unoffered = CliRunner().invoke(main, ["compress", str(lora_run), "--set", "export.targets=[openvino-int8-weights]"])
    remote = CliRunner().invoke(main, ["compress", str(lora_run), "--target", "rpi4", "--trials", "1"])
    assert unoffered.exit_code == 2 and "do not export to openvino-int8-weights" in unoffered.output
    assert remote.exit_code == 2 and "use --target host" in remote.output
    assert "Traceback" not in unoffered.output + remote.output


def test_lora_branches_on_the_recovered_base_reproduce_the_merged_model(lora_run, tmp_path):
    # The int4-lora graph without its quantization: the builder's graph of the base recovered from merged/, plus the
    # adapter's updates beside its projections, must compute the merged model's logits.
    pytest.importorskip("onnxruntime_genai")
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from edgeft.decoders import load_decoder
    from edgeft.export import lora_branches
    from edgeft.export.decoder import build_genai_fp32

    # setup
    updates = lora_branches.read_adapter(lora_run / "adapter")
    base = lora_branches.write_base(lora_run / "merged", updates, tmp_path / "base")
    graph = lora_branches.add_branches(onnx.load(str(build_genai_fp32(base, tmp_path / "genai"))), updates)
    onnx.save_model(graph, str(tmp_path / "branched.onnx"))
    merged = load_decoder(lora_run / "merged")
    ids = np.array([[5, 17, 42, 9, 33, 7]], dtype=np.int64)
    # execute
    session = ort.InferenceSession(str(tmp_path / "branched.onnx"), providers=["CPUExecutionProvider"])
    config = merged.config
    past = {item.name: np.zeros((1, config.num_key_value_heads, 0, config.hidden_size // config.num_attention_heads),
                                dtype=np.float32) for item in session.get_inputs() if item.name.startswith("past_")}
    logits = session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids), **past})[0]
    with torch.no_grad():
        expected = merged(input_ids=torch.from_numpy(ids)).logits.numpy()
        base_logits = load_decoder(base)(input_ids=torch.from_numpy(ids)).logits.numpy()
    # assert: 2 layers x (fused qkv, o, gate, up, down) carry an update; with it the graph is the merged model
    assert sum(item.name.endswith("_lora_down") for item in graph.graph.initializer) == 10
    assert np.abs(logits - expected).max() < 1e-3
    assert np.abs(base_logits - expected).max() > 1e-2  # the updates matter: the base alone is another model


def test_int4_lora_bundle_is_exported_and_verified(lora_run):
    pytest.importorskip("onnxruntime_genai")
    result = CliRunner().invoke(main, ["export", str(lora_run), "--format", "onnx", "--precision", "int4-lora",
                                       "--samples", "8", "--min-agreement", "0.3"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((lora_run / "bundles" / "onnx-int4-lora" / "manifest.json").read_text())
    assert manifest["precision"] == "int4-lora" and manifest["verification"]["passed"]


def _saved_checkpoints(model, folder: Path, steps: list[int]) -> list[dict]:
    """Checkpoints as the Trainer leaves them (weights, then trainer_state.json), each with other random weights;
    the merged weights of each, in step order."""
    import copy

    import torch

    merged = []
    for step in steps:
        torch.manual_seed(step)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_" in name or not hasattr(model, "peft_config"):
                    parameter.add_(torch.randn_like(parameter) * 0.05)
        checkpoint = folder / "checkpoints" / f"checkpoint-{step}"
        model.save_pretrained(checkpoint)
        (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        copied = copy.deepcopy(model)
        merged.append((copied.merge_and_unload() if hasattr(copied, "peft_config") else copied).state_dict())
    return merged


@pytest.mark.parametrize("kind", ["lora", "full"])
def test_averaged_checkpoints_are_the_mean_of_the_last_ones_merged(tmp_path, kind):
    # setup
    import torch

    from edgeft.decoders import load_decoder
    from edgeft.methods import apply_method
    from edgeft.recipe import MethodSpec
    from edgeft.training import average_last_checkpoints

    model = apply_method(load_decoder(TINY_LLAMA), MethodSpec(kind=kind, r=4, alpha=8, dropout=0.0))
    merged = _saved_checkpoints(model, tmp_path, [5, 10, 15])
    (tmp_path / "checkpoints" / "checkpoint-20").mkdir()  # killed before its trainer_state.json: not complete
    # execute
    names = average_last_checkpoints(model, tmp_path, 2)
    # assert: the last two complete checkpoints, averaged exactly; a LoRA stays one adapter of twice the rank
    assert names == ["checkpoint-10", "checkpoint-15"]
    if kind == "lora":
        assert list(model.peft_config) == ["default"] and model.peft_config["default"].r == 8
        model = model.merge_and_unload()
    averaged = model.state_dict()
    for key, value in averaged.items():
        torch.testing.assert_close(value, (merged[1][key] + merged[2][key]) / 2, atol=1e-5, rtol=1e-5)
    assert not torch.equal(averaged["model.layers.0.self_attn.q_proj.weight"],
                           merged[2]["model.layers.0.self_attn.q_proj.weight"])


def test_averaging_more_checkpoints_than_saved_is_an_error(tmp_path):
    from edgeft.decoders import load_decoder
    from edgeft.errors import EdgeftError
    from edgeft.methods import apply_method
    from edgeft.recipe import MethodSpec
    from edgeft.training import average_last_checkpoints

    model = apply_method(load_decoder(TINY_LLAMA), MethodSpec(kind="lora", r=4))
    _saved_checkpoints(model, tmp_path, [5])
    with pytest.raises(EdgeftError, match="3 checkpoints asked for, the run saved 1"):
        average_last_checkpoints(model, tmp_path, 3)


def test_a_run_keeps_the_average_of_its_last_checkpoints(causal_recipe):
    # setup
    from edgeft.tune import tune

    causal_recipe["training"].update(average_checkpoints=3, early_stopping_patience=None, max_steps=10, eval_steps=3)
    # execute
    run = tune(validate_recipe(causal_recipe))
    # assert: the last three saves (the final step among them) were averaged, and the adapter holds all three
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train"]["averaged_checkpoints"] == ["checkpoint-6", "checkpoint-9", "checkpoint-10"]
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 24
    assert metrics["merge"]["max_abs_diff"] <= metrics["merge"]["tolerance"]


@pytest.mark.parametrize(("change", "message"), [
    ({"model": {"name": "tiny-bert"}}, "only a causal LM takes it"),
    ({"method": {"kind": "dora"}}, "not dora"),
])
def test_averaging_checkpoints_is_refused_where_it_is_not_exact(causal_recipe, change, message):
    from edgeft.errors import EdgeftError

    causal_recipe.update(change)
    causal_recipe["training"]["average_checkpoints"] = 2
    with pytest.raises(EdgeftError, match=f"training.average_checkpoints: .*{message}"):
        validate_recipe(causal_recipe)
