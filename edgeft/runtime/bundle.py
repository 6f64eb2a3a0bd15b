"""Read and check a bundle folder: manifest schema, signature, file list, sha256 of every file, and the refusals.

A bundle is only ever read through `read_checked`: nothing in it is trusted before its manifest has passed the schema
(`manifest.py`), its signature has verified when trusted keys are configured (`signing.py`), and its file list has
been checked against the folder (regular files inside it, no symlinks, no extra files, every size and hash equal,
nothing pickle-based by content). Like pip's hash checking, any mismatch refuses the whole bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

from edgeft.errors import EdgeftError
from edgeft.runtime.manifest import MAX_MANIFEST_BYTES, validate_manifest
from edgeft.runtime.pickles import pickle_problem
from edgeft.runtime.signing import SIGNATURE, trusted_keys_from, verify_bundle
from edgeft.runtime.tasks import RUNTIME_TASKS

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
MODEL_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin"), "tflite": ("model.tflite",)}
HASH_CHUNK = 1 << 20
# Every refused bundle exits with this code, whatever was wrong with it: the bundle is bad input.
BUNDLE_EXIT_CODE = 2


class BundleError(EdgeftError):
    """A bundle that must not be loaded: malformed, tampered, incomplete, unsafe, or failing its self-check."""

    def __init__(self, problems: str | list[str], exit_code: int = BUNDLE_EXIT_CODE):
        super().__init__(problems, exit_code)


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large weights do not need their size in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(folder: Path, names: list[str]) -> dict[str, dict]:
    """The manifest's `files` entry for files in `folder`: name -> {sha256, bytes}."""
    return {name: {"sha256": sha256(folder / name), "bytes": (folder / name).stat().st_size} for name in names}


def read_checked(bundle: str | Path, trusted_keys=None) -> tuple[Path, dict]:
    """The bundle folder (resolved) and its validated manifest (defaults filled in), after every check passed.

    Args:
        bundle: the bundle folder.
        trusted_keys: Ed25519 public keys (files, PEM or key objects); None reads EDGEFT_TRUSTED_KEYS. With any
            configured, the manifest must carry a valid signature by one of them.

    Raises:
        BundleError: listing every problem found (exit code 2).
    """
    folder = Path(bundle).expanduser().resolve()
    if not folder.is_dir():
        raise BundleError(f"{bundle}: no such bundle folder")
    keys = trusted_keys_from(trusted_keys)
    manifest_bytes = _read_manifest_bytes(folder, bundle)
    try:
        raw = json.loads(manifest_bytes.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise BundleError(f"{bundle}: {MANIFEST}: not UTF-8 (byte {error.start})") from None
    except (ValueError, RecursionError) as error:
        reason = "nested too deeply" if isinstance(error, RecursionError) else str(error)
        raise BundleError(f"{bundle}: {MANIFEST}: not valid JSON: {reason}") from None
    manifest, problems = validate_manifest(raw)
    if manifest is None:
        raise BundleError([f"{bundle}: {MANIFEST}: {problem}" for problem in problems])
    if manifest.task not in RUNTIME_TASKS:
        raise BundleError(f"{bundle}: {MANIFEST}: task: {manifest.task!r} is not one of {', '.join(RUNTIME_TASKS)}; "
                          "a newer edgeft made this bundle")
    if keys and (problem := verify_bundle(folder, manifest_bytes, keys)):
        raise BundleError(f"{bundle}: {problem}")
    problems = _file_problems(folder, manifest.format, manifest.files)
    if problems:
        raise BundleError([f"{bundle}: {problem}" for problem in problems])
    checked = manifest.model_dump(mode="json")
    checked["signed"] = bool(keys)
    return folder, checked


def _read_manifest_bytes(folder: Path, bundle) -> bytes:
    path = folder / MANIFEST
    if not path.exists() and not path.is_symlink():
        raise BundleError(f"{bundle}: not a bundle (no {MANIFEST})")
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{bundle}: {MANIFEST} is not a regular file (symlinks are refused)")
    if info.st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{bundle}: {MANIFEST} is {info.st_size:,} bytes, over the {MAX_MANIFEST_BYTES:,} limit")
    return path.read_bytes()


def _file_problems(folder: Path, format: str, files: dict) -> list[str]:
    required = (*MODEL_FILES[format], TOKENIZER)
    problems = [f"{MANIFEST}: files: {name} is not listed" for name in required if name not in files]
    for name, entry in files.items():
        path = folder / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.resolve().is_relative_to(folder):
            problems.append(f"file name {name!r} escapes the bundle folder")
            continue
        try:
            info = path.lstat()
        except OSError:
            problems.append(f"{name}: listed in the manifest but missing")
            continue
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
            problems.append(f"{name}: not a regular file (symlinks are refused)")
        elif info.st_size != entry.bytes:
            problems.append(f"{name}: {info.st_size:,} bytes, the manifest says {entry.bytes:,} (truncated or modified)")
        elif sha256(path) != entry.sha256:
            problems.append(f"{name}: sha256 differs from the manifest (modified or corrupted)")
        elif problem := pickle_problem(path):
            problems.append(f"{name}: {problem}")
    problems += [f"{name}: not listed in the manifest (extra files are refused)" for name in _unlisted(folder, files)]
    return problems


def _unlisted(folder: Path, files: dict) -> list[str]:
    expected = {*files, MANIFEST, SIGNATURE}
    found = []
    for root, directories, names in os.walk(folder):
        for name in names + [d for d in directories if os.path.islink(os.path.join(root, d))]:
            relative = os.path.relpath(os.path.join(root, name), folder)
            if relative not in expected:
                found.append(relative)
    return sorted(found)
