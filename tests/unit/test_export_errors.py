"""Export's argument checks, its refusal to write an unverified bundle, and exporting a run folder by its recipe."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from tiny_bundle import LABELS, TEXTS, make_classifier

import edgeft.export
from edgeft.cli import main
from edgeft.errors import EdgeftError
from edgeft.export import export


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return make_classifier(tmp_path_factory.mktemp("tiny") / "classifier")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as `edgeft tune` leaves it: merged/ and a recipe.lock.yaml whose data paths are absolute."""
    run = tmp_path_factory.mktemp("run")
    make_classifier(run / "merged")
    rows = ["text,intent"] + [f'"{text}",{LABELS[i % 3]}' for i, text in enumerate(TEXTS)]
    for split in ("train", "test"):
        (run / f"{split}.csv").write_text("\n".join(rows) + "\n")
    recipe = {"name": "tiny", "data": {"train": "elsewhere/train.csv", "test": "elsewhere/test.csv",
                                       "text_column": "text", "label_column": "intent", "max_length": 32}}
    files = {split: {"path": str(run / f"{split}.csv"), "sha256": "x"} for split in ("train", "test")}
    (run / "recipe.lock.yaml").write_text(yaml.safe_dump({"recipe": recipe, "data_files": files}))
    return run


@pytest.mark.parametrize(
    "args,message",
    [
        ({"format": "coreml"}, "--format: 'coreml' is not one of onnx, openvino, tflite"),
        ({"format": "tflite", "precision": "int4"}, "--precision: tflite offers fp32, int8, int8-emb4 (got 'int4')"),
        ({"min_agreement": 1.5}, "--min-agreement: must be between 0 and 1"),
    ],
)
def test_bad_arguments_name_the_option(classifier, args, message):
    with pytest.raises(EdgeftError, match=re.escape(message)) as caught:
        export(classifier, **{"format": "onnx", **args}, texts=TEXTS)
    assert caught.value.exit_code == 2


def test_refuses_to_overwrite_a_folder_that_is_not_a_bundle(classifier, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")

    with pytest.raises(EdgeftError, match="exists and is not a bundle"):
        export(classifier, "onnx", output=tmp_path, texts=TEXTS, progress=False)
    assert (tmp_path / "notes.txt").exists()


def test_a_failed_verification_writes_nothing(classifier, tmp_path, monkeypatch):
    # A reference that disagrees everywhere stands in for a broken conversion.
    real = edgeft.export.torch_logits
    monkeypatch.setattr(edgeft.export, "torch_logits", lambda *a, **k: -real(*a, **k))

    with pytest.raises(EdgeftError, match="failed verification against PyTorch") as caught:
        export(classifier, "onnx", output=tmp_path / "bundle", texts=TEXTS, progress=False)
    assert caught.value.exit_code == 1
    assert list(tmp_path.iterdir()) == []


def test_quantized_agreement_is_thresholded_by_the_flag(classifier, tmp_path):
    bundle = export(classifier, "onnx", "int8", tmp_path / "b", texts=TEXTS, progress=False, min_agreement=0.5)

    verification = json.loads((bundle / "manifest.json").read_text())["verification"]
    assert verification["tolerance"] == {"top1_agreement": 0.5} and verification["passed"]


def test_run_folder_exports_with_its_recipe_texts_and_replaces_the_old_bundle(run_dir):
    # execute: twice, the second replacing the first atomically
    first = export(run_dir, "onnx", progress=False, n_verify=20)
    second = export(run_dir, "onnx", progress=False, n_verify=20)

    # assert
    manifest = json.loads((second / "manifest.json").read_text())
    assert first == second == run_dir / "bundles" / "onnx-fp32"
    assert manifest["verification"]["n_inputs"] == 20 and manifest["verification"]["inputs"].startswith("20 test + 0 train")
    assert manifest["verification"]["accuracy"] == manifest["verification"]["torch_accuracy"]
    assert manifest["source"]["recipe_lock_sha256"] and manifest["source"]["run_dir"] == str(run_dir)
    assert [p.name for p in (run_dir / "bundles").iterdir()] == ["onnx-fp32"]


def test_cli_export_sends_third_party_output_to_the_run_log(run_dir, tmp_path):
    # ONNX Runtime's quantizer logs "Please consider to run pre-processing" on every int8 export
    result = subprocess.run([sys.executable, "-m", "edgeft", "export", str(run_dir), "--format", "onnx", "--precision",
                             "int8", "--output", str(tmp_path / "int8"), "--samples", "8"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    console = result.stdout + result.stderr
    assert "bundle: " in console and f"third-party output: {run_dir / 'export.log'}" in console
    assert "pre-processing" not in console and "pre-processing" in (run_dir / "export.log").read_text()


def test_cli_export_prints_the_bundle_and_errors_without_traceback(run_dir, tmp_path):
    ok = CliRunner().invoke(main, ["export", str(run_dir), "--format", "onnx", "--output", str(tmp_path / "b"),
                                   "--samples", "16"])
    bad = CliRunner().invoke(main, ["export", str(run_dir), "--format", "onnx", "--precision", "int3"])
    missing = CliRunner().invoke(main, ["export", str(tmp_path / "nothing"), "--format", "onnx"])

    assert ok.exit_code == 0 and "top-1 agreement 100.00%" in ok.output
    assert bad.exit_code == 2 and "error: --precision: onnx offers fp32, int8, int4 (got 'int3')" in bad.output
    assert missing.exit_code == 2 and "error: RUN_DIR:" in missing.output and "Traceback" not in missing.output


def test_evaluate_scores_a_bundle_in_its_runtime(run_dir):
    from edgeft.export import evaluate

    bundle = export(run_dir, "onnx", progress=False, n_verify=8)
    examples = [(text, LABELS[i % 3]) for i, text in enumerate(TEXTS)]

    scores = evaluate(bundle, examples)

    assert scores["n"] == len(TEXTS) and 0 <= scores["macro_f1"] <= 1
    predicted = [label for label, _ in edgeft.runtime.load(bundle).predict(TEXTS)]
    assert scores["accuracy"] == pytest.approx(np.mean([p == t for p, (_, t) in zip(predicted, examples)]))
