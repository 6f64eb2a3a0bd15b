"""The last pass: export the model to one format at one precision (quantizing per backend), verified against PyTorch.

Which format x precision pairs a target gets comes from its device profile's `quantization` list, unless the
`export.targets` setting names them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edgeft.recipe import Strict

VERIFY_ROWS = 256
CALIBRATION_ROWS = 300


class Config(Strict):
    format: str
    """onnx, openvino or tflite."""
    precision: str
    """A precision the format supports (`edgeft.export.PRECISIONS`)."""
    min_agreement: float = Field(0.5, ge=0.0, le=1.0)
    """Top-1 agreement with the PyTorch model below which a quantized export counts as failed."""


class Space(Strict):
    """What the search tries: one `format-precision` per trial."""

    targets: list[str] | None = None
    """`format-precision` pairs, e.g. [tflite-int8, onnx-int8]; None: the device profile's `quantization` list."""
    min_agreement: float = Field(0.5, ge=0.0, le=1.0)
    """As in Config."""

    def choices(self, profile) -> list[str]:
        return list(self.targets or profile.quantization)

    def sample(self, trial, earlier: dict, profile) -> Config:
        target = trial.suggest_categorical("export", self.choices(profile))
        format, precision = target.split("-", 1)
        return Config(format=format, precision=precision, min_agreement=self.min_agreement)


COSTLY = False


def for_task(profile, space: Space, task):
    """The device profile with only the `quantization` pairs the task's exporter offers (a decoder has no TFLite
    path here, a classifier no weight-only one), and `space.targets` checked against them.

    Raises:
        EdgeftError: a `targets` pair the exporter does not offer, or no pair left to try.
    """
    from edgeft.errors import EdgeftError

    def offered(pair: str) -> bool:
        format, _, precision = pair.partition("-")
        return precision in task.export_precisions.get(format, ())

    offer = ", ".join(f"{f}-{p}" for f, precisions in task.export_precisions.items() for p in precisions)
    wrong = [pair for pair in space.targets or () if not offered(pair)]
    if wrong:
        raise EdgeftError([f"compress.export.targets: {task.name} models do not export to {pair} (offered: {offer})"
                           for pair in wrong])
    pairs = [pair for pair in profile.quantization if offered(pair)]
    if not (space.targets or pairs):
        raise EdgeftError(f"device {profile.name}: none of its quantization pairs ({', '.join(profile.quantization)}) "
                          f"exports a {task.name} model; set compress.export.targets (offered: {offer})")
    return profile.model_copy(update={"quantization": pairs})


def run(model_dir: Path, config: Config, out_dir: Path, context) -> Path:
    """The pass: a verified bundle of the classifier in `model_dir` at `out_dir`."""
    from edgeft.export import export

    return export(model_dir, config.format, config.precision, output=out_dir,
                  texts=context.verify_examples[:VERIFY_ROWS], calibration_texts=context.calibration[:CALIBRATION_ROWS],
                  min_agreement=config.min_agreement, progress=False)
