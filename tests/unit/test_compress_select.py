"""Selection on validation metrics: the front and the pick ignore test metrics, even when test disagrees."""

from pathlib import Path

import optuna
import pytest

from edgeft.compress.candidate import Candidate, Latency
from edgeft.compress.search import Converged, _not_promoted, _pareto_ranks
from edgeft.compress.select import LATENCY_TIE, choose, latency_tie, pareto_front


def _candidate(trial, validation, p50, test=None, size=10e6, rss=100.0):
    return Candidate(trial, ("onnx-int8",), {}, Path(f"/b/{trial}"), "onnx", "int8", {"accuracy": validation},
                     Latency(p50, p50 * 1.2, "measured:host"), int(size), rss,
                     test={"accuracy": test} if test is not None else None)


# Test accuracy disagrees with validation: trial 1 is best on test, trial 0 on validation.
DISAGREE = [
    _candidate(0, 0.92, 2.0, test=0.88),
    _candidate(1, 0.90, 2.0, test=0.95),
    _candidate(2, 0.85, 0.5, test=0.99),
    _candidate(3, 0.84, 0.6, test=0.99),  # dominated on validation by 2
]


def test_front_and_best_follow_validation_not_test():
    front = {c.trial for c in pareto_front(DISAGREE, "accuracy")}
    assert front == {0, 2}
    best, reason = choose(DISAGREE, "accuracy", reference=0.92, budget_ms=10, memory_mb=512, max_drop=0.03)
    assert best.trial == 0 and "validation" in reason


def test_latency_objective_is_fastest_within_the_drop():
    best, _ = choose(DISAGREE, "accuracy", reference=0.92, budget_ms=10, memory_mb=512, max_drop=0.08,
                     objective="latency")
    assert best.trial == 2
    best, _ = choose(DISAGREE, "accuracy", reference=0.92, budget_ms=10, memory_mb=512, max_drop=0.03,
                     objective="latency")
    assert best.trial == 0  # 1 is as fast and as large but less accurate


def test_latency_objective_takes_the_smaller_file_among_equally_fast_and_accurate():
    # setup: 1 is 5% slower than 0 (a tie) but a third of its size; 2 is 30% slower and smaller still
    rows = [_candidate(0, 0.92, 1.00, size=19e6), _candidate(1, 0.92, 1.05, size=7e6),
            _candidate(2, 0.92, 1.30, size=5e6)]
    # execute
    best, reason = choose(rows, "accuracy", reference=0.92, budget_ms=10, memory_mb=512, max_drop=0.01,
                          objective="latency")
    # assert
    assert best.trial == 1 and "smaller file" in reason


def test_latency_objective_takes_the_more_accurate_among_equally_fast():
    # setup: one speed (within 10%); 1 is the smallest file but 0.7 points below the tuned model, 0 only 0.2
    rows = [_candidate(0, 0.927, 1.00, size=8.2e6), _candidate(1, 0.922, 0.95, size=7.2e6),
            _candidate(2, 0.927, 0.98, size=19e6)]
    # execute
    best, reason = choose(rows, "accuracy", reference=0.929, budget_ms=10, memory_mb=512, max_drop=0.01,
                          objective="latency")
    # assert: the more accurate, and of the two equally accurate the smaller file
    assert best.trial == 0 and "better accuracy, then the smaller file" in reason


def test_a_wider_aa_spread_makes_more_candidates_one_speed():
    # setup: 1 is 24% slower than 0, as accurate, and less than half its size
    rows = [_candidate(0, 0.927, 0.46, size=19.2e6), _candidate(1, 0.927, 0.575, size=8.2e6)]
    # execute: the default tie, then the tie of a re-timing whose A/A row read 1.15 [1.00, 1.31]
    narrow, _ = choose(rows, "accuracy", reference=0.929, budget_ms=10, memory_mb=512, max_drop=0.01,
                       objective="latency")
    tie = latency_tie([1.00, 1.31])
    wide, reason = choose(rows, "accuracy", reference=0.929, budget_ms=10, memory_mb=512, max_drop=0.01,
                          objective="latency", tie=tie)
    # assert
    assert narrow.trial == 0 and wide.trial == 1 and "within 31% is one speed" in reason


