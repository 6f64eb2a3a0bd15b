"""The task registry and the compatibility of files made before tasks existed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from tiny_bundle import TEXTS, make_bundle

from edgeft.errors import EdgeftError
from edgeft.recipe import validate_recipe
from edgeft.runtime import load
from edgeft.runtime.tasks import RUNTIME_TASKS
from edgeft.tasks import TASKS, get_task


def test_every_task_has_its_device_half_and_the_contract():
    for name, task in TASKS.items():
        assert task.name == name and RUNTIME_TASKS[name] is task.runtime
        assert task.metric and task.passes and task.output_axes[0] == "batch"
        assert task.output_axes[-1] == ("vocab" if hasattr(task, "tune") else "labels")  # a generator: next-token logits


def test_unknown_task_is_named_in_the_error():
    with pytest.raises(EdgeftError, match="'ner' is not one of sequence-classification, token-classification"):
        get_task("ner")
    with pytest.raises(EdgeftError, match="model.task: must be one of"):
        validate_recipe({"name": "x", "model": {"task": "ner"}, "data": {"train": "t.csv"}})
    assert validate_recipe({"name": "x", "data": {"train": "t.csv"}}).model.task == "sequence-classification"


def test_bundle_and_model_folder_from_before_tasks_still_load(tmp_path):
    from edgeft.models import SequenceClassifier, load_classifier

    bundle = make_bundle(tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "sequence-classification"
    old = shutil.copytree(bundle, tmp_path / "old-bundle")
    del manifest["task"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    head = json.loads((tmp_path / "classifier" / "classifier.json").read_text())
    del head["task"]
    (tmp_path / "classifier" / "classifier.json").write_text(json.dumps(head))

    assert load(old).predict(TEXTS[:4]) == load(bundle).predict(TEXTS[:4])  # self-check passes too
    assert type(load_classifier(tmp_path / "classifier")) is SequenceClassifier


def test_runtime_imports_no_torch_for_a_token_bundle(tmp_path):

    from edgeft.export import export
    from edgeft.models import HeadConfig, TokenClassifier, load_encoder, load_tokenizer

    labels = ["O", "B-person", "I-person"]
    model = TokenClassifier(load_encoder("tiny-bert"), HeadConfig(labels=labels, task="token-classification"))
    model.save(tmp_path / "tagger", load_tokenizer("tiny-bert"))
    bundle = export(tmp_path / "tagger", "onnx", "fp32", tmp_path / "bundle", texts=TEXTS, progress=False)
    code = (
        "import sys, edgeft.runtime as r; p = r.load(sys.argv[1]); p.predict(['Bob lives in Paris']);"
        "heavy = {'torch', 'transformers', 'optimum', 'datasets'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code, str(bundle)], check=True)
