"""Token classification (NER) end to end on a tiny random BERT: data, tune, export, runtime entities, metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, write_recipe
from ner_data import ner_recipe, sentences

from edgeft.cli import main
from edgeft.errors import EdgeftError
from edgeft.export import evaluate, export
from edgeft.metrics import entity_metrics
from edgeft.recipe import validate_recipe
from edgeft.runtime import load
from edgeft.tasks import get_task

TASK = get_task("token-classification")
# Sub-words (Zuckerberg -> zu ##cker ##berg), punctuation, [UNK] (the emoji), accents, several entities per text.
TRICKY = [
    "Zuckerberg flew to Kathmandu , then Paris 🙂 with Alice Smith",
    "nothing to see here",
    "Acme Corp opened a café in New York!!",
    "we met Dmitri at the Nvidia office in Berlin",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from edgeft.tune import tune

    folder = tmp_path_factory.mktemp("ner")
    return tune(validate_recipe(ner_recipe(folder)))


@pytest.fixture(scope="module")
def bundle(run):
    return export(run, "onnx", "fp32", progress=False)


@pytest.fixture(scope="module")
def test_examples(run):
    splits = TASK.load_splits(validate_recipe(ner_recipe(run.parent)).data, seed=42)
    return TASK.examples(splits.test, splits.labels)


def test_tune_writes_entity_metrics_and_a_per_type_table(run):
    metrics = json.loads((run / "metrics.json").read_text())

    assert metrics["task"] == "token-classification"
    assert metrics["labels"] == ["O", "B-corporation", "I-corporation", "B-location", "I-location", "B-person",
                                 "I-person"]
    test = metrics["test"]
    assert set(test["per_type"]) == {"corporation", "location", "person"}
    assert test["sentences"] == 30 and test["entities"] == sum(
        tag.startswith("B-") for sentence in sentences(30, seed=2) for _, tag in sentence)
    assert test["f1"] > 0.5, "distinct entity words are learnt in a few dozen steps"
    card = (run / "README.md").read_text()
    assert "| person |" in card and "entity F1" in card and not (run / "confusion.png").exists()
    assert json.loads((run / "merged" / "classifier.json").read_text())["task"] == "token-classification"


def test_runtime_scores_equal_pytorch_scores(run, bundle, test_examples):
    # The runtime tags words by their first sub-word as the PyTorch evaluation does: the same F1 to the last digit.
    metrics = json.loads((run / "metrics.json").read_text())["test"]

    scored = evaluate(bundle, test_examples)

    assert scored["n"] == 30
    assert scored["f1"] == pytest.approx(metrics["f1"], abs=1e-12)
    assert scored["token_accuracy"] == pytest.approx(metrics["token_accuracy"], abs=1e-12)


@pytest.mark.parametrize("fmt,precision", [("onnx", "int8"), ("openvino", "fp32"), ("tflite", "fp32")])
def test_every_format_exports_a_verified_token_bundle(run, fmt, precision, tmp_path):
    bundle = export(run, fmt, precision, tmp_path / f"{fmt}-{precision}", progress=False, min_agreement=0.9)

    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "token-classification"
    check = manifest["verification"]
    # One verification row per real token: far more rows than the texts they came from.
    assert check["passed"] and check["n_inputs"] > 3 * 30
    if "shape" in manifest["outputs"][0]:
        assert manifest["outputs"][0]["shape"] == ["batch", "sequence", "labels"]
    predictor = load(bundle)  # runs the self-check on its token rows
    assert predictor.predict(TRICKY[:1])[0], "Zuckerberg, Kathmandu, Paris and Alice Smith are entities"


@pytest.mark.parametrize("aggregation", ["first", "max", "average"])
def test_entities_equal_transformers_pipeline(run, bundle, test_examples, aggregation):
    from transformers import TokenClassificationPipeline

    texts = TRICKY + [TASK.example_text(example) for example in test_examples]
    if (SHARED_DATA / "wnut17" / "emerging.test.annotated").exists():  # real tweets: emoji, URLs, long texts
        wnut = validate_recipe({"name": "w", "model": {"task": "token-classification"},
                                "data": {"train": str(SHARED_DATA / "wnut17" / "emerging.test.annotated")}})
        splits = TASK.load_splits(wnut.data, seed=0)
        texts += [" ".join(words) for words in splits.train["tokens"][:300]]
    model, tokenizer = _hf_token_classifier(run / "merged")
    pipeline = TokenClassificationPipeline(model=model, tokenizer=tokenizer, aggregation_strategy=aggregation)

    expected = pipeline(texts)
    got = load(bundle).predict(texts, aggregation=aggregation)

    assert sum(map(len, got)) > len(texts) // 2, "the comparison covers many entities"
    for text, want, have in zip(texts, expected, got):
        assert [(e["entity_group"], e["start"], e["end"]) for e in want] == [
            (e["type"], e["start"], e["end"]) for e in have], text
        np.testing.assert_allclose([e["score"] for e in have], [e["score"] for e in want], atol=1e-4)
        assert all(e["text"] == text[e["start"]:e["end"]] for e in have)


def _hf_token_classifier(merged):
    """transformers' own BertForTokenClassification holding the merged weights, and its tokenizer."""
    from transformers import BertForTokenClassification

    from edgeft.models import load_classifier, load_tokenizer

    ours = load_classifier(merged)
    labels = ours.head_config.labels
    config = ours.encoder.config
    config.num_labels = len(labels)
    config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    model = BertForTokenClassification(config).eval()
    model.bert.load_state_dict(ours.encoder.state_dict())
    model.classifier.load_state_dict(ours.head.state_dict())
    tokenizer = load_tokenizer(merged)
    tokenizer.model_max_length = ours.head_config.max_length  # truncate as the bundle does
    return model, tokenizer


