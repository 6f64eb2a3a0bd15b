"""Read and check a bundle folder: manifest, file list, sha256 of every file, and the refusals.

A bundle is only ever read through `read_checked`: nothing in it is trusted before its manifest's file list has been
checked against the folder (names stay inside it, every file present, every hash equal, nothing pickle-based).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from edgeft.errors import EdgeftError

MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
MODEL_FILES = {"onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin"), "tflite": ("model.tflite",)}
# Formats that deserialize with pickle, i.e. run code on load; a bundle never needs one.
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".npy", ".npz")
HASH_CHUNK = 1 << 20


class BundleError(EdgeftError):
    """A bundle that must not be loaded: tampered, incomplete, unsafe, or failing its self-check."""


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


def read_checked(bundle: str | Path) -> tuple[Path, dict]:
    """The bundle folder (resolved) and its manifest, after every check passed.

    Raises:
        BundleError: listing every problem found (exit code 1: the bundle, not the command line, is wrong).
    """
    folder = Path(bundle).expanduser().resolve()
    manifest_path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"{bundle}: no such bundle folder")
    if not manifest_path.is_file():
        raise BundleError(f"{bundle}: not a bundle (no {MANIFEST})")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path}: not valid JSON: {error}") from None
    problems = _manifest_problems(manifest) or _file_problems(folder, manifest["files"])
    if problems:
        raise BundleError([f"{bundle}: {problem}" for problem in problems], exit_code=1)
    return folder, manifest


def _manifest_problems(manifest) -> list[str]:
    if not isinstance(manifest, dict):
        return ["manifest.json: not a mapping"]
    problems = [f"manifest.json: missing field {key!r}" for key in ("format", "files", "labels") if key not in manifest]
    if problems:
        return problems
    if manifest["format"] not in MODEL_FILES:
        return [f"manifest.json: format: {manifest['format']!r} is not one of {', '.join(MODEL_FILES)}"]
    files = manifest["files"]
    if not isinstance(files, dict):
        return ["manifest.json: files: not a mapping of name -> {sha256, bytes}"]
    required = (*MODEL_FILES[manifest["format"]], TOKENIZER)
    return [f"manifest.json: files: {name} is not listed" for name in required if name not in files]


def _file_problems(folder: Path, files: dict) -> list[str]:
    problems = []
    for name, entry in files.items():
        path = (folder / name).resolve()
        if Path(name).is_absolute() or not path.is_relative_to(folder):
            problems.append(f"file name {name!r} escapes the bundle folder")
        elif not path.is_file():
            problems.append(f"{name}: listed in the manifest but missing")
        elif not isinstance(entry, dict) or "sha256" not in entry:
            problems.append(f"{name}: no sha256 in the manifest")
        elif sha256(path) != entry["sha256"]:
            problems.append(f"{name}: sha256 differs from the manifest (modified or corrupted)")
    pickles = sorted(
        str(path.relative_to(folder)) for path in folder.rglob("*") if path.suffix.lower() in PICKLE_SUFFIXES
    )
    pickles += sorted(name for name in files if Path(name).suffix.lower() in PICKLE_SUFFIXES and name not in pickles)
    problems += [f"{name}: pickle-based files are refused (they can run code when loaded)" for name in pickles]
    return problems
