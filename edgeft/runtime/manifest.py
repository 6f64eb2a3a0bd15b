"""The bundle manifest's schema: validated before any file of the bundle is touched.

Strict where the runtime acts on a value (format, files, inputs, labels, tokenizer settings, self-check), open where
it only records provenance (`source`, `verification`) and for per-task sections: an unknown top-level field is
accepted only as a mapping, so a task can carry its own settings (`"token_classification": {...}`) without a
schema change here, while a stray scalar or a misspelt known field is still refused.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

SCHEMA_VERSION = 1
# A manifest holds hashes, labels and a few reference logits: kilobytes. Anything near this is not a manifest.
MAX_MANIFEST_BYTES = 8 << 20
MAX_FILES = 1000
MAX_SELF_CHECK_TEXTS = 256
INPUT_DTYPES = ("int32", "int64", "float16", "float32")

FileName = Annotated[StrictStr, Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\\]+$")]
Sha256 = Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
Label = Annotated[StrictStr, Field(min_length=1, max_length=1000)]
Dimension = StrictInt | Annotated[StrictStr, Field(max_length=100)]


class Closed(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class FileEntry(Closed):
    sha256: Sha256
    """Hex sha256 of the file."""
    bytes: Annotated[StrictInt, Field(ge=0)]
    """Its size."""


class InputSpec(Closed):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    dtype: Literal["int32", "int64", "float16", "float32"]
    shape: list[Dimension] = []


class OutputSpec(Closed):
    name: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    shape: list[Dimension] = []


class Bucket(Closed):
    signature: Annotated[StrictStr, Field(min_length=1, max_length=200)]
    batch: Annotated[StrictInt, Field(ge=1)]
    seq: Annotated[StrictInt, Field(ge=1)]


class TokenizerSettings(BaseModel):
    """What `TextEncoder` reproduces; open to settings a task's tokenizer adds (scalars only)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)
    file: Literal["tokenizer.json"] = "tokenizer.json"
    max_length: Annotated[StrictInt, Field(ge=1, le=1 << 20)]
    truncation_side: Literal["left", "right"] = "right"
    padding_side: Literal["left", "right"] = "right"
    pad_id: Annotated[StrictInt, Field(ge=0)] = 0
    pad_token: StrictStr | None = None
    lowercase: StrictBool = False
    add_special_tokens: StrictBool = True

    @model_validator(mode="after")
    def _extras_are_scalars(self):
        bad = [key for key, value in (self.model_extra or {}).items() if isinstance(value, (dict, list))]
        if bad:
            raise ValueError(f"unknown nested setting(s): {', '.join(bad)}")
        return self


class SelfCheck(Closed):
    texts: Annotated[list[StrictStr], Field(min_length=1, max_length=MAX_SELF_CHECK_TEXTS)]
    """Reference inputs run at load time."""
    expected_logits: list[Any]
    """The export host's prediction rows for them (one per text, or one per token: the task says), finite."""
    tolerance: Annotated[float, Field(ge=0)]
    """Largest accepted absolute difference."""

    @model_validator(mode="after")
    def _rectangular(self):
        if len(self.expected_logits) < len(self.texts):
            raise ValueError(f"expected_logits has {len(self.expected_logits)} rows for {len(self.texts)} texts")
        shapes = {_shape(row) for row in self.expected_logits}
        if len(shapes) != 1 or None in shapes:
            raise ValueError("expected_logits: rows must be equally shaped arrays of finite numbers")
        return self


class Manifest(BaseModel):
    """A bundle's `manifest.json`."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)
    schema_version: Annotated[StrictInt, Field(ge=1)] = 1
    """Manifest layout version; a runtime refuses a newer one than it knows."""
    task: Annotated[StrictStr, Field(min_length=1, max_length=100)] = "sequence-classification"
    """What the model does (older manifests without it are sequence classifiers)."""
    format: Literal["onnx", "openvino", "tflite"]
    precision: Annotated[StrictStr, Field(min_length=1, max_length=50)]
    files: Annotated[dict[FileName, FileEntry], Field(min_length=1, max_length=MAX_FILES)]
    labels: Annotated[list[Label], Field(min_length=1, max_length=1 << 20)] | None = None
    """Output classes in logit order (None for tasks without classes)."""
    max_length: Annotated[StrictInt, Field(ge=1, le=1 << 20)] | None = None
    inputs: Annotated[list[InputSpec], Field(min_length=1, max_length=64)]
    outputs: Annotated[list[OutputSpec], Field(max_length=64)] = []
    buckets: Annotated[list[Bucket], Field(max_length=256)] = []
    runtime_config: dict[StrictStr, StrictStr | StrictInt | StrictBool | float] = {}
    tokenizer: TokenizerSettings
    self_check: SelfCheck | None = None
    source: dict[str, Any] = {}
    verification: dict[str, Any] = {}
    edgeft_version: StrictStr | None = None
    created: StrictStr | None = None

    @model_validator(mode="after")
    def _consistent(self):
        extras = [key for key, value in (self.model_extra or {}).items() if not isinstance(value, dict)]
        if extras:
            raise ValueError(f"unknown field(s) {', '.join(map(repr, extras))} (a task's own section is a mapping)")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("labels: duplicate names")
        names = [spec.name for spec in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError("inputs: duplicate names")
        if self.format == "tflite" and not self.buckets and "decoder" not in (self.model_extra or {}):
            raise ValueError("buckets: a TFLite bundle lists its fixed-shape signatures (a decoder's prefill and "
                             "decode signatures are in its `decoder` section)")
        return self


def validate_manifest(raw: Any) -> tuple[Manifest | None, list[str]]:
    """The parsed manifest, or None and one `field: problem` line per error (the value is never echoed whole)."""
    if not isinstance(raw, dict):
        return None, [f"not a mapping of fields (got {type(raw).__name__})"]
    version = raw.get("schema_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return None, [f"schema_version {version} is newer than this runtime reads ({SCHEMA_VERSION}); "
                      "upgrade edgeft on this device"]
    try:
        return Manifest.model_validate(raw), []
    except ValidationError as error:
        return None, [_describe(item) for item in error.errors()[:20]]


def _describe(item: dict) -> str:
    where = ".".join(str(part) for part in item["loc"]) or "manifest"
    if item["type"] == "missing":
        return f"{where}: required field is missing"
    if item["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    shown = item.get("input")
    value = "" if isinstance(shown, (dict, list)) else f" (got {repr(shown)[:80]})"
    return f"{where}: {item['msg'].removeprefix('Value error, ')}{value}"


def _shape(value) -> tuple | None:
    """The shape of a nested list of finite numbers, None when ragged or holding anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return () if math.isfinite(value) else None
    if not isinstance(value, list) or not value:
        return None
    shapes = {_shape(item) for item in value}
    if len(shapes) != 1 or None in shapes:
        return None
    return (len(value), *shapes.pop())
