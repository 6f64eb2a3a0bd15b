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

from edgeft.runtime.backends import BACKENDS
from edgeft.runtime.bundle import TOKENIZER, BundleError, read_checked
from edgeft.runtime.tasks import runtime_task
from edgeft.runtime.tasks.sequence_classification import softmax
from edgeft.runtime.tokenize import TextEncoder

__all__ = ["load", "Predictor", "BundleError", "softmax"]


def load(bundle_dir: str | Path, threads: int | None = None, self_check: bool | str = True) -> "Predictor":
    """Check a bundle (every file's sha256, no escaping names, no pickles) and load it for prediction.

    Args:
        bundle_dir: the bundle folder (with manifest.json).
        threads: intra-op threads for the backend; None lets it choose.
        self_check: True runs the manifest's reference inputs and refuses a runtime that disagrees beyond the
            bundle's tolerance; "warn" only warns; False skips it (e.g. while the bundle is being verified).

    Raises:
        BundleError: a tampered, incomplete or unsafe bundle, or a failed self-check.
        EdgeftError: the backend for the bundle's format is not installed (with the install line).
    """
    folder, manifest = read_checked(bundle_dir)
    run, versions = BACKENDS[manifest["format"]](folder, manifest, threads)
    encoder = TextEncoder(folder / TOKENIZER, manifest["tokenizer"])
    versions = {"python": platform.python_version(), "numpy": np.__version__, "tokenizers": _tokenizers(), **versions}
    predictor = Predictor(manifest, encoder, run, versions)
    if self_check and manifest.get("self_check"):
        problem = predictor.self_check()
        if problem and self_check == "warn":
            warnings.warn(problem, RuntimeWarning, stacklevel=2)
        elif problem:
            raise BundleError(problem, exit_code=1)
    return predictor


class Predictor:
    """A loaded bundle. `encode` + `run` are the raw steps a benchmark times; `predict` is the convenience."""

    def __init__(self, manifest: dict, encoder: TextEncoder, run, runtime_versions: dict):
        self.manifest = manifest
        self.task = runtime_task(manifest.get("task"))
        self.labels: list[str] = list(manifest["labels"])
        self.runtime_versions = runtime_versions
        self._encoder = encoder
        self._run = run
        self._buckets = sorted(manifest.get("buckets", []), key=lambda b: (b["seq"], b["batch"]))
        self._dtype = np.dtype(manifest["inputs"][0]["dtype"])  # int64 for ONNX/OpenVINO, int32 for TFLite

    def encodings(self, texts: list, pretokenized: bool = False) -> list:
        """`tokenizers` encodings (ids, tokens, offsets, word ids), special tokens added, truncated."""
        return self._encoder.encodings(texts, pretokenized)

    def subword_rule(self) -> tuple[bool, int | None]:
        """Whether the tokenizer marks word continuations (WordPiece `##`), and its unknown-token id."""
        return self._encoder.word_aware, self._encoder.unk_id

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Token arrays padded to the batch's longest text (TFLite: to the smallest fixed-shape bucket that fits)."""
        return self._pad(self._encoder.token_ids(texts))

    def _pad(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        if not self._buckets:
            return self._encoder.pad(ids, dtype=self._dtype)
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

    def logits(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """The task's prediction rows for every text, in batches: (texts, labels), or (real tokens, labels)."""
        chunks = [
            self.task.rows(*self.forward(self._encoder.token_ids(list(texts[start : start + batch_size]))))
            for start in range(0, len(texts), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, texts: list[str] | str, **options) -> list:
        """The task's results per text: `[(label, score)]` for a sentence classifier (`probabilities=True` adds
        the full vector), `[[{"text", "type", "start", "end", "score"}]]` for a token classifier
        (`aggregation="first"|"max"|"average"`)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        return self.task.predict(self, texts, **options)

    def self_check(self) -> str | None:
        """Run the manifest's reference texts; a message when this runtime disagrees with the export host."""
        check = self.manifest["self_check"]
        expected = np.asarray(check["expected_logits"], dtype=np.float32)
        got = self.logits(check["texts"])
        diff = float(np.abs(got - expected).max())
        top1_ok = bool((got.argmax(axis=1) == expected.argmax(axis=1)).all())
        if diff <= check["tolerance"] and top1_ok:
            return None
        versions = ", ".join(f"{name} {version}" for name, version in self.runtime_versions.items())
        return (
            f"self-check failed: this runtime ({versions}) gives logits {diff:.3g} away from the expected ones "
            f"(tolerance {check['tolerance']:.3g}, top-1 {'equal' if top1_ok else 'different'}); the backend build "
            "on this device is broken or incompatible with this bundle"
        )

    def _pick_bucket(self, rows: int, longest: int) -> dict:
        fitting = [b for b in self._buckets if b["seq"] >= min(longest, self._buckets[-1]["seq"])]
        batched = [b for b in fitting if 1 < b["batch"] <= rows]
        return batched[0] if batched else next(b for b in fitting if b["batch"] == 1)


def _tokenizers() -> str:
    import tokenizers

    return tokenizers.__version__