def test_predict_words_tags_every_word(bundle, test_examples):
    predictor = load(bundle)
    words = [["Zuckerberg", "lives", "in", "Kathmandu"], ["x"] * 100]  # the second is cut off at max_length

    tags = predictor.task.predict_words(predictor, words)

    assert [len(row) for row in tags] == [4, 100]
    assert tags[1][40:] == ["O"] * 60
    assert set(tag for row in tags for tag in row) <= set(predictor.labels)


def test_cli_predict_prints_entities(bundle):
    result = CliRunner().invoke(main, ["predict", str(bundle), TRICKY[0], "--json"])

    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert record["text"] == TRICKY[0]
    assert all(TRICKY[0][e["start"]:e["end"]] == e["text"] and 0 < e["score"] <= 1 for e in record["entities"])


def test_entity_metrics_on_a_hand_made_example():
    # gold: Paris (loc), New York (loc), Bob (per); predicted: Paris right, "New" only (wrong span), Bob as org.
    gold = [["B-location", "O", "B-location", "I-location"], ["B-person", "O"]]
    pred = [["B-location", "O", "B-location", "O"], ["B-group", "O"]]

    metrics = entity_metrics(gold, pred)

    # 1 of 3 predicted entities is right, 1 of 3 gold entities is found.
    assert metrics["precision"] == pytest.approx(1 / 3) and metrics["recall"] == pytest.approx(1 / 3)
    assert metrics["f1"] == pytest.approx(1 / 3)
    assert metrics["token_accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_type"]["location"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert metrics["per_type"]["person"]["recall"] == 0.0 and metrics["entities"] == 3


def test_token_distill_loss_ignores_unlabelled_positions():
    import torch

    torch.manual_seed(0)
    student, teacher = torch.randn(2, 5, 7), torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 3, -100, 0, -100], [-100, 1, 2, -100, -100]])
    changed = student.clone()
    changed[labels == -100] = 100.0  # garbage where nothing is labelled

    loss = TASK.distill_loss(student, teacher, labels, 2.0, 0.7)

    assert torch.equal(loss, TASK.distill_loss(changed, teacher, labels, 2.0, 0.7))
    keep = labels != -100
    rows = get_task("sequence-classification").distill_loss(student[keep], teacher[keep], labels[keep], 2.0, 0.7)
    assert torch.equal(loss, rows) and loss > 0


@pytest.mark.parametrize("content,problem", [
    ("Paris\tB-location\nis\tQ\n", "line 2: tag 'Q' is not O, B-<type> or I-<type>"),
    ("Paris\tB-location\nlonely-token\n", "line 2: expected token<TAB>tag (got 'lonely-token')"),
    ("Paris\tB-location\n\n\nBob\tB-PER\tI-person\nis\tB\n", "line 5: tag 'B' is not O, B-<type> or I-<type>"),
])
def test_conll_errors_name_file_and_line(tmp_path, content, problem):
    path = tmp_path / "bad.conll"
    path.write_text(content)
    recipe = validate_recipe({"name": "x", "model": {"task": "token-classification"}, "data": {"train": str(path)}})

    with pytest.raises(EdgeftError) as caught:
        TASK.load_splits(recipe.data, 0)

    assert caught.value.problems == [f"{path}: {problem}"]


def test_conll_reads_the_last_column_as_the_tag(tmp_path):
    # CoNLL-2003 style: token POS chunk tag, space separated, with -DOCSTART- lines.
    path = tmp_path / "train.txt"
    path.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    recipe = validate_recipe({"name": "x", "model": {"task": "token-classification"},
                              "data": {"train": str(path), "validation": 0.4}})

    splits = TASK.load_splits(recipe.data, 0)

    assert splits.labels == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    rows = sorted(TASK.examples(splits.train, splits.labels) + TASK.examples(splits.validation, splits.labels))
    assert rows == [(["EU", "rejects"], ["B-ORG", "O"]), (["Peter"], ["B-PER"])]