def test_latency_tie_from_the_aa_interval():
    assert latency_tie(None) == LATENCY_TIE
    assert latency_tie([0.98, 1.04]) == LATENCY_TIE  # a tight A/A never narrows the floor
    assert latency_tie([1.0, 1.31]) == pytest.approx(0.31)
    assert latency_tie([0.8, 1.1]) == pytest.approx(0.25)  # 1/0.8: the same spread seen from the other row


def test_size_budget_excludes_larger_files():
    # setup: 0 is the fastest but 19.2 MB; 1 is 30% slower, as accurate, 8.2 MB
    rows = [_candidate(0, 0.927, 0.46, size=19.2e6), _candidate(1, 0.927, 0.60, size=8.2e6)]
    # execute
    unlimited, _ = choose(rows, "accuracy", reference=0.929, budget_ms=10, memory_mb=512, max_drop=0.01,
                          objective="latency")
    budgeted, reason = choose(rows, "accuracy", reference=0.929, budget_ms=10, memory_mb=512, max_drop=0.01,
                              objective="latency", size_mb=13.6)
    over, fallback = choose(rows, "accuracy", reference=0.929, budget_ms=10, memory_mb=512, max_drop=0.01,
                            objective="latency", size_mb=5)
    # assert
    assert unlimited.trial == 0 and budgeted.trial == 1 and "13.6 MB of model files" in reason
    assert over.trial == 0 and "nothing meets every constraint" in fallback


def test_budget_memory_and_fallback():
    rows = [_candidate(0, 0.92, 3.0, rss=900), _candidate(1, 0.915, 4.0), _candidate(2, 0.80, 0.1)]
    best, _ = choose(rows, "accuracy", reference=0.92, budget_ms=5, memory_mb=512, max_drop=0.01)
    assert best.trial == 1  # 0 is over the memory budget
    best, reason = choose(rows, "accuracy", reference=0.92, budget_ms=1, memory_mb=512, max_drop=0.01)
    assert best.trial == 1 and "nothing meets every constraint" in reason
    assert choose([], "accuracy", 0.9, 1, 1, 0.01) == (None, "no candidate could be measured")


def test_candidate_json_round_trip():
    candidate = _candidate(7, 0.9, 1.5, test=0.91)
    assert Candidate.from_json(candidate.to_json()) == candidate


def test_pareto_ranks_peel_fronts():
    assert _pareto_ranks([(0.9, -10), (0.8, -5), (0.7, -6), (0.6, -20)]) == [0, 0, 1, 2]


def test_successive_halving_promotes_the_front_and_the_best_third():
    records = [{"key": k, "score": s, "cost": c} for k, s, c in
               [("big", 0.90, 100), ("small", 0.40, 20), ("mid", 0.60, 60), ("worse", 0.50, 80), ("bad", 0.30, 90)]]
    assert _not_promoted(records[0], records, 3) is None  # on the front
    assert _not_promoted(records[1], records, 3) is None  # rough but smallest: on the front too
    assert _not_promoted(records[2], records, 3) is None  # front: nothing both better and smaller
    reason, detail = _not_promoted(records[4], records, 3)
    assert "successive halving" in reason and "5" in detail


