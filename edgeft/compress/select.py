"""Choosing among measured candidates: the accuracy-vs-latency Pareto front and the budgeted pick."""

from __future__ import annotations


def measured(candidate: dict) -> bool:
    """A candidate that exported, evaluated and benched (failed ones carry an `error`)."""
    return candidate.get("error") is None and candidate.get("accuracy") is not None and candidate.get("p50_ms")


def pareto_front(candidates: list[dict]) -> list[dict]:
    """Candidates no other beats on both accuracy (higher) and p50 latency (lower)."""
    pool = [c for c in candidates if measured(c)]
    return [
        c for c in pool
        if not any(
            o["accuracy"] >= c["accuracy"] and o["p50_ms"] <= c["p50_ms"]
            and (o["accuracy"] > c["accuracy"] or o["p50_ms"] < c["p50_ms"])
            for o in pool
        )
    ]


def within(candidate: dict, budget_ms: float, memory_mb: float, max_drop: float) -> dict[str, bool]:
    """Which constraints a candidate meets (latency p50, peak RSS, accuracy drop)."""
    rss = candidate.get("peak_rss_mb")
    return {
        "latency": candidate["p50_ms"] <= budget_ms,
        "memory": rss is None or rss <= memory_mb,
        "accuracy": candidate["accuracy_drop"] <= max_drop + 1e-12,
    }


def choose(candidates: list[dict], budget_ms: float, memory_mb: float, max_drop: float,
           objective: str = "accuracy") -> tuple[dict | None, str]:
    """The best candidate and why it was chosen.

    `accuracy`: the most accurate candidate within the latency and memory budgets and the accuracy drop, ties to the
    smaller file. `latency`: the fastest within the accuracy drop and memory budget, ties to the smaller file.
    When nothing meets every constraint, the fastest candidate within the accuracy drop is returned and the reason
    says so; with no candidate at all, None.
    """
    pool = [c for c in candidates if measured(c)]
    if not pool:
        return None, "no candidate could be measured"
    checks = {id(c): within(c, budget_ms, memory_mb, max_drop) for c in pool}
    if objective == "latency":
        fits = [c for c in pool if checks[id(c)]["accuracy"] and checks[id(c)]["memory"]]
        key = lambda c: (c["p50_ms"], c["model_bytes"] or 0)  # noqa: E731
        reason = f"fastest within {max_drop:.1%} accuracy drop and {memory_mb:g} MiB"
    else:
        fits = [c for c in pool if all(checks[id(c)].values())]
        key = lambda c: (-c["accuracy"], c["model_bytes"] or 0)  # noqa: E731
        reason = f"most accurate within {budget_ms:g} ms, {memory_mb:g} MiB and {max_drop:.1%} accuracy drop"
    if fits:
        return min(fits, key=key), reason
    near = [c for c in pool if checks[id(c)]["accuracy"]] or pool
    best = min(near, key=lambda c: (c["p50_ms"], c["model_bytes"] or 0))
    return best, f"nothing meets every constraint ({reason}); chose the fastest within the accuracy drop"
