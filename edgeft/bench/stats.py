"""Percentiles with bootstrap confidence intervals, and speed-up ratios with intervals from paired rounds.

The sample of one row is R rounds, each a fresh process timing many calls. Most of the noise on a shared machine
lies between processes (a process lands on a busy core, its thread pool starts differently), so the bootstrap
resamples at both levels: rounds with replacement, then calls with replacement inside each chosen round. A ratio
resamples the same rounds for both rows (round r of A ran next to round r of B), which is what pairs them.
"""

from __future__ import annotations

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95


def percentile_ci(rounds: list[list[float]], q: float, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Pooled `q`-th percentile of the rounds' latencies and its bootstrap interval.

    Returns:
        {"value": percentile of all calls pooled, "ci": [low, high]} at CONFIDENCE.
    """
    arrays = [np.asarray(values, np.float64) for values in rounds]
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(arrays), size=(resamples, len(arrays)))
    draws = np.array([np.percentile(_resample(arrays, pick, rng), q) for pick in picks])
    return {"value": float(np.percentile(np.concatenate(arrays), q)), "ci": _interval(draws)}


def ratio_ci(baseline: list[list[float]], row: list[list[float]], q: float = 50.0, resamples: int = RESAMPLES,
             seed: int = 0) -> dict:
    """Speed-up of `row` over `baseline`: baseline's pooled q-th percentile divided by row's, with its interval.

    Rounds are paired by index (the i-th round of both ran in the same interleaved pass), so both are resampled
    with the same round indices. Also returns the per-round ratios of the rounds' own percentiles.
    """
    if len(baseline) != len(row):
        raise ValueError(f"paired rounds differ in number: {len(baseline)} vs {len(row)}")
    base = [np.asarray(values, np.float64) for values in baseline]
    other = [np.asarray(values, np.float64) for values in row]
    rng = np.random.default_rng(seed)
    picks = rng.integers(len(base), size=(resamples, len(base)))
    draws = np.array([np.percentile(_resample(base, pick, rng), q) / np.percentile(_resample(other, pick, rng), q)
                      for pick in picks])
    value = np.percentile(np.concatenate(base), q) / np.percentile(np.concatenate(other), q)
    per_round = [float(np.percentile(a, q) / np.percentile(b, q)) for a, b in zip(base, other)]
    return {"value": float(value), "ci": _interval(draws), "per_round": per_round}


def summary(values: list[float]) -> dict:
    """min / p10 / median / p90 / max / mean of a list of numbers (token lengths, say)."""
    array = np.asarray(values, np.float64)
    low, p10, median, p90, high = np.percentile(array, [0, 10, 50, 90, 100])
    return {"n": int(array.size), "min": float(low), "p10": float(p10), "median": float(median), "p90": float(p90),
            "max": float(high), "mean": float(array.mean())}


def _resample(arrays: list[np.ndarray], pick: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([arrays[i][rng.integers(arrays[i].size, size=arrays[i].size)] for i in pick])


def _interval(draws: np.ndarray) -> list[float]:
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return [float(low), float(high)]