def test_waiting_students_are_promoted_smallest_first(tmp_path):
    # setup: three students scored and stopped while screening, in a study of their own
    import optuna

    from edgeft.compress.config import CompressConfig
    from edgeft.compress.search import SCREENING, Search, SearchSetup

    study = optuna.create_study(directions=["maximize", "minimize"])
    distribution = optuna.distributions.CategoricalDistribution([0.0, 0.25, 0.5])
    students = [("a", 0.9, 300), ("b", 0.5, 100), ("c", 0.4, 200)]  # c is dominated by b: bigger and worse
    for number, (key, score, cost) in enumerate(students):
        study.add_trial(optuna.trial.create_trial(
            state=optuna.trial.TrialState.PRUNED, params={"prune.heads": [0.0, 0.25, 0.5][number]},
            distributions={"prune.heads": distribution},
            user_attrs={"gate": {"key": key, "score": score, "cost": cost, "size": 4 * cost, "work": cost},
                        "stopped": SCREENING}))
    search = object.__new__(Search)  # no data needed: promotion reads the study only
    search.config = CompressConfig.model_validate({"search": {"halving_rate": 3}})
    search.setup = SearchSetup(None, "host", search.config, "", "s", tmp_path, deadline=None)
    search.reference = 1.0
    search.max_drop = search.config.max_metric_drop  # accuracy: its scale is 1
    # execute
    search.promote_waiting(study)
    search.promote_waiting(study)  # a second call queues nothing twice
    # assert: the front (b, a) goes on, smallest first; c waits
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"]["prune.heads"] for t in waiting] == [0.25, 0.0]
    assert [t.user_attrs["promoted"] for t in waiting] == [1, 0]


def test_search_turns_random_then_stops_once_trials_only_repeat_finished_settings():
    # setup: a replayed sequence of (settings, stopped before the costly pass?); a promoted student repeats the
    # settings of its stopped trial but is measured now: new, so it resets the count
    plan = [(0, False), (1, False), (2, False), (9, True),
            (0, False), (9, True), (1, False), (9, False),  # the last one is the promotion
            (2, False), (9, False), (0, False), (1, False),  # 4 repeats: sampling turns random
            (3, False), (0, False), (1, False), (2, False), (9, False), (3, False)]  # 1 new, then 4 repeats: stop
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial({"x": plan[0][0]})
    samplers = []

    def feed(study, trial):  # queue the next setting only after Converged looked (queued work is never a repeat)
        samplers.append(type(study.sampler).__name__)
        if trial.number + 1 < len(plan):
            study.enqueue_trial({"x": plan[trial.number + 1][0]})

    def objective(trial):
        value = trial.suggest_categorical("x", [0, 1, 2, 3, 9])
        if plan[trial.number][1]:
            raise optuna.TrialPruned()
        return 0.9, float(value)

    # execute
    study.optimize(objective, n_trials=len(plan), callbacks=[Converged(patience=4), feed])
    # assert
    assert samplers[10] == "TPESampler" and samplers[11] == "RandomSampler"
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))) == 17
    assert "random sampling" in study.user_attrs["converged"]


def test_a_student_just_inside_the_drop_does_not_stop_larger_ones(tmp_path):
    # setup: a small distilled student 0.7 points below the tuned model (the drop is 1 point) and one 0.2 below
    from types import SimpleNamespace

    from edgeft.compress.config import CompressConfig
    from edgeft.compress.search import MATCHED, Search, SearchSetup

    search = object.__new__(Search)  # no data needed: the rule reads the trials only
    search.config = CompressConfig.model_validate({"max_metric_drop": 0.01, "objective": "latency"})
    search.setup = SearchSetup(None, "host", search.config, "", "s", tmp_path, deadline=None)
    search.reference, search.metric, search.max_drop = 0.929, "accuracy", 0.01

    def distilled(number, key, cost, size, validation):
        return SimpleNamespace(number=number, user_attrs={
            "gate": {"key": key, "cost": cost, "size": size}, "candidate": {"validation": {"accuracy": validation}}})

    larger = {"key": "larger", "cost": 400, "size": 800}
    # execute / assert: 0.7 points is outside half the drop (the default match_fraction): the larger one goes on
    assert search._matched_by_smaller(larger, [distilled(3, "small", 300, 700, 0.922)]) is None
    # 0.2 points is comfortably inside: the larger one would not be faster
    assert search._matched_by_smaller(larger, [distilled(4, "close", 300, 700, 0.927)]) == (MATCHED, "trial 4")
