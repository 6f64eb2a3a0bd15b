"""The device story end to end: a fresh venv with only `pip install ".[onnx]"` (no torch) loads a bundle, and the
wheel from `edgeft package`, and predicts exactly what the full PyTorch stack predicts."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "unit"))
from tiny_bundle import TEXTS, make_bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

DEVICE_SCRIPT = """
import importlib.util, json, sys
import edgeft.runtime, edgeft_bundle_tiny
assert importlib.util.find_spec("torch") is None, "torch must not be installed in the device venv"
texts = json.loads(sys.argv[2])
by_path = edgeft.runtime.load(sys.argv[1]).predict(texts, probabilities=True)
by_wheel = edgeft_bundle_tiny.load().predict(texts, probabilities=True)
heavy = {"torch", "transformers", "optimum", "datasets"} & set(sys.modules)
print(json.dumps({"path": [[l, p.tolist()] for l, _, p in by_path], "wheel": [[l, p.tolist()] for l, _, p in by_wheel],
                  "heavy": sorted(heavy)}))
"""


@pytest.mark.slow
def test_fresh_venv_without_torch_predicts_like_pytorch(tmp_path):
    # setup: a bundle, its wheel, and a venv that does not see this environment's packages
    from edgeft.export.verify import torch_logits
    from edgeft.models import load_classifier, load_tokenizer
    from edgeft.package import package
    from edgeft.runtime import softmax

    bundle = make_bundle(tmp_path)
    wheel = package(bundle, tmp_path / "dist", name="edgeft-bundle-tiny")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # system site packages stay off
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), f"{ROOT}[onnx]"], check=True, timeout=170)
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, timeout=60)

    # execute
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", DEVICE_SCRIPT, str(bundle), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the repo root: the installed edgeft must be the one imported
        timeout=60,
    )

    command_line = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "edgeft_bundle_tiny", TEXTS[0], "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )

    # assert
    assert result.returncode == 0, result.stderr
    assert command_line.returncode == 0, command_line.stderr
    device = json.loads(result.stdout)
    model = load_classifier(tmp_path / "classifier")
    expected = softmax(torch_logits(model, load_tokenizer(tmp_path / "classifier"), TEXTS, 32))
    labels = [model.head_config.labels[i] for i in expected.argmax(axis=1)]
    assert device["heavy"] == []
    assert json.loads(command_line.stdout)["label"] == labels[0]
    for run in ("path", "wheel"):
        assert [label for label, _ in device[run]] == labels
        np.testing.assert_allclose(np.array([p for _, p in device[run]]), expected, atol=1e-5)
