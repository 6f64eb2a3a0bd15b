"""Export of the tiny model to every format and precision, verified against PyTorch through the light runtime."""

import json
import subprocess
import sys

import numpy as np
import pytest
from tiny_bundle import LABELS, TEXTS, make_classifier

from edgeft.export import PRECISIONS, export
from edgeft.export.verify import torch_logits
from edgeft.models import load_classifier, load_tokenizer
from edgeft.runtime import load

CASES = [(fmt, precision) for fmt, precisions in PRECISIONS.items() for precision in precisions]
# The fast cases run first; OpenVINO calibration/compression and LiteRT quantization take 5-15 s each.
SLOW = {("openvino", "int8"), ("openvino", "int8-weights"), ("openvino", "int4"), ("openvino", "fp16"),
        ("tflite", "int8"), ("tflite", "int8-emb4")}


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return make_classifier(tmp_path_factory.mktemp("tiny") / "classifier")


@pytest.fixture(scope="module")
def exported(classifier, tmp_path_factory):
    """Export once per format and precision in this module (TFLite conversion is the slow step)."""
    cache = {}

    def get(fmt, precision):
        if (fmt, precision) not in cache:
            folder = tmp_path_factory.mktemp("bundles") / f"{fmt}-{precision}"
            cache[fmt, precision] = export(
                classifier, fmt, precision, folder, texts=TEXTS, progress=False, min_agreement=0.0
            )
        return cache[fmt, precision]

    return get


@pytest.fixture(scope="module")
def reference(classifier):
    model = load_classifier(classifier)
    return torch_logits(model, load_tokenizer(classifier), TEXTS, model.head_config.max_length)


@pytest.mark.parametrize(
    "fmt,precision", [pytest.param(*case, marks=pytest.mark.slow) if case in SLOW else case for case in CASES]
)
def test_export_verifies_against_pytorch(exported, reference, fmt, precision):
    # execute
    bundle = exported(fmt, precision)

    # assert: manifest contract
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert (manifest["format"], manifest["precision"], manifest["labels"]) == (fmt, precision, LABELS)
    assert set(manifest["files"]) >= {"tokenizer.json"} and all(e["bytes"] > 0 for e in manifest["files"].values())
    check = manifest["verification"]
    assert check["passed"] and check["n_inputs"] == len(TEXTS)
    assert manifest["self_check"]["texts"] and manifest["tokenizer"]["max_length"] == 32
    if precision == "fp32":
        assert check["top1_agreement"] == 1.0 and check["max_abs_diff"] < 1e-4
    # assert: the light runtime reproduces what was verified
    logits = load(bundle).logits(TEXTS)
    assert np.abs(logits - reference).max() <= max(check["max_abs_diff"] * 1.01, 1e-5)
    assert [path.name for path in bundle.parent.iterdir()] == [bundle.name], "the temp folder is cleaned up"


@pytest.mark.slow
def test_tflite_int8_emb4_stores_the_embedding_table_at_4_bits(classifier, exported):
    # setup
    table = load_classifier(classifier).encoder.get_input_embeddings().weight

    # execute
    int8, emb4 = (exported("tflite", precision) / "model.tflite" for precision in ("int8", "int8-emb4"))

    # assert: the file shrinks by half the int8 table (4 of 8 bits per value), give or take the per-row scales
    saved = int8.stat().st_size - emb4.stat().st_size
    assert saved >= 0.45 * table.numel(), (saved, table.numel())


def test_tflite_pads_to_the_smallest_bucket(exported):
    # setup
    predictor = load(exported("tflite", "fp32"))
    signatures = {b["signature"] for b in predictor.manifest["buckets"]}

    # execute
    one_short = predictor.encode(["balance"])
    nine = predictor.encode(TEXTS[:9])
    long_text = predictor.encode(["word " * 100])

    # assert
    assert signatures == {"b1_s16", "b1_s32", "b8_s32"}
    assert one_short["input_ids"].shape == (1, 16) and one_short["input_ids"].dtype == np.int32
    assert nine["input_ids"].shape == (16, 32)  # two batch-8 runs, filler rows dropped by predict
    assert long_text["input_ids"].shape == (1, 32)  # truncated to max_length, the largest bucket
    assert len(predictor.predict(TEXTS[:9])) == 9


def test_tflite_load_and_predict_keep_the_console_quiet(exported):
    # LiteRT's C++ side prints "INFO: Created TensorFlow Lite XNNPACK delegate" on every load unless held back
    code = "import sys; from edgeft.runtime import load; print(load(sys.argv[1]).predict(['balance'])[0][0])"
    result = subprocess.run([sys.executable, "-c", code, str(exported("tflite", "fp32"))], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() in LABELS
    assert result.stderr == ""
