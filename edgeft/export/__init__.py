"""`edgeft export`: a tuned model to a verified bundle (ONNX, OpenVINO IR or TFLite) at a chosen precision.

Every bundle is run through `edgeft.runtime` on real inputs and compared to the PyTorch model before it is written;
one that fails its tolerance is not written. The per-format writers and their quantizers are plain functions
`edgeft compress` reuses.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import edgeft
from edgeft.atomic import promote
from edgeft.errors import EdgeftError
from edgeft.export import decoder, onnx, openvino, tflite
from edgeft.export.source import resolve, run_examples
from edgeft.export.verify import compare, evaluate, judge, self_check_entry, torch_logits
from edgeft.runtime.bundle import MANIFEST, TOKENIZER, describe_files, sha256
from edgeft.runtime.signing import load_private_key, sign_bundle
from edgeft.runtime.tokenize import save_tokenizer, tokenizer_settings

__all__ = ["export", "evaluate", "FORMATS", "PRECISIONS"]

# format -> writer(model, folder, precision, job) -> manifest fields
FORMATS = {"onnx": onnx.write, "openvino": openvino.write, "tflite": tflite.write}
PRECISIONS = {"onnx": onnx.PRECISIONS, "openvino": openvino.PRECISIONS, "tflite": tflite.PRECISIONS}
N_VERIFY = 256
# Real test texts kept in the manifest: what `edgeft bench` times by default, and what an emulated or remote
# device's predictions are checked on.
REFERENCE_TEXTS = 64
SAMPLE_TEXT = "a sample input for tracing the graph"


@dataclass
class ExportJob:
    """What a writer needs besides the model: tokenization, a scratch folder and calibration texts."""

    tokenizer: object
    max_length: int
    workdir: Path
    calibration_texts: list[str] = field(default_factory=list)

    def encode(self, texts: list[str]) -> dict[str, np.ndarray]:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="np")
        return {name: batch[name].astype(np.int64) for name in onnx.INPUT_NAMES}

    @property
    def sample(self) -> dict[str, np.ndarray]:
        return self.encode([SAMPLE_TEXT, SAMPLE_TEXT + " that is a little longer"])

    def calibration(self) -> list[dict[str, np.ndarray]]:
        """One unpadded input per calibration text, as a calibrating quantizer feeds them."""
        return [self.encode([text]) for text in self.calibration_texts]


def export(
    source: str | Path,
    format: str = "onnx",
    precision: str = "fp32",
    output: str | Path | None = None,
    *,
    texts: list[str] | list[tuple[str, str]] | None = None,
    calibration_texts: list[str] | None = None,
    min_agreement: float = 0.9,
    n_verify: int = N_VERIFY,
    progress: bool = True,
    sign_key: str | Path | None = None,
) -> Path:
    """Export, verify against PyTorch, and atomically write one bundle.

    Args:
        source: a run folder from `edgeft tune`, its `merged/` folder, or any classifier folder.
        format: one of FORMATS.
        precision: one of PRECISIONS[format].
        output: the bundle folder; default `<run>/bundles/<format>-<precision>`. An existing bundle is replaced.
        texts: verification inputs (texts, or the task's examples such as (text, label) pairs); default: `n_verify`
            test examples of the run's recipe.
        calibration_texts: for int8 calibration; default: training texts of the run's recipe (or `texts`).
        min_agreement: the top-1 agreement a quantized bundle needs (fp32 always needs 100%).
        n_verify: how many recipe texts to verify on.
        progress: show progress on stderr.
        sign_key: an Ed25519 private key file (`edgeft keygen`); the manifest is signed with it (`manifest.sig`).

    Returns:
        The bundle folder.

    Raises:
        EdgeftError: bad arguments (exit 2), or an artifact that fails verification (exit 1).
    """
    if decoder.decoder_run(source):  # a causal LM: a decoder with a KV cache, verified by generating
        return decoder.export_run(source, format, precision, output, min_agreement=min_agreement,
                                  n_verify=n_verify, progress=progress)
    _check_arguments(format, precision, min_agreement, n_verify)
    if sign_key:
        load_private_key(sign_key)
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from edgeft.models import load_classifier, load_tokenizer
    from edgeft.tasks import get_task

    src = resolve(source)
    output = Path(output) if output else (src.run_dir or src.model_dir.parent) / "bundles" / f"{format}-{precision}"
    _check_output(output)
    model = load_classifier(src.model_dir)
    task = get_task(model.head_config.task)
    if texts is None:
        examples, recipe_calibration, inputs_from = run_examples(src, n_verify)
    else:
        examples = [item if isinstance(item, tuple) else (item, None) for item in texts]
        recipe_calibration, inputs_from = [task.example_text(item) for item in examples], "texts given to export()"
    tokenizer = load_tokenizer(src.model_dir)
    max_length = int(model.head_config.max_length)
    verify_texts = [task.example_text(item) for item in examples]
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.tmp-") as tmp, Progress(
        *columns, transient=True, disable=not progress
    ) as bar:
        stage, workdir = Path(tmp) / "bundle", Path(tmp) / "work"
        stage.mkdir()
        workdir.mkdir()
        job = ExportJob(tokenizer, max_length, workdir, calibration_texts or recipe_calibration)
        step = bar.add_task(f"exporting {format} {precision}")
        fields = FORMATS[format](model, stage, precision, job)
        save_tokenizer(tokenizer, stage / TOKENIZER)
        manifest = {
            "task": task.name,
            "format": format,
            "precision": precision,
            "files": describe_files(stage, [*fields.pop("files"), TOKENIZER]),
            "labels": list(model.head_config.labels),
            "max_length": max_length,
            **fields,
            "tokenizer": tokenizer_settings(tokenizer, max_length),
            "source": _source_info(src),
            "edgeft_version": edgeft.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _write_manifest(stage, manifest)

        bar.update(step, description=f"verifying {format} {precision} on {len(verify_texts)} inputs against PyTorch")
        from edgeft.runtime import load

        predictor = load(stage, self_check=False, trusted_keys=[])
        candidate = predictor.logits(verify_texts)
        reference = torch_logits(model, tokenizer, verify_texts, max_length)
        verification = judge(compare(reference, candidate), precision, min_agreement)
        verification.update(_accuracies(examples, model.head_config.labels, reference, candidate))
        verification["inputs"] = inputs_from
        verification["texts"] = len(verify_texts)  # n_inputs counts prediction rows: one per token for a tagger
        verification["inputs_sha256"] = hashlib.sha256("\n".join(verify_texts).encode()).hexdigest()
        if not verification["passed"]:
            raise EdgeftError(_failure(format, precision, verification), exit_code=1)
        manifest["verification"] = verification
        counts = predictor.task.row_counts(predictor, verify_texts)
        check = self_check_entry(verify_texts, reference, candidate, verification["max_abs_diff"], counts)
        # Expected rows as the load-time self-check computes them (these texts in one batch): dynamic int8
        # quantizes activations per batch, so rows taken from the verification batches can differ from them.
        check["expected_logits"] = predictor.logits(check["texts"]).round(6).tolist()
        manifest["self_check"] = check
        manifest["reference_sample"] = reference_sample(tokenizer, verify_texts, max_length, inputs_from)
        _write_manifest(stage, manifest)
        if sign_key:
            sign_bundle(stage, sign_key)
        promote(stage, output)
    return output


def reference_sample(tokenizer, texts: list[str], max_length: int, inputs_from: str) -> dict:
    """The manifest's sample of real inputs: up to REFERENCE_TEXTS texts and their token lengths (truncated)."""
    texts = list(texts[:REFERENCE_TEXTS])
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    return {"texts": texts, "token_lengths": lengths, "from": inputs_from}


def _check_arguments(format: str, precision: str, min_agreement: float, n_verify: int) -> None:
    problems = []
    if format not in FORMATS:
        problems.append(f"--format: {format!r} is not one of {', '.join(FORMATS)}")
    elif precision not in PRECISIONS[format]:
        problems.append(f"--precision: {format} offers {', '.join(PRECISIONS[format])} (got {precision!r})")
    if not 0.0 <= min_agreement <= 1.0:
        problems.append(f"--min-agreement: must be between 0 and 1 (got {min_agreement})")
    if n_verify < 1:
        problems.append(f"--samples: must be at least 1 (got {n_verify})")
    if problems:
        raise EdgeftError(problems)


def _check_output(output: Path) -> None:
    # Replacing is only safe for something that is a bundle; never clobber an unrelated folder.
    if output.exists() and not (output / MANIFEST).is_file():
        raise EdgeftError(f"--output: {output} exists and is not a bundle; choose another folder")


def _write_manifest(folder: Path, manifest: dict) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _source_info(src) -> dict:
    weights = [name.name for name in sorted(src.model_dir.glob("*.safetensors"))]
    return {
        "model_dir": str(src.model_dir),
        "run_dir": str(src.run_dir) if src.run_dir else None,
        "recipe_lock": str(src.recipe) if src.recipe else None,
        "recipe_lock_sha256": sha256(src.recipe) if src.recipe else None,
        "weights": describe_files(src.model_dir, weights),
    }


def _accuracies(examples, labels, reference: np.ndarray, candidate: np.ndarray) -> dict:
    """Accuracy of PyTorch and of the artifact on the verification inputs, when each carries one label."""
    index = {label: i for i, label in enumerate(labels)}
    if any(not isinstance(label, str) or label not in index for _, label in examples) or len(reference) != len(examples):
        return {}
    truth = np.array([index[label] for _, label in examples])
    return {
        "torch_accuracy": float((reference.argmax(axis=1) == truth).mean()),
        "accuracy": float((candidate.argmax(axis=1) == truth).mean()),
    }


def _failure(format: str, precision: str, verification: dict) -> list[str]:
    wanted = verification["tolerance"]
    return [
        f"{format} {precision} failed verification against PyTorch on {verification['n_inputs']} inputs: "
        f"top-1 agreement {verification['top1_agreement']:.2%} (needs {wanted['top1_agreement']:.2%}), "
        f"max abs logit diff {verification['max_abs_diff']:.3g}"
        + (f" (needs <= {wanted['max_abs_diff']:.3g})" if "max_abs_diff" in wanted else ""),
        "no bundle was written" + ("; lower --min-agreement to accept it" if precision != "fp32" else ""),
    ]
