"""The light runtime: loading checks and refusals, self-check, tokenizer reproduction, predict, CLI entry points."""

import json
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_bundle import LABELS, TEXTS, make_bundle

from edgeft.cli import main
from edgeft.errors import EdgeftError
from edgeft.runtime import BundleError, load


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("runtime"))


@pytest.fixture
def copy(bundle, tmp_path):
    """A private copy to tamper with."""
    return shutil.copytree(bundle, tmp_path / "bundle")


def _edit_manifest(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_predict_returns_labels_scores_and_probabilities(bundle):
    predictor = load(bundle, threads=1)

    plain = predictor.predict(TEXTS[:3])
    full = predictor.predict(TEXTS[:3], probabilities=True)

    assert [label for label, _ in plain] == [label for label, _, _ in full]
    assert all(label in LABELS and 0 < score <= 1 for label, score in plain)
    assert all(np.isclose(probs.sum(), 1.0) and probs.shape == (3,) for _, _, probs in full)
    assert set(predictor.runtime_versions) >= {"numpy", "tokenizers", "onnxruntime"}


def test_batch_padding_does_not_change_results(bundle):
    predictor = load(bundle)

    batched = predictor.logits(TEXTS[:8], batch_size=8)
    one_by_one = np.concatenate([predictor.logits([text]) for text in TEXTS[:8]])

    assert predictor.encode(TEXTS[:2])["input_ids"].shape[1] == max(map(len, predictor._encoder.token_ids(TEXTS[:2])))
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_tokenizer_reproduces_transformers(bundle):
    from edgeft.models import load_tokenizer

    texts = [*TEXTS[:8], "word " * 200, "  MiXeD   CaSe\tand accents: café naïve  ", "emoji 🙂 and ${symbols}%"]
    expected = load_tokenizer("tiny-bert")(texts, truncation=True, max_length=32, padding=True, return_tensors="np")

    encoded = load(bundle).encode(texts)

    np.testing.assert_array_equal(encoded["input_ids"], expected["input_ids"])
    np.testing.assert_array_equal(encoded["attention_mask"], expected["attention_mask"])


def test_refuses_a_flipped_byte(copy):
    data = bytearray((copy / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))

    with pytest.raises(BundleError, match="model.onnx: sha256 differs") as caught:
        load(copy)
    assert caught.value.exit_code == 2


def test_refuses_a_missing_file(copy):
    (copy / "tokenizer.json").unlink()

    with pytest.raises(BundleError, match="tokenizer.json: listed in the manifest but missing"):
        load(copy)


def test_refuses_a_name_escaping_the_bundle(copy):
    (copy.parent / "outside.onnx").write_bytes(b"x")
    _edit_manifest(copy, lambda m: m["files"].update({"../outside.onnx": {"sha256": "0" * 64, "bytes": 1}}))

    with pytest.raises(BundleError, match="'../outside.onnx' escapes the bundle folder"):
        load(copy)


@pytest.mark.parametrize("name", ["weights.pkl", "head.pt"])
def test_refuses_files_the_manifest_does_not_list(copy, name):
    (copy / name).write_bytes(b"\x80\x04K\x01.")

    with pytest.raises(BundleError, match=f"{name}: not listed in the manifest"):
        load(copy)


def test_refuses_a_folder_without_manifest(tmp_path):
    with pytest.raises(BundleError, match="not a bundle"):
        load(tmp_path)


def test_self_check_refuses_a_runtime_that_disagrees(copy):
    # A wrong runtime build (e.g. returning zeros) shows up as logits far from the recorded ones.
    _edit_manifest(copy, lambda m: m["self_check"].update(expected_logits=[[0.0] * 3] * len(m["self_check"]["texts"])))

    with pytest.raises(BundleError, match="self-check failed"):
        load(copy)
    with pytest.warns(RuntimeWarning, match="self-check failed"):
        load(copy, self_check="warn")
    load(copy, self_check=False)


def test_runtime_imports_no_torch(bundle):
    code = (
        "import sys, edgeft.runtime as r; p = r.load(sys.argv[1]); p.predict(['hello']);"
        "heavy = {'torch', 'transformers', 'optimum', 'datasets'} & set(sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code, str(bundle)], check=True)


def test_cli_predict_and_module_entry_agree(bundle):
    result = CliRunner().invoke(main, ["predict", str(bundle), TEXTS[0], TEXTS[1], "--json", "--top-k", "2"])
    module = subprocess.run(
        [sys.executable, "-m", "edgeft.runtime", "predict", str(bundle), TEXTS[0], TEXTS[1], "--json", "--top-k", "2"],
        capture_output=True,
        text=True,
        check=True,
    )

    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["text"] for r in records] == TEXTS[:2] and all(len(r["top"]) == 2 for r in records)
    assert [json.loads(line) for line in module.stdout.splitlines()] == records


def test_cli_predict_reports_a_tampered_bundle(copy):
    (copy / "tokenizer.json").write_text("{}")

    result = CliRunner().invoke(main, ["predict", str(copy), "hello"])

    assert result.exit_code == 2
    assert "error:" in result.output and "tokenizer.json: " in result.output
    assert "Traceback" not in result.output


def test_package_builds_a_wheel_with_the_bundle(bundle, tmp_path):
    from edgeft.package import package

    wheel = package(bundle, tmp_path / "dist", name="edgeft-bundle-tiny")

    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith("edgeft_bundle_tiny-0.1.0-py3-none-any")
    assert {"edgeft_bundle_tiny/bundle/model.onnx", "edgeft_bundle_tiny/bundle/manifest.json"} <= set(names)
    metadata = next(n for n in names if n.endswith("METADATA"))
    assert "Requires-Dist: edgeft[onnx]" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_package_refuses_a_bad_name(bundle, tmp_path):
    from edgeft.package import package

    with pytest.raises(EdgeftError, match="--name"):
        package(bundle, tmp_path, name="bad name!")


def test_cli_predict_reads_texts_from_stdin(bundle):
    result = CliRunner().invoke(main, ["predict", str(bundle), "-"], input=f"{TEXTS[0]}\n\n{TEXTS[1]}\n")

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 2 and lines[1].endswith(TEXTS[1]) and lines[0].split("\t")[0] in LABELS
