"""The measurement protocol on a real tiny bundle and PyTorch eager: interleaving, raw samples, A/A, ratios."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_support import TEXTS, make_tiny_bundle

from edgeft.bench import bundle_row, compare, pytorch_row
from edgeft.errors import EdgeftError


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("protocol"))


@pytest.fixture(scope="module")
def result(bundle):
    rows = [bundle_row(bundle, "onnx"), pytorch_row(bundle.parent / "classifier")]
    return compare(rows, rounds=3, seconds=0.1, runs=5, warmup=1, threads=1, baselines=["pytorch-fp32"], seed=7,
                   progress=False)


def test_rows_interleave_in_fresh_processes(result):
    names = ["onnx", "pytorch-fp32", "onnx (A/A)"]
    assert [row["name"] for row in result["rows"]] == names
    orders = result["protocol"]["orders"]
    assert len(orders) == 3 and all(sorted(order) == sorted(names) for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # seed 7 gives differing orders
    for row in result["rows"]:
        assert len(row["rounds"]) == 3 and all(len(entry["latencies_ms"]) >= 5 for entry in row["rounds"])
        assert row["calls"] == sum(len(entry["latencies_ms"]) for entry in row["rounds"])
        assert row["p50_ci_ms"][0] <= row["p50_ms"] <= row["p50_ci_ms"][1]
        assert row["p90_ms"] >= row["p50_ms"]


def test_every_row_ran_the_same_real_texts(bundle, result):
    # setup: the test texts the bundle was exported with are its reference sample
    sample = json.loads((bundle / "manifest.json").read_text())["reference_sample"]
    # assert
    assert sample["texts"] == TEXTS
    assert result["inputs"]["texts"] == len(TEXTS)
    assert result["inputs"]["token_lengths"]["max"] == max(sample["token_lengths"])
    for row in result["rows"]:
        assert row["token_lengths"] == sample["token_lengths"]


def test_ratios_and_a_a(result):
    rows = {row["name"]: row for row in result["rows"]}
    assert rows["pytorch-fp32"]["ratio_vs"]["pytorch-fp32"]["value"] == pytest.approx(1.0)
    onnx = rows["onnx"]["ratio_vs"]["pytorch-fp32"]
    assert onnx["ci"][0] <= onnx["value"] <= onnx["ci"][1] and len(onnx["per_round"]) == 3
    assert result["aa"]["row"] == "onnx" and result["aa"]["ci"][0] <= result["aa"]["value"] <= result["aa"]["ci"][1]


def test_machine_state_is_recorded(result):
    machine = result["machine"]
    assert machine["cpu"] and machine["cores"] >= 1
    assert len(machine["loadavg_before"]) == 3 and len(machine["loadavg_after"]) == 3
    assert machine["steal_pct"] is not None and 0 <= machine["steal_pct"] <= 100
    for entry in result["rows"][0]["rounds"]:
        assert entry["system"]["loadavg"] and entry["peak_rss_mb"] > 0


def test_pytorch_row_predicts_what_the_bundle_predicts(bundle):
    # The eager row must time the same model, not some other: its logits equal the fp32 bundle's.
    from edgeft.bench.eager import load as load_eager
    from edgeft.runtime import load

    eager = load_eager(str(bundle.parent / "classifier"), threads=1)
    np.testing.assert_allclose(eager.logits(TEXTS), load(bundle).logits(TEXTS), atol=1e-4)
    assert eager.model_bytes > 0


def test_bad_rows_are_refused_before_anything_runs(tmp_path, bundle):
    with pytest.raises(EdgeftError) as caught:
        compare([bundle_row(bundle, "x"), bundle_row(tmp_path, "x")], rounds=0)
    problems = "\n".join(caught.value.problems)
    assert "--rounds" in problems and "used twice" in problems and "not a bundle folder" in problems
