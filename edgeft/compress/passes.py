"""The compression passes, visible in one place. Every pass is one module with the same shape:

- `Config`: a pydantic model of one run's settings (what the cache key is made of);
- `Space`: what the search tries; `Space.sample(trial, earlier, profile)` returns a Config, or None to skip the pass;
- `COSTLY`: True when the pass takes minutes, so the search scores its input first and runs it only when promising;
- `run(model_dir, config, out_dir, context) -> Path`: reads a model folder, writes `out_dir`, returns it.

The engine (`edgeft.compress.engine`) runs them in the order of `compress.passes` and caches every output under a
key of its input and config, so a student built once serves every later trial and every target. `export` (format x
precision, quantizing per backend) is always last: it turns a model folder into a runtime bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeft.compress import distill, export, prune, vocab

PASSES = {
    "prune": prune,  # structured: attention heads, FFN neurons, whole layers
    "vocab": vocab,  # word embeddings restricted to the domain's tokens
    "distill": distill,  # the student recovers from the tuned teacher
    "export": export,  # format x precision, verified against PyTorch
}
LAST = "export"


@dataclass(frozen=True)
class PassContext:
    """What passes read besides their input model: the teacher, the data and real texts."""

    teacher_dir: Path
    splits: object  # edgeft.data.Splits
    verify_examples: list[tuple[str, str]]
    calibration: list[str]
