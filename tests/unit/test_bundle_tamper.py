"""Counted proof: every kind of broken or tampered bundle is refused with a clear BundleError (exit 2).

Each kind starts from a fresh copy of a signed tiny bundle. With a trusted key configured all of them must be
refused; without one, all but the kinds only a signature can reveal (swapped labels, a deleted self-check, a missing
or foreign signature) must still be refused by the schema, file and model checks.
"""

import json
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_bundle import LABELS, TEXTS, make_bundle

from edgeft.cli import main
from edgeft.runtime import BundleError, load
from edgeft.runtime.bundle import sha256
from edgeft.runtime.signing import SIGNATURE, keygen, sign_bundle

# Kinds a signature alone detects: without trusted keys they load (that is why signatures exist).
SIGNATURE_ONLY = {"labels_swapped", "self_check_deleted", "unsigned", "signed_by_another_key", "garbage_signature"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return keygen(folder / "release"), keygen(folder / "attacker")


@pytest.fixture(scope="module")
def signed(tmp_path_factory, keys):
    bundle = make_bundle(tmp_path_factory.mktemp("tamper"))
    sign_bundle(bundle, keys[0][0])
    return bundle


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _edit(folder, change):
    manifest = _manifest(folder)
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _rehash(folder, name):
    """What an attacker who edits a file does next: fix its hash and size in the manifest."""
    _edit(folder, lambda m: m["files"].update({name: {"sha256": sha256(folder / name),
                                                      "bytes": (folder / name).stat().st_size}}))


def _add_listed(folder, name, data):
    (folder / name).write_bytes(data)
    _rehash(folder, name)


def _torch_zip(folder, name):
    with zipfile.ZipFile(folder / name, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(os.system, protocol=2))
    _rehash(folder, name)


def _bias_plus_two(folder):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(folder / "model.onnx"))
    bias = next(t for t in model.graph.initializer if t.name.endswith("head.bias"))
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32([2, 0, 0]), bias.name))
    onnx.save(model, str(folder / "model.onnx"))
    _rehash(folder, "model.onnx")


def _truncate(folder, name, rehash):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: len(data) // 2])
    if rehash:
        _rehash(folder, name)


def _symlink(folder, target):
    (folder / "tokenizer.json").unlink()
    (folder / "tokenizer.json").symlink_to(target)


def _flip(folder):
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "model.onnx").write_bytes(bytes(data))


def _deep(folder):
    (folder / "manifest.json").write_text("[" * 200_000 + "]" * 200_000)


def _copy_outside(folder):
    outside = folder.parent / f"{folder.name}-outside.json"
    shutil.copy(folder / "tokenizer.json", outside)
    return outside


def _copy_inside(folder):
    shutil.copy(folder / "tokenizer.json", folder / ".tokenizer-real.json")
    return folder / ".tokenizer-real.json"


