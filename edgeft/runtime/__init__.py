"""The device runtime: load a verified bundle and run it with numpy, `tokenizers` and one backend.

Nothing here imports torch, transformers, optimum or datasets; only the backend the bundle's format needs. What the
outputs mean is the bundle's task's (`edgeft.runtime.tasks`):

    >>> edgeft.runtime.load("runs/banking77/bundles/onnx-int8").predict(["my card has not arrived"])
    [('card_arrival', 0.97)]
    >>> edgeft.runtime.load("runs/wnut17/bundles/onnx-int8").predict(["I flew to Paris"])
    [[{'text': 'Paris', 'type': 'location', 'start': 10, 'end': 15, 'score': 0.93}]]
"""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np

from edgeft.errors import EdgeftError
from edgeft.runtime.backends import BACKENDS, Backend
from edgeft.runtime.bundle import TOKENIZER, BundleError, read_checked
from edgeft.runtime.tasks import runtime_task
from edgeft.runtime.tasks.sequence_classification import softmax
from edgeft.runtime.tokenize import TextEncoder

__all__ = ["load", "Predictor", "BundleError", "softmax", "as_texts"]


def load(
    bundle_dir: str | Path, threads: int | None = None, self_check: bool | str = True, trusted_keys=None
):
    """Check a bundle (schema, signature, every file's sha256, no escaping names, no pickles) and load it: a
    `Predictor`, or for a generating task (causal-lm) a `Generator` (`edgeft.runtime.generate`) with
    `generate` / `stream`.

    Args:
        bundle_dir: the bundle folder (with manifest.json).
        threads: intra-op threads for the backend; None lets it choose.
        self_check: True runs the manifest's reference inputs and refuses a runtime that disagrees beyond the
            bundle's tolerance; "warn" only warns; False skips it (e.g. while the bundle is being verified).
        trusted_keys: Ed25519 public keys (`.pub` files, folders of them, PEM text or key objects); None reads the
            EDGEFT_TRUSTED_KEYS environment variable. When any are configured, an unsigned bundle or one signed
            by another key is refused.

    Raises:
        BundleError: a malformed, tampered, incomplete or unsafe bundle, or a failed self-check (exit code 2).
        EdgeftError: the backend for the bundle's format is not installed (with the install line).
    """
    folder, manifest = read_checked(bundle_dir, trusted_keys)
    task = runtime_task(manifest.get("task"))
    if hasattr(task, "open"):  # generation loops over the graph with a KV cache: its own loaded object
        return task.open(folder, manifest, threads, self_check)
    backend = _load_backend(folder, manifest, threads)
    try:
        encoder = TextEncoder(folder / TOKENIZER, manifest["tokenizer"])
    except Exception as error:  # noqa: BLE001 - tokenizers raises plain Exception for a bad file
        raise BundleError(f"{bundle_dir}: {TOKENIZER}: does not fit the manifest's tokenizer settings or cannot be "
                          f"read: {_first_line(error)}") from None
    labels = manifest["labels"]
    if labels is not None and backend.output_width is not None and len(labels) != backend.output_width:
        raise BundleError(f"{bundle_dir}: manifest.json: labels: {len(labels)} labels, but the model outputs "
                          f"{backend.output_width} values per row")
    versions = {"python": platform.python_version(), "numpy": np.__version__, "tokenizers": _tokenizers(),
                **backend.versions}
    predictor = Predictor(manifest, encoder, backend.run, versions, backend.sequence_multiple)
    if self_check and manifest.get("self_check"):
        try:
            problem = predictor.self_check()
        except Exception as error:  # noqa: BLE001 - a backend failing on the bundle's own reference inputs
            raise BundleError(f"{bundle_dir}: self-check failed: the model cannot run its reference inputs: "
                              f"{_first_line(error)}") from None
        if problem and self_check == "warn":
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
        elif problem:
            raise BundleError(problem)
    return predictor


