"""The real MiniLM exported to each format and checked on real BANKING77 test texts (skips without ../shared).

The classifier is the untuned MiniLM with a nearest-centroid head (label means of a few training sentences), so it
classifies BANKING77 well above chance without any training and its top-1 margins are those of a real model.
"""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgeft.export import export
from edgeft.runtime import load

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "banking77"
PER_LABEL = 3
N_VERIFY = 64

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (DATA / "test.csv").is_file(), reason=f"BANKING77 not found at {DATA} (../shared absent)"),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    import torch

    from edgeft.models import HeadConfig, SequenceClassifier, load_encoder, load_tokenizer, minilm_path, pool

    with open(DATA / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = sorted({row["category"] for row in rows})
    seeds = {label: [r["text"] for r in rows if r["category"] == label][:PER_LABEL] for label in labels}
    tokenizer = load_tokenizer(minilm_path())
    model = SequenceClassifier(load_encoder(minilm_path()), HeadConfig(labels=labels, max_length=64)).eval()
    with torch.inference_mode():
        batch = tokenizer([t for label in labels for t in seeds[label]], padding=True, return_tensors="pt")
        states = model.encoder(**batch).last_hidden_state
        vectors = torch.nn.functional.normalize(pool(states, batch["attention_mask"], "mean"), dim=-1)
        centroids = torch.nn.functional.normalize(vectors.view(len(labels), PER_LABEL, -1).mean(1), dim=-1)
        model.head.weight.copy_(centroids)
        model.head.bias.zero_()
    run = tmp_path_factory.mktemp("minilm-run")
    model.save(run / "merged", tokenizer)
    recipe = {"name": "minilm-centroids", "data": {"train": str(DATA / "train.csv"), "test": str(DATA / "test.csv"),
                                                   "label_column": "category", "max_length": 64}}
    (run / "recipe.lock.yaml").write_text(yaml.safe_dump({"recipe": recipe}))
    return run


@pytest.mark.parametrize("fmt,precision", [("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("tflite", "fp32")])
def test_minilm_bundle_matches_pytorch_on_banking77(run_dir, tmp_path, fmt, precision):
    # execute
    bundle = export(run_dir, fmt, precision, tmp_path / "bundle", n_verify=N_VERIFY, progress=False)

    # assert
    manifest = json.loads((bundle / "manifest.json").read_text())
    check = manifest["verification"]
    assert check["passed"] and check["n_inputs"] == N_VERIFY and check["inputs"].startswith(f"{N_VERIFY} test + 0 train")
    assert check["torch_accuracy"] > 0.5, "the centroid head classifies BANKING77 well above chance (1/77)"
    if precision == "fp32":
        assert check["top1_agreement"] == 1.0 and check["max_abs_diff"] < 1e-4
    else:
        # Logits are 20 x cosine: a 0.05 cosine error is 1.0 here.
        assert check["top1_agreement"] >= 0.9 and check["max_abs_diff"] < 2.0
    label, score = load(bundle).predict(["I still have not received my new card"])[0]
    assert label == "card_arrival" and score > 0.1
    assert np.isfinite(score)
