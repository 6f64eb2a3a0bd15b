"""The `compress:` section of a recipe (or the equivalent flags): which models to build and how to judge them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError

from edgeft.compress.distill import DistillConfig
from edgeft.compress.prune import PruneConfig
from edgeft.compress.vocab import VocabConfig
from edgeft.errors import EdgeftError
from edgeft.export import PRECISIONS
from edgeft.recipe import Strict, describe_errors

Format = Literal["onnx", "openvino", "tflite"]
# Precisions tried by default: fp32 as the format's own reference, the int8 each backend does best.
DEFAULT_PRECISIONS = {"onnx": ["fp32", "int8"], "openvino": ["fp32", "int8"], "tflite": ["fp32", "int8"]}


class BenchSpec(Strict):
    runs: PositiveInt = 50
    """Timed runs per candidate (after warm-up)."""
    warmup: PositiveInt = 10
    """Untimed runs before timing."""
    batch: PositiveInt = 1
    """Texts per call; edge inference is usually one request at a time."""
    seq_len: PositiveInt | None = None
    """Tokens per text; None uses real test texts at their real lengths."""


class CompressConfig(Strict):
    prune: list[PruneConfig] = [PruneConfig(heads=0.3, ffn=0.4), PruneConfig(heads=0.5, ffn=0.6, layers=2)]
    """Pruning levels to try; each gives a student (distilled when `distill` is set). Empty: no pruning."""
    vocab: VocabConfig | None = VocabConfig()
    """Vocabulary pruning applied to every student (and to the tuned model as its own candidate). None: off."""
    distill: DistillConfig | None = DistillConfig(epochs=2, learning_rate=1e-4)
    """Distillation of each pruned student from the tuned teacher. None: students stay undistilled."""
    keep_undistilled: bool = True
    """Also measure each pruned student before distillation (shows what distillation buys)."""
    formats: list[Format] | None = None
    """Export formats; None: every runtime the target profile lists."""
    precisions: list[str] | None = None
    """Precisions per format; None: fp32 and int8 of each format."""
    budget_ms: PositiveFloat | None = None
    """Latency budget (p50, ms); None: the profile's `latency_budget_ms`."""
    memory_mb: PositiveFloat | None = None
    """Memory budget (peak RSS, MiB); None: the profile's `memory_budget_mb`."""
    max_accuracy_drop: NonNegativeFloat = Field(0.01, le=1.0)
    """Largest accepted accuracy loss against the tuned model (0.01 = one point)."""
    objective: Literal["accuracy", "latency"] = "accuracy"
    """`accuracy`: the most accurate candidate within budget; `latency`: the fastest within the accuracy drop."""
    eval_rows: PositiveInt | None = None
    """Test rows each candidate is evaluated on; None: the whole test split."""
    min_agreement: float = Field(0.5, ge=0.0, le=1.0)
    """Top-1 agreement with its own PyTorch model below which a quantized export counts as failed."""
    bench: BenchSpec = BenchSpec()
    """How each candidate's latency is measured."""

    def precisions_for(self, format: str) -> list[str]:
        wanted = self.precisions or DEFAULT_PRECISIONS[format]
        return [precision for precision in wanted if precision in PRECISIONS[format]]


def parse_prune(text: str) -> PruneConfig:
    """`heads=0.3,ffn=0.4,layers=2` as a PruneConfig (a CLI flag)."""
    fields = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise EdgeftError(f"--prune: expected key=value pairs like heads=0.3,ffn=0.4 (got {item!r})")
        fields[key.strip()] = value.strip()
    try:
        return PruneConfig.model_validate(fields)
    except ValidationError as error:
        raise EdgeftError([f"--prune {text}: {line}" for line in describe_errors(error, PruneConfig)]) from None
