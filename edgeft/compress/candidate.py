"""A candidate: one deployable bundle the search produced, with what was measured on it. Immutable; selection and
the report read it, and the test metrics are added once (for the chosen front) with `dataclasses.replace`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Latency:
    """Batch-1 latency on the target: the summary and, when the bench returns them, the raw samples."""

    p50_ms: float
    p90_ms: float
    source: str
    """`measured:host (...)`, `measured:ssh://...` or `estimated (...)`."""
    samples_ms: tuple[float, ...] = ()


@dataclass(frozen=True)
class Candidate:
    trial: int
    chain: tuple[str, ...]
    """The passes that made it, e.g. ("prune(heads=0.5,ffn=0.6,layers=1)", "vocab", "distill(epochs=3)", "tflite-int8")."""
    settings: dict
    """The trial's sampled parameters."""
    bundle: Path
    format: str
    precision: str
    validation: dict
    """Task metrics on the validation split, run in the bundle's own runtime (selection uses these)."""
    latency: Latency
    model_bytes: int
    peak_rss_mb: float | None
    test: dict | None = None
    """Task metrics on the test split; measured once, for the chosen front only."""
    notes: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"trial{self.trial}-{self.format}-{self.precision}"

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(name=self.name, bundle=str(self.bundle), chain=list(self.chain))
        data["latency"]["samples_ms"] = list(self.latency.samples_ms)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Candidate":
        fields = {key: value for key, value in data.items() if key != "name"}
        latency = dict(fields.pop("latency"))
        latency["samples_ms"] = tuple(latency.get("samples_ms", ()))
        return cls(**{**fields, "bundle": Path(fields["bundle"]), "chain": tuple(fields["chain"]),
                      "notes": tuple(fields.get("notes", ())), "latency": Latency(**latency)})