def _load_backend(folder: Path, manifest: dict, threads: int | None) -> Backend:
    """The format's backend; a model file it cannot read (corrupt, yet with matching hashes) is a BundleError."""
    try:
        return BACKENDS[manifest["format"]](folder, manifest, threads)
    except EdgeftError:
        raise
    except Exception as error:  # noqa: BLE001 - protobuf, flatbuffer and IR readers raise their own types
        files = ", ".join(name for name in manifest["files"] if name.startswith("model."))
        raise BundleError(f"{folder}: {files}: the {manifest['format']} runtime cannot load it: "
                          f"{_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]


class Predictor:
    """A loaded bundle. `encode` + `run` are the raw steps a benchmark times; `predict` is the convenience."""

    def __init__(self, manifest: dict, encoder: TextEncoder, run, runtime_versions: dict, sequence_multiple: int = 1):
        self.manifest = manifest
        self.task = runtime_task(manifest.get("task"))
        self.labels: list[str] = list(manifest.get("labels") or [])
        self.runtime_versions = runtime_versions
        self._encoder = encoder
        self._run = run
        self._buckets = sorted(manifest.get("buckets", []), key=lambda b: (b["seq"], b["batch"]))
        self._dtype = np.dtype(manifest["inputs"][0]["dtype"])  # int64 for ONNX/OpenVINO, int32 for TFLite
        self._multiple = sequence_multiple

    def encodings(self, texts: list, pretokenized: bool = False) -> list:
        """`tokenizers` encodings (ids, tokens, offsets, word ids), special tokens added, truncated."""
        return self._encoder.encodings(texts, pretokenized)

    def subword_rule(self) -> tuple[bool, int | None]:
        """Whether the tokenizer marks word continuations (WordPiece `##`), and its unknown-token id."""
        return self._encoder.word_aware, self._encoder.unk_id

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Token arrays padded to the batch's longest text, rounded up to the backend's sequence multiple (TFLite:
        to the smallest fixed-shape bucket that fits)."""
        return self._pad(self._encoder.token_ids(texts))

    def _pad(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        if not self._buckets:
            longest = max(len(row) for row in ids)
            length = min(-(-longest // self._multiple) * self._multiple, max(self._encoder.max_length, longest))
            return self._encoder.pad(ids, length=length, dtype=self._dtype)
        longest = max(len(row) for row in ids)
        bucket = self._pick_bucket(len(ids), longest)
        rows = -len(ids) % bucket["batch"]
        # Filler rows repeat a real one (an all-padding row would pool over nothing); they are dropped after the run.
        return self._encoder.pad(ids + [ids[-1]] * rows, length=bucket["seq"], dtype=self._dtype)

    def run(self, encoded: dict[str, np.ndarray]) -> np.ndarray:
        """The raw backend call: the graph's output (logits) as float32."""
        return np.asarray(self._run(encoded), dtype=np.float32)

    def forward(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs and attention mask for one batch of token id rows (filler rows dropped)."""
        encoded = self._pad(ids)
        return self.run(encoded)[: len(ids)], encoded["attention_mask"][: len(ids)]

    def logits(self, texts: list[str] | str, batch_size: int = 32) -> np.ndarray:
        """The task's prediction rows for every text, in batches: (texts, labels), or (real tokens, labels).

        Raises:
            TypeError: texts that are not a string or a list/tuple of strings.
            ValueError: a batch_size that is not a positive integer.
        """
        texts = as_texts(texts)
        check_batch_size(batch_size)
        chunks = [
            self.task.rows(*self.forward(self._encoder.token_ids(list(texts[start : start + batch_size]))))
            for start in range(0, len(texts), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, texts: list[str] | str, **options) -> list:
        """The task's results per text: `[(label, score)]` for a sentence classifier (`probabilities=True` adds
        the full vector), `[[{"text", "type", "start", "end", "score"}]]` for a token classifier
        (`aggregation="first"|"max"|"average"`)."""
        texts = as_texts(texts)
        check_batch_size(options.get("batch_size", 1))
        return self.task.predict(self, texts, **options)

    def self_check(self) -> str | None:
        """Run the manifest's reference texts; a message when this runtime disagrees with the export host.

        With a verified signature the references are authentic, so a failure is the device runtime's; without
        one, the bundle itself may have been modified, and the message says both.
        """
        check = self.manifest["self_check"]
        expected = np.asarray(check["expected_logits"], dtype=np.float32)
        got = self.logits(check["texts"])
        if got.shape != expected.shape:
            return f"self-check failed: the model gives outputs of shape {got.shape}, the manifest expects {expected.shape}"
        diff = float(np.abs(got - expected).max())
        top1_ok = bool((got.argmax(axis=-1) == expected.argmax(axis=-1)).all())
        if diff <= check["tolerance"] and top1_ok:
            return None
        versions = ", ".join(f"{name} {version}" for name, version in self.runtime_versions.items())
        found = (f"self-check failed: this runtime ({versions}) gives logits {diff:.3g} away from the expected ones "
                 f"(tolerance {check['tolerance']:.3g}, top-1 {'equal' if top1_ok else 'different'}); ")
        if self.manifest.get("signed"):
            return found + ("the signature verified, so the bundle is authentic: the device runtime is broken or "
                            "incompatible with this bundle")
        return found + ("the bundle is not signature-checked (no trusted keys configured), so either it was modified "
                        "after export or the device runtime is broken; configure EDGEFT_TRUSTED_KEYS to tell which")

    def _pick_bucket(self, rows: int, longest: int) -> dict:
        fitting = [b for b in self._buckets if b["seq"] >= min(longest, self._buckets[-1]["seq"])]
        batched = [b for b in fitting if 1 < b["batch"] <= rows]
        return batched[0] if batched else next(b for b in fitting if b["batch"] == 1)


def as_texts(texts) -> list[str]:
    """A list of texts from one string or a list/tuple of strings; anything else is a clear TypeError."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, (list, tuple)):
        raise TypeError(f"texts must be a string or a list of strings (got {type(texts).__name__})")
    wrong = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if wrong is not None:
        raise TypeError(f"texts[{wrong}] is a {type(texts[wrong]).__name__}, not a string")
    return list(texts)


def check_batch_size(batch_size) -> None:
    """A batch size must be a positive int (-1 or 0 would silently return nothing)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer (got {batch_size!r})")


def _tokenizers() -> str:
    import tokenizers

    return tokenizers.__version__