def test_jsonl_reader_and_its_errors(tmp_path):
    good = tmp_path / "train.jsonl"
    good.write_text("\n".join(json.dumps({"tokens": w, "tags": t}) for w, t in [
        (["Bob", "is", "here"], ["B-person", "O", "O"]), (["in", "Paris"], ["O", "B-location"])] * 5))
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"tokens": ["a", "b"], "tags": ["O"]}\nnot json\n{"tokens": ["a"], "tags": ["X-y"]}\n')
    recipe = validate_recipe({"name": "x", "model": {"task": "token-classification"},
                              "data": {"train": str(good), "test": str(bad), "validation": 0.2}})

    with pytest.raises(EdgeftError) as caught:
        TASK.load_splits(recipe.data, 0)

    assert caught.value.problems[0] == f"{bad}: line 1: 2 tokens but 1 tags"
    assert caught.value.problems[1].startswith(f"{bad}: line 2: not valid JSON")
    assert caught.value.problems[2] == f"{bad}: line 3: tag 'X-y' is not O, B-<type> or I-<type>"
    bad.write_text('{"tokens": ["in", "Rome"], "tags": ["O", "B-city"]}\n')
    with pytest.raises(EdgeftError, match="data.test: entity types not in train: city"):
        TASK.load_splits(recipe.data, 0)


def test_cli_tune_reports_a_bad_conll_line_and_exits_2(tmp_path):
    recipe = ner_recipe(tmp_path)
    (tmp_path / "train.conll").write_text("Paris\tB-location\nhere\tB_location\n")

    result = CliRunner().invoke(main, ["tune", str(write_recipe(recipe, tmp_path / "r.yaml"))])

    assert result.exit_code == 2
    assert f"error: {tmp_path / 'train.conll'}: line 2: tag 'B_location'" in result.output
    assert "Traceback" not in result.output


def test_teacher_targets_per_example_ride_along_padded(run):
    # Distillation stores each example's teacher rows beside it; the collator pads them like the labels.
    from edgeft.models import load_classifier, load_tokenizer
    from edgeft.training import model_logits

    model, tokenizer = load_classifier(run / "merged"), load_tokenizer(run / "merged")
    split = TASK.tokenize(TASK.load_splits(validate_recipe(ner_recipe(run.parent)).data, 42).test, tokenizer, 32)

    targets = model_logits(model, split, tokenizer, per_example=True)
    batch = TASK.collator(tokenizer)([{**split[i], "teacher_logits": targets[i].tolist()} for i in range(4)])

    assert [len(t) for t in targets] == [len(ids) for ids in split["input_ids"]]
    np.testing.assert_allclose(np.concatenate(targets), model_logits(model, split, tokenizer), atol=1e-6)
    assert batch["teacher_logits"].shape == (*batch["input_ids"].shape, len(model.head_config.labels))
    for row in range(4):
        length = len(targets[row])
        np.testing.assert_allclose(batch["teacher_logits"][row, :length].numpy(), targets[row], atol=1e-6)
        assert not batch["teacher_logits"][row, length:].any()


def test_compress_searches_pruned_and_distilled_taggers(run, tmp_path):
    # A two-trial search on a copy of the tiny tagger whose only choice is a pruned and distilled student.
    import shutil

    copy = shutil.copytree(run, tmp_path / "run")
    flags = ["--trials", "2", "--set", "export.targets=[onnx-int8]", "--set", "prune.heads=[0.5]",
             "--set", "prune.ffn=[0.5]", "--set", "prune.layers=[1]", "--set", "distill.epochs=[1]",
             "--set", "distill.settings.max_steps=3", "--set", "search.halving_rate=1", "--runs", "3",
             "--set", "bench.warmup=1", "--set", "bench.texts=4", "--set", "bench.final_rounds=1",
             "--time-budget", "15m"]

    result = CliRunner().invoke(main, ["compress", str(copy), "--target", "host", *flags])

    assert result.exit_code == 0, result.output
    folder = copy / "compress" / "host"
    summary, candidates = json.loads((folder / "candidates.json").read_text()).values()
    assert summary["metric"] == "f1" and (folder / "best" / "manifest.json").is_file()
    chains = [candidate["chain"] for candidate in candidates]
    assert not any("vocab" in step for chain in chains for step in chain), "not exact for taggers: never tried"
    student = next(c for c in candidates if any(step.startswith("distill") for step in c["chain"]))
    assert student["chain"][0].startswith("prune(") and student["validation"]["n"] == 20
    # Each candidate's quality is its bundle's, run in its own runtime.
    splits = TASK.load_splits(validate_recipe(ner_recipe(run.parent)).data, 42)
    scored = evaluate(student["bundle"], TASK.examples(splits.validation, splits.labels))
    assert scored["f1"] == pytest.approx(student["validation"]["f1"], abs=1e-12)
    assert json.loads((folder / "best" / "manifest.json").read_text())["task"] == "token-classification"
