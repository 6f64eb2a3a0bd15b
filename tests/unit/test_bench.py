"""`edgeft bench` on a real tiny bundle: the host report, the estimate with its measured error, the CLI outputs."""

from __future__ import annotations

import json

import pytest
from bench_support import make_tiny_bundle
from click.testing import CliRunner

from edgeft.bench import bench
from edgeft.cli import main

RUNS = 20
FAST = {"rounds": 2, "seconds": 0.1}  # the protocol's shape, with short samples: tests check behaviour, not speed


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("bench"))


def test_host_report(bundle):
    # execute
    report = bench(bundle, "host", runs=RUNS, warmup=2, threads=1, **FAST)
    # assert
    assert report["source"].startswith("measured:host (") and report["machine"]["cpu"] in report["source"]
    assert 0 < report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"]
    assert report["p50_ci_ms"][0] <= report["p50_ms"] <= report["p50_ci_ms"][1]
    assert report["throughput_per_s"] > 0 and report["peak_rss_mb"] > 0 and report["load_ms"] > 0
    assert report["model_bytes"] == (bundle / "model.onnx").stat().st_size
    assert report["rounds"] == 2 and [len(round["latencies_ms"]) >= RUNS for round in report["samples"]] == [True] * 2
    assert report["runs"] == sum(len(round["latencies_ms"]) for round in report["samples"])
    assert report["threads"] == 1 and report["self_check"] == "passed"
    assert "onnxruntime" in report["runtime_versions"]
    # the default inputs are the manifest's reference sample, at their real lengths (batch 1: no padding)
    sample = json.loads((bundle / "manifest.json").read_text())["reference_sample"]
    assert report["token_lengths"] == sample["token_lengths"]
    assert report["padded_lengths"] == sorted(set(sample["token_lengths"]))


def test_seq_len_and_batch_are_honoured(bundle):
    report = bench(bundle, "host", runs=3, warmup=0, batch=2, seq_len=24, threads=1, rounds=1, seconds=0)
    assert report["input_shape"] == [2, 24]


def test_estimate_reports_its_host_error(bundle):
    # execute
    report = bench(bundle, "rpi4", batch=1, seq_len=16)
    # assert
    check = report["host_check"]
    expected = (check["estimated_ms"] - check["measured_p50_ms"]) / check["measured_p50_ms"] * 100
    assert check["error_pct"] == pytest.approx(expected)
    assert report["source"] == f"estimated (host error {check['error_pct']:+.0f}%)"
    assert report["p50_ms"] == pytest.approx(report["estimate"]["latency_ms"]) and report["p50_ms"] > 0
    assert report["estimate"]["gflops"] > 0 and report["estimate"]["uncounted_ops"] == []
    assert report["target"] == "rpi4" and report["threads"] == 4


def test_estimate_is_slower_on_a_slower_device(bundle):
    pi, xeon = bench(bundle, "rpi4", seq_len=16), bench(bundle, "x86-avx512-vnni", seq_len=16)
    assert pi["estimate"]["latency_ms"] > xeon["estimate"]["latency_ms"]


def test_cli_json_and_compare(bundle, tmp_path):
    # setup
    runner = CliRunner()
    # execute
    fast = ["--runs", "5", "--rounds", "2", "--seconds", "0.1"]
    single = runner.invoke(main, ["bench", str(bundle), *fast, "--json", str(tmp_path / "one.json")])
    both = runner.invoke(main, ["bench", "--compare", str(bundle), str(bundle), *fast, "--json",
                                str(tmp_path / "two.json"), "--plot", str(tmp_path / "compare.png")])
    two_without_compare = runner.invoke(main, ["bench", str(bundle), str(bundle)])
    # assert
    assert single.exit_code == 0, single.output
    assert "A/A check" in single.output and "token lengths" in single.output
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["source"].startswith("measured:host") and one["aa"]["row"] == bundle.name
    assert both.exit_code == 0, both.output
    assert len(json.loads((tmp_path / "two.json").read_text())) == 2
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert two_without_compare.exit_code == 2 and "--compare" in two_without_compare.output


def test_cli_bad_input_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["bench", str(tmp_path), "--target", "rpi9"])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
