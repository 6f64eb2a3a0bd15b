"""Choosing among candidates on validation metrics: the metric-vs-latency Pareto front and the budgeted pick."""

from __future__ import annotations

from edgeft.compress.candidate import Candidate

# Latencies this close are one speed at least: a single search-time measurement varies more than this between
# processes. When the finalists are re-timed together, the A/A row's spread widens it (`latency_tie`).
LATENCY_TIE = 0.10


def latency_tie(aa_ci: tuple[float, float] | list[float] | None) -> float:
    """The relative p50 difference that is one speed: what the harness shows between two rows of the same bundle
    (the upper end of the A/A ratio's interval), never less than LATENCY_TIE."""
    if not aa_ci:
        return LATENCY_TIE
    return max(LATENCY_TIE, max(aa_ci) - 1.0, 1.0 / max(min(aa_ci), 1e-9) - 1.0)


def format_metric(value: float, scale: float = 1.0) -> str:
    """A metric value as people read it: a fraction as a percentage, a 0-100 score (BLEU) as it is."""
    return f"{value:.2%}" if scale == 1.0 else f"{value:.2f}"


def points(drop: float, scale: float = 1.0) -> str:
    """A metric difference in points (hundredths of the metric's full scale)."""
    return f"{drop / scale * 100:.1f} point{'s' if drop / scale * 100 != 1 else ''}"


def within_drop(value: float, reference: float, max_drop: float) -> bool:
    """A validation metric no more than `max_drop` below the tuned model's (float noise forgiven)."""
    return value >= reference - max_drop - 1e-12


def pareto_front(candidates: list[Candidate], metric: str) -> list[Candidate]:
    """Candidates no other beats on both the validation metric (higher) and p50 latency (lower)."""
    def beats(other: Candidate, mine: Candidate) -> bool:
        o, m = (other.validation[metric], other.latency.p50_ms), (mine.validation[metric], mine.latency.p50_ms)
        return o[0] >= m[0] and o[1] <= m[1] and o != m

    return [c for c in candidates if not any(beats(other, c) for other in candidates)]


def choose(candidates: list[Candidate], metric: str, reference: float, budget_ms: float, memory_mb: float,
           max_drop: float, objective: str = "metric", tie: float = LATENCY_TIE, scale: float = 1.0,
           size_mb: float | None = None) -> tuple[Candidate | None, str]:
    """The best candidate by validation metrics and why it was chosen.

    `metric`: the best validation metric within the latency (p50) and memory budgets and `max_drop` below
    `reference` (the tuned model's validation metric), ties to the smaller file. `latency`: the fastest within the
    drop and the memory budget; p50s within `tie` of the fastest are one speed, and of those the best
    validation metric wins (one just inside the drop on validation is the likelier to be outside it on test), then
    the smaller file. `max_drop` is in the metric's units, `scale` its full scale (for the reason's wording).
    `size_mb` (None: no limit) bounds the model files like the memory budget bounds peak RSS.
    When nothing meets every constraint, the fastest within the drop (and the memory and size budgets, when
    any fits them) is returned and the reason says so; with no candidate at all, None.
    """
    if not candidates:
        return None, "no candidate could be measured"

    def fits(c: Candidate, latency: bool = True) -> bool:
        return (within_drop(c.validation[metric], reference, max_drop)
                and (c.peak_rss_mb is None or c.peak_rss_mb <= memory_mb)
                and (size_mb is None or c.model_bytes <= size_mb * 1e6)
                and (not latency or c.latency.p50_ms <= budget_ms))

    size = f", {size_mb:g} MB of model files" if size_mb is not None else ""
    if objective == "latency":
        pool = [c for c in candidates if fits(c, latency=False)]
        fastest = min((c.latency.p50_ms for c in pool), default=0.0)
        pool = [c for c in pool if c.latency.p50_ms <= fastest * (1 + tie)]
        key = lambda c: (-c.validation[metric], c.model_bytes, c.latency.p50_ms)  # noqa: E731
        reason = (f"fastest (p50; within {tie:.0%} is one speed: then the better {metric}, then the smaller "
                  f"file) within {points(max_drop, scale)} {metric} drop on validation and {memory_mb:g} MiB{size}")
    else:
        pool = [c for c in candidates if fits(c)]
        key = lambda c: (-c.validation[metric], c.model_bytes)  # noqa: E731
        reason = (f"best validation {metric} within {budget_ms:g} ms p50, {memory_mb:g} MiB{size} and "
                  f"{points(max_drop, scale)} drop")
    if pool:
        return min(pool, key=key), reason
    near = [c for c in candidates if fits(c, latency=False)] or [
        c for c in candidates if within_drop(c.validation[metric], reference, max_drop)] or candidates
    best = min(near, key=lambda c: (c.latency.p50_ms, c.model_bytes))
    return best, f"nothing meets every constraint ({reason}); chose the fastest within the drop"