KINDS = {
    # name: (tamper, expected words without trusted keys)
    "flipped_byte": (_flip, "sha256 differs"),
    "truncated_model": (lambda f: _truncate(f, "model.onnx", False), "truncated or modified"),
    "truncated_model_rehashed": (lambda f: _truncate(f, "model.onnx", True), "runtime cannot load it"),
    "corrupt_tokenizer_rehashed": (lambda f: _add_listed(f, "tokenizer.json", b'{"version": '), "tokenizer.json"),
    "missing_tokenizer_file": (lambda f: (f / "tokenizer.json").unlink(), "missing"),
    "extra_file": (lambda f: (f / "notes.txt").write_text("hi"), "not listed in the manifest"),
    "pickle_named_pytorch_model_bin": (
        lambda f: _add_listed(f, "pytorch_model.bin", pickle.dumps(os.system, protocol=4)), "pickle data"),
    "pickle_without_suffix": (lambda f: _add_listed(f, "weights", pickle.dumps(os.system, protocol=0)), "pickle"),
    "torch_zip_pickle": (lambda f: _torch_zip(f, "model_weights.pt"), "zip archive holding pickle"),
    "symlink_inside": (lambda f: _symlink(f, _copy_inside(f)), "symlinks are refused"),
    "symlink_outside": (lambda f: _symlink(f, _copy_outside(f)), "'tokenizer.json' escapes the bundle folder"),
    "name_escaping": (lambda f: _edit(f, lambda m: m["files"].update(
        {"../x.onnx": {"sha256": "0" * 64, "bytes": 1}})), "escapes the bundle folder"),
    "absolute_name": (lambda f: _edit(f, lambda m: m["files"].update(
        {"/etc/hostname": {"sha256": "0" * 64, "bytes": 1}})), "escapes the bundle folder"),
    "nul_in_name": (lambda f: _edit(f, lambda m: m["files"].update(
        {"model\x00.onnx": {"sha256": "0" * 64, "bytes": 1}})), "files.model"),
    "missing_tokenizer_key": (lambda f: _edit(f, lambda m: m.pop("tokenizer")), "tokenizer: required field"),
    "missing_inputs_key": (lambda f: _edit(f, lambda m: m.pop("inputs")), "inputs: required field"),
    "list_for_string": (lambda f: _edit(f, lambda m: m.update(format=["onnx"])), "format:"),
    "json_nested_200000_deep": (_deep, "nested too deeply"),
    "max_length_not_int": (lambda f: _edit(f, lambda m: m["tokenizer"].update(max_length="64")),
                           "tokenizer.max_length"),
    "unknown_input_dtype": (lambda f: _edit(f, lambda m: m["inputs"][0].update(dtype="int128")), "inputs.0.dtype"),
    "malformed_self_check": (lambda f: _edit(f, lambda m: m["self_check"].update(
        expected_logits=[[1.0]] + m["self_check"]["expected_logits"][1:])), "self_check"),
    "self_check_nan": (lambda f: (f / "manifest.json").write_text(
        (f / "manifest.json").read_text().replace('"tolerance": 0.001', '"tolerance": NaN', 1)), "self_check"),
    "bias_plus_two_rehashed": (_bias_plus_two, "self-check failed"),
    "five_labels_for_three_outputs": (lambda f: _edit(f, lambda m: m.update(labels=list("abcde"))),
                                      "5 labels, but the model outputs 3"),
    "twenty_labels": (lambda f: _edit(f, lambda m: m.update(labels=[f"l{i}" for i in range(20)])), "20 labels"),
    "labels_a_string": (lambda f: _edit(f, lambda m: m.update(labels="balance")), "labels"),
    "duplicate_labels": (lambda f: _edit(f, lambda m: m.update(labels=["a", "a", "b"])), "duplicate"),
    "newer_schema_version": (lambda f: _edit(f, lambda m: m.update(schema_version=2)), "newer than this runtime"),
    "unknown_format": (lambda f: _edit(f, lambda m: m.update(format="coreml")), "format"),
    "unknown_scalar_field": (lambda f: _edit(f, lambda m: m.update(trust_me=True)), "unknown field"),
    "manifest_not_a_mapping": (lambda f: (f / "manifest.json").write_text("[1, 2]"), "not a mapping"),
    "manifest_not_utf8": (lambda f: (f / "manifest.json").write_bytes(b'{"format": "\xff"}'), "not UTF-8"),
    "manifest_oversized": (lambda f: (f / "manifest.json").write_text(" " * (9 << 20) + "{}"), "over the"),
    "manifest_symlink": (lambda f: _symlink_manifest(f), "not a regular file"),
    "labels_swapped": (lambda f: _edit(f, lambda m: m.update(labels=m["labels"][::-1])), None),
    "self_check_deleted": (lambda f: _edit(f, lambda m: m.pop("self_check")), None),
    "unsigned": (lambda f: (f / SIGNATURE).unlink(), None),
    "signed_by_another_key": (None, None),  # filled in by the test: needs the attacker's key
    "garbage_signature": (lambda f: (f / SIGNATURE).write_text('{"algorithm": "ed25519", "signature": "@@"}'), None),
}


def _symlink_manifest(folder):
    shutil.move(folder / "manifest.json", folder.parent / f"{folder.name}-manifest.json")
    (folder / "manifest.json").symlink_to(folder.parent / f"{folder.name}-manifest.json")


