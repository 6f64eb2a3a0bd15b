"""The `compress:` section of a recipe (or the equivalent flags): the chain, what the search tries, how to choose.

```yaml
compress:
  passes: [prune, vocab, distill, export]   # the chain, in order; export (format x precision) is always last
  prune: {heads: [0.0, 0.25, 0.5], ffn: [0.0, 0.3, 0.6], layers: [0, 1, 2]}
  distill: {epochs: [1, 2, 3]}
  search: {time_budget: 60m, trials: null, workers: 1}
```
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt, field_validator, model_validator

from edgeft.bench.protocol import ROUNDS
from edgeft.compress import distill as distill_pass
from edgeft.compress import export as export_pass
from edgeft.compress import prune as prune_pass
from edgeft.compress import vocab as vocab_pass
from edgeft.compress.passes import LAST, PASSES
from edgeft.recipe import Strict

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s)?\s*$")


def duration_seconds(text: str) -> float:
    """`90m`, `1h30m`, `45s` or a bare number of minutes, in seconds."""
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text) * 60
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"expected a duration like 90m, 1h30m or 45s (got {text!r})")
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class SearchSpec(Strict):
    trials: PositiveInt | None = None
    """Trials to finish (scored-and-stopped ones count); None: until the time budget is spent."""
    time_budget: str | None = "60m"
    """Wall-clock budget of the search, e.g. 90m or 1h30m; no new costly pass starts that would overrun it."""
    workers: PositiveInt = 1
    """Worker processes sharing the study (more processes or machines can join through `storage`)."""
    storage: str | None = None
    """Optuna storage: an RDB URL (sqlite:///..., postgresql://...); None: a journal file beside the run."""
    seed: int = 0
    """Sampler seed (each worker adds its index)."""
    halving_rate: PositiveInt = 3
    """Successive halving: a student is distilled when it ranks in the best 1/rate of students scored so far."""
    quick_rows: PositiveInt = 512
    """Validation rows an undistilled student is scored on before the costly pass."""
    patience: PositiveInt = 50
    """After this many finished trials in a row that only repeated settings already tried, sampling turns random;
    after as many again under random sampling, the search stops (the rest of the budget would buy nothing)."""
    match_fraction: float = Field(0.5, gt=0.0, le=1.0)
    """With the `latency` objective, a distilled student stops the costly pass for every student no smaller than it
    only when its validation drop is at most this fraction of `max_metric_drop`: the validation split's sampling
    error is of the order of the drop, so a student just inside it may be outside on test, and a larger, more
    accurate one is still worth building."""

    @field_validator("time_budget")
    @classmethod
    def _duration(cls, value):
        if value is not None:
            duration_seconds(value)
        return value

    @model_validator(mode="after")
    def _bounded(self):
        if self.trials is None and self.time_budget is None:
            raise ValueError("set trials or time_budget (or both): the search needs a stopping rule")
        return self

    @property
    def time_budget_s(self) -> float | None:
        return duration_seconds(self.time_budget) if self.time_budget else None


class BenchSpec(Strict):
    runs: PositiveInt = 50
    """Timed runs per candidate (after warm-up)."""
    warmup: PositiveInt = 10
    """Untimed runs before timing."""
    texts: PositiveInt = 64
    """Real validation texts cycled through while timing (the same texts for every candidate)."""
    final_rounds: PositiveInt = ROUNDS
    """Before the choice, the candidates it is among (within the metric drop, and the front) are timed again
    together: this many interleaved rounds, a fresh process per candidate each, so load that changed during a long
    search cannot decide it. Default: `edgeft bench`'s protocol, so the choice rests on what a benchmark reports."""


class CompressConfig(Strict):
    passes: list[str] = ["prune", "vocab", "distill", "export"]
    """The chain, in order; each name is a key of `edgeft.compress.passes.PASSES`; `export` comes last."""
    prune: prune_pass.Space = prune_pass.Space()
    """Structured pruning levels the search tries."""
    vocab: vocab_pass.Space = vocab_pass.Space()
    """Vocabulary pruning on/off."""
    distill: distill_pass.Space = distill_pass.Space()
    """Distillation epochs (and fixed settings) of pruned students."""
    export: export_pass.Space = export_pass.Space()
    """Format x precision pairs; default: the device profile's `quantization` list."""
    search: SearchSpec = SearchSpec()
    """How long and how wide the search runs."""
    budget_ms: PositiveFloat | None = None
    """Latency budget on p50 (median) latency, ms; None: the profile's `latency_budget_p50_ms`."""
    memory_mb: PositiveFloat | None = None
    """Memory budget (peak RSS), MiB; None: the profile's `memory_budget_mb`."""
    size_mb: PositiveFloat | None = None
    """Size budget of the bundle's model files (graph and weights, not the tokenizer), MB of 10^6 bytes, for an app
    download or a device's flash; None: no limit. A selection budget: `--resume` may change it without new trials."""
    max_metric_drop: NonNegativeFloat = Field(0.01, le=1.0)
    """Largest accepted loss of the task metric against the tuned model on validation, as a fraction of the
    metric's full scale: 0.01 = one point (of accuracy or F1; of BLEU, whose scale is 0-100)."""
    objective: Literal["latency", "metric"] = "latency"
    """`latency`: the fastest (p50) within the metric drop and memory budget, the usual edge goal; `metric`: the
    best validation metric within the latency and memory budgets and the drop."""
    bench: BenchSpec = BenchSpec()
    """How each candidate's latency is measured."""

    @field_validator("passes")
    @classmethod
    def _chain(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in PASSES]
        if unknown:
            raise ValueError(f"unknown pass {unknown[0]!r}; known: {', '.join(PASSES)}")
        if len(set(value)) != len(value):
            raise ValueError("each pass may appear once")
        if not value or value[-1] != LAST:
            raise ValueError(f"the chain must end with {LAST!r} (it makes the deployable bundle)")
        return value

    def space(self, name: str):
        """The search space of pass `name`."""
        return getattr(self, name)
