import pytest

from edgeft.compress import _goals, _int8_slower, _pass_effects
from edgeft.compress.select import choose, pareto_front


def _row(name, accuracy, p50, size=10e6, rss=100.0, model="tuned", fmt="onnx", precision="int8", drop=None):
    return {"name": name, "accuracy": accuracy, "p50_ms": p50, "model_bytes": size, "peak_rss_mb": rss,
            "model": model, "format": fmt, "precision": precision, "error": None,
            "accuracy_drop": 0.90 - accuracy if drop is None else drop}


CANDIDATES = [
    _row("a", 0.90, 10.0),
    _row("b", 0.89, 4.0),
    _row("c", 0.88, 5.0),  # dominated by b
    _row("d", 0.85, 1.0),
    _row("e", 0.89, 4.0, size=5e6),  # same as b, smaller
]


def test_pareto_front_keeps_only_non_dominated():
    names = {row["name"] for row in pareto_front(CANDIDATES)}
    assert names == {"a", "b", "d", "e"}


def test_failed_candidates_are_ignored():
    failed = {**_row("x", 0.99, 0.1), "error": "RuntimeError: op not supported"}
    assert failed not in pareto_front([*CANDIDATES, failed])
    assert choose([failed], 100, 512, 0.01) == (None, "no candidate could be measured")


def test_most_accurate_within_budget_ties_to_smaller():
    best, reason = choose(CANDIDATES, budget_ms=5.0, memory_mb=512, max_drop=0.02)
    assert best["name"] == "e"
    assert "most accurate within 5 ms" in reason


def test_memory_budget_excludes():
    rows = [_row("big", 0.90, 1.0, rss=900), _row("small", 0.89, 2.0, rss=100)]
    assert choose(rows, 10, 512, 0.05)[0]["name"] == "small"


def test_latency_objective_picks_fastest_within_drop():
    best, _ = choose(CANDIDATES, budget_ms=100, memory_mb=512, max_drop=0.01, objective="latency")
    assert best["name"] == "e"  # d is faster but 5 points worse


def test_nothing_fits_falls_back_to_fastest_within_drop():
    best, reason = choose(CANDIDATES, budget_ms=0.5, memory_mb=512, max_drop=0.01)
    assert best["name"] == "e" and "nothing meets every constraint" in reason


def test_int8_slower_than_fp32_is_flagged():
    rows = [_row("t-fp32", 0.9, 3.0, precision="fp32"), _row("t-int8", 0.9, 4.0),
            _row("o-fp32", 0.9, 3.0, fmt="openvino", precision="fp32"), _row("o-int8", 0.9, 2.0, fmt="openvino")]
    assert _int8_slower(rows) == {"t-int8"}


def test_pass_effects_and_goals():
    eager = {**_row("pytorch-fp32-eager", 0.90, 16.0, size=90e6, fmt="pytorch", precision="fp32"), "reference": True}
    fp32 = _row("tuned-onnx-fp32", 0.90, 8.0, size=90e6, precision="fp32")
    ort = {**_row("tuned-onnx-int8", 0.895, 4.0, size=23e6), "reference": True}
    student = _row("pruned1-onnx-int8", 0.893, 1.5, size=9e6, model="pruned1")
    rows = [eager, fp32, ort, student]
    for row in rows:
        row["accuracy_drop"] = 0.90 - row["accuracy"]
    effects = _pass_effects(rows)
    assert effects == [{"model": "pruned1", "format": "onnx", "precision": "int8",
                        "accuracy_delta": pytest.approx(-0.002), "speedup": pytest.approx(4 / 1.5),
                        "size_ratio": pytest.approx(9 / 23)}]
    goals = _goals(rows)
    assert goals["candidate"] == "pruned1-onnx-int8"
    checks = goals["checks"]
    assert checks["speed-up vs PyTorch fp32 eager"] == {"measured": "10.67×", "goal": "≥ 8×", "met": True}
    assert checks["speed-up vs ONNX Runtime int8 (unpruned)"]["met"] is True
    assert checks["file size vs fp32"] == {"measured": "10.0%", "goal": "≤ 15%", "met": True}