def _tampered(signed, tmp_path, name, keys):
    folder = shutil.copytree(signed, tmp_path / name, symlinks=True)
    tamper, _ = KINDS[name]
    if name == "signed_by_another_key":
        sign_bundle(folder, keys[1][0])
    else:
        tamper(folder)
    return folder


def test_every_tamper_kind_is_refused(signed, keys, tmp_path, capsys):
    # setup
    trusted = [keys[0][1]]
    assert load(signed, trusted_keys=trusted).predict(TEXTS[:2])  # the untouched bundle loads
    refused, refused_unkeyed, wrong = 0, 0, []

    # execute
    for name, (_, words) in KINDS.items():
        folder = _tampered(signed, tmp_path, name, keys)
        try:
            load(folder, trusted_keys=trusted)
            wrong.append(f"{name}: loaded with a trusted key")
        except BundleError as error:
            refused += error.exit_code == 2
        try:
            load(folder, trusted_keys=[])
            if name not in SIGNATURE_ONLY:
                wrong.append(f"{name}: loaded without keys")
        except BundleError as error:
            refused_unkeyed += 1
            if words and words not in str(error):
                wrong.append(f"{name}: message {str(error)[:300]!r} lacks {words!r}")

    # assert
    with capsys.disabled():
        print(f"\nbundle tamper kinds: tried {len(KINDS)}, refused with a trusted key {refused}, "
              f"refused without keys {refused_unkeyed} (signature-only kinds: {len(SIGNATURE_ONLY)})")
    assert not wrong, wrong
    assert len(KINDS) >= 20 and refused == len(KINDS)
    assert refused_unkeyed == len(KINDS) - len(SIGNATURE_ONLY)


def test_trusted_keys_from_the_environment(signed, keys, tmp_path, monkeypatch):
    folder = _tampered(signed, tmp_path, "labels_swapped", keys)
    monkeypatch.setenv("EDGEFT_TRUSTED_KEYS", str(keys[0][1].parent))  # a folder of *.pub: both keys trusted

    load(signed)
    with pytest.raises(BundleError, match="does not verify with any trusted key"):
        load(folder)


def test_cli_reports_a_tampered_bundle_without_traceback(signed, keys, tmp_path, monkeypatch):
    folder = _tampered(signed, tmp_path, "json_nested_200000_deep", keys)

    result = CliRunner().invoke(main, ["predict", str(folder), "hello"])

    assert result.exit_code == 2 and "nested too deeply" in result.output and "Traceback" not in result.output


def test_self_check_says_which_side_failed(signed, keys, tmp_path):
    # A bundle whose references disagree with its model: signed (authentic), so the device runtime is to blame.
    folder = shutil.copytree(signed, tmp_path / "ref")
    _edit(folder, lambda m: m["self_check"].update(expected_logits=[[0.0] * 3] * len(m["self_check"]["texts"])))
    sign_bundle(folder, keys[0][0])

    with pytest.raises(BundleError, match="signature verified.*device runtime is broken"):
        load(folder, trusted_keys=[keys[0][1]])
    with pytest.raises(BundleError, match="not signature-checked.*modified after export or the device runtime"):
        load(folder, trusted_keys=[])


def test_export_and_package_sign(tmp_path, keys):
    from edgeft.package import package

    bundle = make_bundle(tmp_path)
    wheel = package(bundle, tmp_path / "dist", name="edgeft-bundle-signed", sign_key=keys[0][0])

    names = zipfile.ZipFile(wheel).namelist()
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "edgeft_bundle_signed/bundle/manifest.sig" in names and "edgeft[onnx,sign]" in metadata
    assert LABELS == load(bundle).labels


def test_keygen_and_export_sign_from_the_cli(tmp_path):
    runner = CliRunner()
    made = runner.invoke(main, ["keygen", str(tmp_path / "k")])
    again = runner.invoke(main, ["keygen", str(tmp_path / "k")])
    bad = runner.invoke(main, ["export", str(tmp_path), "--format", "onnx", "--sign", str(tmp_path / "k.pub")])

    assert made.exit_code == 0 and oct((tmp_path / "k.key").stat().st_mode & 0o777) == "0o600"
    assert again.exit_code == 2 and "already exists" in again.output
    assert bad.exit_code == 2 and "not a readable, unencrypted PEM private key" in bad.output
